"""Swagger UI in a real browser with no network beyond our server: Authorize, then POST /jobs → 201."""

from __future__ import annotations

import json

from playwright.async_api import Page, expect

from tests.browser.conftest import Offsite, screenshot
from tests.utils.stack import Stack


async def test_authorize_then_submit_a_job(stack: Stack, page: tuple[Page, Offsite], live_url: str) -> None:
    tab, offsite = page
    key = await stack.new_key("swagger")
    await tab.goto(f"{live_url}/docs")
    await tab.get_by_role("button", name="Authorize").first.click()
    dialog = tab.locator(".modal-ux")
    await dialog.locator("input").fill(key)
    await dialog.locator("button.modal-btn.authorize").click()
    await expect(dialog.get_by_role("heading", name="Authorized")).to_be_visible()
    await dialog.get_by_text("Close", exact=True).click()
    operation = tab.locator("#operations-jobs-submit_job_jobs_post")
    await operation.locator(".opblock-summary").click()
    await operation.get_by_role("button", name="Try it out").click()
    body = {"type": "square_sum", "payload": {"data": [1, 2, 3]}, "name": "from swagger"}
    await operation.locator("textarea.body-param__text").fill(json.dumps(body))
    await operation.get_by_role("button", name="Execute").click()
    status = operation.locator(".live-responses-table tbody .response-col_status").first
    await expect(status).to_have_text("201", timeout=15_000)
    await expect(operation.locator(".live-responses-table tbody .response-col_description")).to_contain_text(
        "from swagger"
    )
    assert offsite.requests == []  # every asset came from the API itself
    await screenshot(tab, "swagger")
