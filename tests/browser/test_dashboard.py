"""The dashboard in a real browser, used as a person would: sign in, watch, steer, submit, sign out."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from playwright.async_api import Page, expect

from backend.domain.enums import KeyRole
from backend.services.stats import refresh_stats
from tests.browser.conftest import Offsite, screenshot
from tests.utils import db
from tests.utils.stack import Stack, wait_for, wait_for_runs

TIMEOUT_MS = 20_000


async def sign_in(page: Page, base: str, key: str) -> None:
    await page.goto(f"{base}/ui")  # not signed in: sent to the sign-in page
    await expect(page).to_have_url(f"{base}/ui/login")
    await page.get_by_label("API key").fill(key)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Overview")).to_be_visible()


async def api(base: str, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base, headers={"X-API-Key": key}, timeout=10)


async def post_batch(client: httpx.AsyncClient, body: dict[str, object]) -> dict[str, Any]:
    response = await client.post("/batches", json=body)
    assert response.status_code == 201, response.text
    batch: dict[str, Any] = response.json()
    return batch


async def post_job(client: httpx.AsyncClient, body: dict[str, object]) -> dict[str, object]:
    response = await client.post("/jobs", json=body)
    assert response.status_code == 201, response.text
    job: dict[str, object] = response.json()
    return job


async def test_sign_in_keeps_the_key_out_of_storage_and_urls(
    stack: Stack, page: tuple[Page, Offsite], live_url: str
) -> None:
    tab, offsite = page
    key = await stack.new_key("browser")
    await sign_in(tab, live_url, key)
    cookies = await tab.context.cookies()
    session = next(c for c in cookies if c["name"] == "jp_session")
    assert session["httpOnly"] and session["sameSite"] == "Strict" and session["path"] == "/ui"
    assert key not in session["value"]
    storage = await tab.evaluate(
        "() => JSON.stringify([{...localStorage}, {...sessionStorage}, document.cookie])"
    )
    assert key not in storage and "jp_session" not in storage  # HttpOnly: scripts cannot read it
    assert all(key not in url for url in offsite.urls)


async def test_wrong_key_shows_the_form_again(page: tuple[Page, Offsite], live_url: str) -> None:
    tab, _ = page
    await tab.goto(f"{live_url}/ui/login")
    await tab.get_by_label("API key").fill("jp_not-a-key")
    await tab.get_by_role("button", name="Sign in").click()
    await expect(tab.get_by_role("alert")).to_have_text("That API key was not accepted.")
    await expect(tab.get_by_label("API key")).to_be_visible()


async def test_a_job_submitted_over_the_api_appears_and_completes_live(
    stack: Stack, page: tuple[Page, Offsite], live_url: str
) -> None:
    tab, _ = page
    key = await stack.new_key("browser")
    await sign_in(tab, live_url, key)
    await tab.goto(f"{live_url}/ui/jobs")
    await tab.evaluate("() => { window.notReloaded = true; }")
    name = f"live-{uuid.uuid4().hex[:6]}"
    async with await api(live_url, key) as client:
        job = await post_job(
            client, {"type": "sleep", "payload": {"seconds": 4}, "name": name, "tags": ["demo"]}
        )
    row = tab.locator(f'tr[data-job="{job["id"]}"]')
    await expect(row).to_contain_text(name, timeout=TIMEOUT_MS)
    await expect(row.locator(".status")).to_have_text("running", timeout=TIMEOUT_MS)
    await expect(row.locator(".status")).to_have_text("completed", timeout=TIMEOUT_MS)
    await expect(row.locator(".pct")).to_have_text("100%")
    assert await tab.evaluate("() => window.notReloaded === true")  # live: the page was never reloaded
    await screenshot(tab, "jobs")


async def test_cancel_a_running_job_from_its_page(
    stack: Stack, page: tuple[Page, Offsite], live_url: str
) -> None:
    tab, _ = page
    key = await stack.new_key("browser")
    async with await api(live_url, key) as client:
        job = await post_job(client, {"type": "sleep", "payload": {"seconds": 60}, "name": "long one"})
        await wait_for(client, str(job["id"]), {"running"})
        await sign_in(tab, live_url, key)
        await tab.goto(f"{live_url}/ui/jobs/{job['id']}")
        await expect(tab.locator("dd.status")).to_contain_text("running")
        await tab.get_by_role("button", name="Cancel job").click()
        await expect(tab.get_by_role("status")).to_have_text("Cancellation requested.")
        await expect(tab.locator("dd.status")).to_contain_text("cancelled", timeout=TIMEOUT_MS)
        runs = (await client.get(f"/jobs/{job['id']}?include=runs")).json()["runs"]
        assert runs[-1]["outcome"] == "cancelled"  # the worker aborted the run it held
        assert (await client.get(f"/jobs/{job['id']}")).json()["status"] == "cancelled"
    await expect(tab.get_by_role("button", name="Retry job")).to_be_visible()
    await screenshot(tab, "job")


async def test_bulk_retry_from_the_failures_page(
    stack: Stack, page: tuple[Page, Offsite], live_url: str
) -> None:
    tab, _ = page
    key = await stack.new_key("browser")
    async with await api(live_url, key) as client:
        failing = {"type": "sleep", "payload": {"seconds": 0, "fail_first": 1}, "max_attempts": 1}
        jobs = [await post_job(client, failing) for _ in range(3)]
        for job in jobs:
            await wait_for(client, str(job["id"]), {"failed"})
        await sign_in(tab, live_url, key)
        await tab.get_by_role("link", name="Failures").click()
        await screenshot(tab, "failures")
        await tab.get_by_role("button", name="Retry 3 failed sleep jobs").click()
        await expect(tab.get_by_role("status")).to_have_text("3 jobs will run again.")
        for job in jobs:  # each ran again (and, failing its first attempt again, failed again)
            runs = await wait_for_runs(client, str(job["id"]), 2)
            assert [r["attempt"] for r in runs] == [1, 1], runs


async def test_batches_page_and_a_batch_followed_live(
    stack: Stack, page: tuple[Page, Offsite], live_url: str
) -> None:
    tab, _ = page
    key = await stack.new_key("browser")
    reports: list[dict[str, Any]] = [
        {"type": "csv_report", "payload": {"rows": 500, "seed": i}, "name": f"orders-{region}"}
        for i, region in enumerate(("eu", "us", "apac"))
    ]
    reports.append(
        {
            "type": "bundle",
            "payload": {"filename": "reports.zip"},
            "name": "all reports",
            "depends_on": ["#0", "#1", "#2"],
        }
    )
    nightly = [
        {"type": "sleep", "payload": {"seconds": 4}, "name": "warm caches"},
        {"type": "square_sum", "payload": {"data": [1, 2, 3]}, "name": "totals", "depends_on": ["#0"]},
        {"type": "square_sum", "payload": {"data": [4, 5]}, "name": "checksums"},
        {"type": "cube_sum", "payload": {"data": [2, 3]}, "name": "volumes"},
    ]
    async with await api(live_url, key) as client:
        done = await post_batch(client, {"name": "quarterly reports", "jobs": reports})
        for job in done["jobs"]:
            await wait_for(client, str(job["id"]), {"completed"})
        batch = await post_batch(client, {"name": "nightly", "jobs": nightly})
        await wait_for(client, str(batch["jobs"][0]["id"]), {"running"})
    await sign_in(tab, live_url, key)
    await tab.get_by_role("link", name="Batches").click()
    rows = tab.locator("table.batches tbody tr")
    await expect(rows).to_have_count(2)
    await expect(rows.first).to_contain_text("nightly")  # newest first
    await expect(rows.nth(1)).to_contain_text("4/4 ended")
    await expect(rows.nth(1)).to_contain_text("done")
    await screenshot(tab, "batches")
    await rows.first.get_by_role("link", name="nightly").click()
    await expect(tab.get_by_role("heading", level=1)).to_contain_text("nightly")
    await expect(tab.locator('[data-count="blocked"]')).to_have_text("1")
    sleeper = tab.locator(f'tr[data-job="{batch["jobs"][0]["id"]}"] .pct')
    await expect(sleeper).not_to_have_text(await sleeper.inner_text())  # the live stream is flowing
    blocked = tab.locator(f'tr[data-job="{batch["jobs"][1]["id"]}"]')
    await expect(blocked.locator(".waits")).to_contain_text("after")  # kept by the live updates too
    await expect(tab.get_by_role("button", name="Cancel batch")).to_be_visible()
    await screenshot(tab, "batch")
    # followed live: the sleeper ends, its child runs, and the finished batch is shown without a click
    await expect(tab.locator("dd.done")).to_have_text("done", timeout=TIMEOUT_MS)
    await expect(tab.locator('[data-count="completed"]')).to_have_text("4")
    await expect(tab.get_by_role("button", name="Cancel batch")).to_have_count(0)
    await tab.get_by_role("link", name="totals").click()
    await expect(tab.locator("dd.parents")).to_contain_text(str(batch["jobs"][0]["id"])[:8])
    await tab.get_by_role("link", name=f"{batch['id']}").click()
    await expect(tab).to_have_url(f"{live_url}/ui/batches/{batch['id']}")


async def test_submit_from_the_generated_form(
    stack: Stack, page: tuple[Page, Offsite], live_url: str
) -> None:
    tab, _ = page
    key = await stack.new_key("browser")
    await sign_in(tab, live_url, key)
    await tab.get_by_role("link", name="Submit", exact=True).click()
    await tab.get_by_role("link", name="square_sum").click()
    await tab.get_by_label("Data").fill("1, 2, oops")
    await tab.get_by_role("button", name="Submit square_sum").click()
    await expect(tab.locator(".field-error")).to_be_visible()  # the API's own validation, next to the field
    await tab.get_by_label("Data").fill("1, 2, 3")
    await tab.get_by_label("Name").fill("from the form")
    await tab.get_by_label("Tags").fill("ui, demo")
    await screenshot(tab, "submit")
    await tab.get_by_role("button", name="Submit square_sum").click()
    await expect(tab.get_by_role("heading", level=1)).to_contain_text("from the form")
    await expect(tab.locator("dd.status")).to_contain_text("completed", timeout=TIMEOUT_MS)
    await expect(tab.locator("pre").first).to_contain_text('"value": 14')


async def test_sign_out(stack: Stack, page: tuple[Page, Offsite], live_url: str) -> None:
    tab, _ = page
    await sign_in(tab, live_url, await stack.new_key("browser"))
    await tab.get_by_role("button", name="Sign out").click()
    await expect(tab).to_have_url(f"{live_url}/ui/login")
    await tab.goto(f"{live_url}/ui/jobs")
    await expect(tab).to_have_url(f"{live_url}/ui/login")


async def test_admin_pages_and_keyboard_navigation(
    stack: Stack, page: tuple[Page, Offsite], live_url: str
) -> None:
    tab, _ = page
    await sign_in(tab, live_url, await stack.new_key("browser-admin", KeyRole.ADMIN))
    await tab.keyboard.press("Tab")
    await expect(tab.get_by_role("link", name="Skip to content")).to_be_focused()
    for _ in range(3):  # skip link, brand, Overview
        await tab.keyboard.press("Tab")
    await expect(tab.get_by_role("link", name="Jobs", exact=True)).to_be_focused()
    await tab.keyboard.press("Enter")
    await expect(tab.get_by_role("heading", name="Jobs")).to_be_visible()
    await tab.get_by_role("link", name="Workers").click()
    await expect(tab.locator("tbody tr")).not_to_have_count(0)
    await screenshot(tab, "workers")
    await tab.get_by_role("link", name="Keys").click()
    name = f"made-in-ui-{uuid.uuid4().hex[:4]}"
    await tab.get_by_label("Name").fill(name)
    await tab.get_by_role("button", name="Create key").click()
    secret = await tab.get_by_label("Secret").input_value()
    assert secret.startswith("jp_")
    await tab.get_by_role("button", name=f"Revoke key {name}").click()
    await expect(tab.get_by_role("button", name=f"Revoke key {name}")).to_have_count(0)
    await tab.get_by_role("link", name="Types").click()
    await tab.get_by_role("button", name="Pause csv_report").click()
    await expect(tab.get_by_role("button", name="Resume csv_report")).to_be_visible()
    await screenshot(tab, "types")
    await tab.get_by_role("button", name="Resume csv_report").click()
    await expect(tab.get_by_role("button", name="Pause csv_report")).to_be_visible()


async def test_usable_at_phone_width(stack: Stack, page: tuple[Page, Offsite], live_url: str) -> None:
    tab, _ = page
    await tab.set_viewport_size({"width": 390, "height": 844})
    await sign_in(tab, live_url, await stack.new_key("browser"))
    for path in ("/ui", "/ui/jobs", "/ui/batches", "/ui/submit", "/ui/failures"):
        await tab.goto(f"{live_url}{path}")
        overflow = await tab.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, (path, overflow)  # wide tables scroll inside their box, not the page
    await tab.goto(f"{live_url}/ui/jobs")
    await screenshot(tab, "jobs-phone")


async def test_overview_charts_the_activity(stack: Stack, page: tuple[Page, Offsite], live_url: str) -> None:
    """Last in the file: by now the earlier tests have run jobs; add a few more and fold them into rollups."""
    tab, _ = page
    key = await stack.new_key("browser-ops", KeyRole.ADMIN)
    async with await api(live_url, key) as client:
        jobs = [await post_job(client, {"type": "square_sum", "payload": {"data": [i]}}) for i in range(12)]
        failing = {"type": "sleep", "payload": {"seconds": 0, "fail_first": 1}, "max_attempts": 1}
        jobs += [await post_job(client, failing) for _ in range(3)]
        for job in jobs:
            await wait_for(client, str(job["id"]), {"completed", "failed"})
    async with db.pool(stack.settings) as pool:
        await refresh_stats(pool)  # what the workers' stats duty does every STATS_INTERVAL_SECONDS
    await sign_in(tab, live_url, key)
    for window in ("1h", "24h"):
        await tab.goto(f"{live_url}/ui?window={window}")
        created = int(await tab.locator(".stat", has_text="Created").locator(".value").inner_text())
        assert created >= len(jobs)
        await expect(tab.locator("svg polyline.s-created")).to_have_count(1)
        await expect(tab.get_by_role("link", name="square_sum")).to_be_visible()
    await tab.goto(f"{live_url}/ui?window=1h")
    await screenshot(tab, "overview")
