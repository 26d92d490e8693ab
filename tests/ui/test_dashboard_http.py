"""The dashboard over HTTP: sign-in, the session cookie, CSRF, roles, tenants, forms and error pages.

The browser tests (tests/browser) walk the same pages in Chromium; these pin the rules one request at a time.
"""

from __future__ import annotations

import re
import uuid
from contextlib import aclosing

import httpx

from backend.domain.enums import KeyRole
from tests.utils.stack import Stack, submit, wait_for, wait_for_runs

TOKEN = re.compile(r'name="(?:csrf|login_token)" value="([^"]+)"')


def ui_client(stack: Stack) -> httpx.AsyncClient:
    """A browser-like client: no API key header, keeps cookies."""
    assert stack.app_client is not None
    return httpx.AsyncClient(transport=stack.app_client._transport, base_url="http://test")


def token_in(page: httpx.Response) -> str:
    found = TOKEN.search(page.text)
    assert found, page.text[:2000]
    return found.group(1)


async def sign_in(ui: httpx.AsyncClient, key: str) -> httpx.Response:
    form = await ui.get("/ui/login")
    assert form.status_code == 200
    return await ui.post("/ui/login", data={"api_key": key, "login_token": token_in(form)})


async def signed_in(
    stack: Stack, role: KeyRole = KeyRole.CLIENT, name: str = "ui"
) -> tuple[httpx.AsyncClient, str]:
    key = await stack.new_key(name, role)
    ui = ui_client(stack)
    response = await sign_in(ui, key)
    assert response.status_code == 303 and response.headers["location"] == "/ui", response.text
    return ui, key


async def test_sign_in_sets_a_strict_httponly_cookie_and_no_key_anywhere(stack: Stack) -> None:
    key = await stack.new_key("ui")
    async with ui_client(stack) as ui:
        response = await sign_in(ui, key)
        assert response.status_code == 303
        cookie = next(v for k, v in response.headers.multi_items() if k == "set-cookie" and "jp_session" in v)
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
        assert key not in cookie and key not in response.headers["location"]
        overview = await ui.get("/ui")
        assert overview.status_code == 200 and "Overview" in overview.text
        assert key not in overview.text


async def test_wrong_key_shows_the_form_again_without_a_hint(stack: Stack) -> None:
    revoked = await stack.new_key("gone")
    async with await stack.admin_client() as admin:
        keys = (await admin.get("/admin/keys")).json()
        gone = next(k for k in keys if k["name"] == "gone")
        assert (await admin.post(f"/admin/keys/{gone['id']}/revoke")).status_code == 200
    async with ui_client(stack) as ui:
        unknown = await sign_in(ui, "jp_" + "x" * 43)
        was_revoked = await sign_in(ui, revoked)
    for page in (unknown, was_revoked):
        assert page.status_code == 401
        assert "That API key was not accepted." in page.text and 'name="api_key"' in page.text
    assert unknown.text.count("not accepted") == was_revoked.text.count("not accepted")


async def test_sign_in_without_its_form_token_is_refused(stack: Stack) -> None:
    key = await stack.new_key("ui")
    async with ui_client(stack) as ui:
        response = await ui.post("/ui/login", data={"api_key": key, "login_token": "forged"})
        assert response.status_code == 403 and "jp_session" not in response.headers.get("set-cookie", "")


async def test_forged_or_missing_cookie_goes_to_sign_in(stack: Stack) -> None:
    async with ui_client(stack) as ui:
        for cookie in (None, "abc.def", "x" * 43 + "." + "0" * 64):
            if cookie:
                ui.cookies.set("jp_session", cookie, path="/ui")
            response = await ui.get("/ui/jobs")
            assert response.status_code == 303 and response.headers["location"] == "/ui/login"


async def test_posts_without_the_csrf_token_get_403(stack: Stack, client: httpx.AsyncClient) -> None:
    job = await submit(client, "sleep", {"seconds": 30})
    ui, _ = await signed_in(stack, KeyRole.ADMIN)
    async with aclosing(ui):
        for path in (f"/ui/jobs/{job['id']}/cancel", "/ui/submit", "/ui/logout", "/ui/failures/retry"):
            response = await ui.post(path, data={"csrf": "nope", "type": "sleep"})
            assert response.status_code == 403, (path, response.text[:300])
        assert (await client.get(f"/jobs/{job['id']}")).json()["status"] != "cancelled"
        await client.post(f"/jobs/{job['id']}/cancel")


