"""A real browser for the dashboard and Swagger tests: Debian's Chromium driven by Playwright for Python.

Playwright's own browser download cannot work on these machines, so Chromium comes from the system
(`apt-get install -y chromium`; `.ci/run` installs it) and is launched by `executable_path`. A missing
Chromium fails these tests with that command, never skips them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from playwright.async_api import Browser, BrowserContext, Page, Request, async_playwright

from tests.utils.stack import Stack, serve_api

INSTALL_HINT = "Chromium not found: install it with `apt-get install -y chromium` (or set CHROMIUM_PATH)"
# Flags for a headless run on a machine with no network beyond loopback (and, under CI, as root).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
]
SCREENSHOTS = os.environ.get("SCREENSHOT_DIR")  # `make screenshots` sets it to docs/screenshots


def chromium_path() -> str:
    """Debian's Chromium (or CHROMIUM_PATH); fails the test run with the install command if absent."""
    path = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path or not Path(path).exists():
        pytest.fail(INSTALL_HINT, pytrace=False)
    return path


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    """One headless Chromium for the session."""
    executable = chromium_path()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture(scope="session")
async def live_url(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """A real `jobplatform api` process on the session stack (its workers run the jobs)."""
    log = tmp_path_factory.mktemp("browser") / "api.log"
    async with serve_api(stack.settings, log) as base:
        yield base


class Offsite:
    """Every request the page tried to send anywhere but our server (each one is blocked)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.requests: list[str] = []
        self.urls: list[str] = []  # every URL requested, to check that no key ever lands in one

    async def route(self, page: Page) -> None:
        async def guard(route, request: Request) -> None:  # type: ignore[no-untyped-def]
            self.urls.append(request.url)
            if request.url.startswith(self.base) or request.url.startswith("data:"):
                await route.continue_()
            else:
                self.requests.append(request.url)
                await route.abort()

        await page.route("**/*", guard)


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    """A fresh browser profile (cookies, storage) per test, desktop width."""
    ctx = await browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        yield ctx
    finally:
        await ctx.close()


@pytest.fixture
async def page(context: BrowserContext, live_url: str) -> AsyncIterator[tuple[Page, Offsite]]:
    """A page whose every request off our server is blocked and recorded."""
    tab = await context.new_page()
    offsite = Offsite(live_url)
    await offsite.route(tab)
    yield tab, offsite
    assert offsite.requests == [], f"requests left the server: {offsite.requests}"


async def screenshot(page: Page, name: str) -> None:
    """Save a screenshot for the README when SCREENSHOT_DIR is set (`make screenshots`)."""
    if SCREENSHOTS:
        await anyio.Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=True)