async def test_sign_out_ends_the_session_on_the_server(stack: Stack) -> None:
    ui, _ = await signed_in(stack)
    async with aclosing(ui):
        page = await ui.get("/ui/jobs")
        old = ui.cookies.get("jp_session")
        response = await ui.post("/ui/logout", data={"csrf": token_in(page)})
        assert response.status_code == 303 and response.headers["location"] == "/ui/login"
    async with ui_client(stack) as replay:  # the old cookie, replayed, no longer works
        replay.cookies.set("jp_session", old or "", path="/ui")
        assert (await replay.get("/ui/jobs")).status_code == 303


async def test_revoking_the_key_ends_its_sessions(stack: Stack) -> None:
    name = f"ui-{uuid.uuid4().hex[:8]}"
    ui, _ = await signed_in(stack, name=name)
    async with aclosing(ui), await stack.admin_client() as admin:
        me = next(k for k in (await admin.get("/admin/keys")).json() if k["name"] == name)
        assert (await ui.get("/ui/jobs")).status_code == 200
        await admin.post(f"/admin/keys/{me['id']}/revoke")
        assert (await ui.get("/ui/jobs")).status_code == 303


async def test_client_keys_see_only_their_own_jobs_and_no_admin_pages(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    other = await submit(client, "square_sum", {"data": [1, 2]}, name="someone-elses")
    ui, key = await signed_in(stack)
    async with aclosing(ui), await stack.client(key) as mine:
        own = await submit(mine, "square_sum", {"data": [3]}, name="mine")
        listing = await ui.get("/ui/jobs?owner=all")
        assert "mine" in listing.text and "someone-elses" not in listing.text
        assert (await ui.get(f"/ui/jobs/{other['id']}")).status_code == 404
        assert (await ui.get(f"/ui/jobs/{own['id']}")).status_code == 200
        for page in ("/ui/admin/keys", "/ui/admin/workers", "/ui/admin/types"):
            assert (await ui.get(page)).status_code == 403, page


async def test_admins_see_every_tenant(stack: Stack, client: httpx.AsyncClient) -> None:
    other = await submit(client, "square_sum", {"data": [1]}, name=f"tenant-{uuid.uuid4().hex[:6]}")
    ui, _ = await signed_in(stack, KeyRole.ADMIN)
    async with aclosing(ui):
        assert other["name"] in (await ui.get(f"/ui/jobs?owner=all&q={other['name']}")).text
        assert (await ui.get(f"/ui/jobs/{other['id']}")).status_code == 200
        for page in ("/ui/admin/keys", "/ui/admin/workers", "/ui/admin/types"):
            assert (await ui.get(page)).status_code == 200, page


async def test_unknown_job_and_page_are_404_pages(stack: Stack) -> None:
    ui, _ = await signed_in(stack)
    async with aclosing(ui):
        for path in (f"/ui/jobs/{uuid.uuid4()}", "/ui/nothing/here"):
            response = await ui.get(path)
            assert response.status_code == 404 and "text/html" in response.headers["content-type"]


async def test_submit_form_validates_with_the_api_models(stack: Stack) -> None:
    ui, key = await signed_in(stack)
    async with aclosing(ui), await stack.client(key) as api:
        page = await ui.get("/ui/submit?type=csv_report")
        assert 'name="payload.rows"' in page.text and 'max="10000000"' in page.text
        csrf = token_in(page)
        bad = await ui.post("/ui/submit", data={"csrf": csrf, "type": "csv_report", "payload.rows": "0"})
        assert bad.status_code == 422 and "greater than or equal to 1" in bad.text
        good = await ui.post(
            "/ui/submit",
            data={
                "csrf": csrf,
                "type": "square_sum",
                "payload.data": "1, 2, 3",
                "tags": "ui, form",
                "name": "from-form",
            },
        )
        assert good.status_code == 303, good.text[:500]
        job_id = good.headers["location"].rsplit("/", 1)[-1]
        job = await wait_for(api, job_id, {"completed"})
        assert job["result"] == {"value": 14} and job["tags"] == ["form", "ui"] and job["name"] == "from-form"


async def test_failures_group_by_error_and_retry_in_bulk(stack: Stack) -> None:
    ui, key = await signed_in(stack)
    async with aclosing(ui), await stack.client(key) as api:
        jobs = [await submit(api, "sleep", {"seconds": 0, "fail_first": 1}, max_attempts=1) for _ in range(3)]
        for job in jobs:
            await wait_for(api, job["id"], {"failed"})
        page = await ui.get("/ui/failures")
        assert "Retry 3" in page.text
        error = (await api.get(f"/jobs/{jobs[0]['id']}")).json()["error"]
        response = await ui.post(
            "/ui/failures/retry", data={"csrf": token_in(page), "type": "sleep", "error": error}
        )
        assert response.status_code == 303 and response.headers["location"] == "/ui/failures?retried=3"
        for job in jobs:  # each ran again (and, failing its first attempt again, failed again)
            runs = await wait_for_runs(api, str(job["id"]), 2)
            assert [r["attempt"] for r in runs] == [1, 1], runs


async def test_pages_send_a_strict_content_security_policy(stack: Stack) -> None:
    ui, _ = await signed_in(stack)
    async with aclosing(ui):
        response = await ui.get("/ui/jobs")
        policy = response.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert "<script>" not in response.text  # no inline script: the policy forbids it


async def test_job_list_filters_as_the_form_sends_them(stack: Stack) -> None:
    ui, key = await signed_in(stack)
    async with aclosing(ui), await stack.client(key) as api:
        tagged = await submit(api, "square_sum", {"data": [1]}, name="tagged-one", tags=["red", "big"])
        await submit(api, "square_sum", {"data": [1]}, name="plain-one")
        await wait_for(api, tagged["id"], {"completed"})
        empty_form = await ui.get("/ui/jobs?type=&tags=&q=")  # the filter form with nothing chosen
        assert (
            empty_form.status_code == 200
            and "tagged-one" in empty_form.text
            and "plain-one" in empty_form.text
        )
        by_tag = await ui.get("/ui/jobs?tags=red,+big&type=square_sum&status=completed")
        assert by_tag.status_code == 200 and "tagged-one" in by_tag.text and "plain-one" not in by_tag.text
        by_name = await ui.get("/ui/jobs?q=PLAIN")
        assert "plain-one" in by_name.text and "tagged-one" not in by_name.text
        by_id = await ui.get(f"/ui/jobs?q={tagged['id']}")
        assert "tagged-one" in by_id.text and "plain-one" not in by_id.text
        bad = await ui.get("/ui/jobs?status=nope&tags=" + "x" * 70)
        assert bad.status_code == 400 and "Tags: up to 20" in bad.text


async def test_schedules_page_pauses_resumes_and_deletes(stack: Stack, client: httpx.AsyncClient) -> None:
    body = {"name": "nightly-ui", "cron": "0 3 * * *", "timezone": "Europe/Paris", "job": BASE_JOB}
    others = (await client.post("/schedules", json={**body, "name": "not-mine"})).json()
    ui, key = await signed_in(stack)
    async with aclosing(ui), await stack.client(key) as api:
        mine = (await api.post("/schedules", json=body)).json()
        page = await ui.get("/ui/schedules")
        assert "nightly-ui" in page.text and "not-mine" not in page.text and "Europe/Paris" in page.text
        csrf = token_in(page)
        assert (await ui.post(f"/ui/schedules/{mine['id']}/pause", data={"csrf": csrf})).status_code == 303
        assert (await api.get(f"/schedules/{mine['id']}")).json()["paused"] is True
        assert (await ui.post(f"/ui/schedules/{mine['id']}/resume", data={"csrf": csrf})).status_code == 303
        assert (await api.get(f"/schedules/{mine['id']}")).json()["paused"] is False
        assert (await ui.post(f"/ui/schedules/{others['id']}/pause", data={"csrf": csrf})).status_code == 404
        assert (await ui.post(f"/ui/schedules/{mine['id']}/delete", data={"csrf": csrf})).status_code == 303
        assert (await api.get(f"/schedules/{mine['id']}")).status_code == 404
    await client.delete(f"/schedules/{others['id']}")


BASE_JOB = {"type": "square_sum", "payload": {"data": [1]}}
