"""The dashboard's batches pages over HTTP: who sees which batch, counts, jobs, cancel through its form
(CSRF-checked), and a batch's live counts."""

from __future__ import annotations

import re
import uuid
from contextlib import aclosing
from typing import Any

import httpx

from backend.domain.enums import KeyRole
from tests.ui.test_dashboard_http import signed_in, token_in
from tests.utils.stack import Stack, wait_for

NEVER = "2999-01-01T00:00:00Z"  # a job scheduled then stays pending: nothing runs it


async def post_batch(api: httpx.AsyncClient, name: str, jobs: list[dict[str, Any]]) -> dict[str, Any]:
    response = await api.post("/batches", json={"name": name, "jobs": jobs})
    assert response.status_code == 201, response.text
    batch: dict[str, Any] = response.json()
    return batch


def one_job(name: str) -> list[dict[str, Any]]:
    return [{"type": "square_sum", "payload": {"data": [1]}, "name": name}]


def count_in(page: str, status: str) -> int:
    found = re.search(rf'data-count="{status}">(\d+)<', page)
    assert found, page[:3000]
    return int(found.group(1))


async def test_batches_list_shows_own_batches_and_admins_every_key(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    tag = uuid.uuid4().hex[:6]
    other = await post_batch(client, f"theirs-{tag}", one_job("their job"))
    ui, key = await signed_in(stack)
    admin_ui, _ = await signed_in(stack, KeyRole.ADMIN)
    async with aclosing(ui), aclosing(admin_ui), await stack.client(key) as api:
        mine = await post_batch(api, f"mine-{tag}", one_job("my job"))
        listing = await ui.get("/ui/batches")
        assert listing.status_code == 200
        assert f"mine-{tag}" in listing.text and f"theirs-{tag}" not in listing.text
        assert 'href="/ui/batches"' in listing.text and 'aria-current="page"' in listing.text  # in the nav
        assert (await ui.get(f"/ui/batches/{other['id']}")).status_code == 404
        assert (await ui.get(f"/ui/batches/{uuid.uuid4()}")).status_code == 404
        everyone = await admin_ui.get("/ui/batches")
        assert f"mine-{tag}" in everyone.text and f"theirs-{tag}" in everyone.text
        theirs = await admin_ui.get(f"/ui/batches/{other['id']}")
        assert theirs.status_code == 200 and "their job" in theirs.text
        assert mine["id"] in (await ui.get(f"/ui/batches/{mine['id']}")).text


async def test_batches_list_pages_newest_first(stack: Stack) -> None:
    ui, key = await signed_in(stack)
    async with aclosing(ui), await stack.client(key) as api:
        names = [f"b{i:02d}" for i in range(27)]
        for name in names:
            await post_batch(api, name, one_job(name))
        first = await ui.get("/ui/batches")
        shown = re.findall(r">(b\d\d)</a>", first.text)
        assert shown == names[::-1][:25]
        next_link = re.search(r'rel="next" href="([^"]+)"', first.text)
        assert next_link, first.text[-2000:]
        second = await ui.get(next_link.group(1).replace("&amp;", "&"))
        assert re.findall(r">(b\d\d)</a>", second.text) == ["b01", "b00"]
        assert 'rel="next"' not in second.text
        stale = await ui.get("/ui/batches?cursor=not-a-cursor")
        assert stale.status_code == 400 and "no longer valid" in stale.text


async def test_batch_page_shows_counts_and_jobs_and_cancels_with_the_csrf_token(stack: Stack) -> None:
    ui, key = await signed_in(stack)
    async with aclosing(ui), await stack.client(key) as api:
        jobs = [
            {"type": "sleep", "payload": {"seconds": 0}, "name": "held", "scheduled_at": NEVER},
            {"type": "square_sum", "payload": {"data": [2]}, "name": "after-held", "depends_on": ["#0"]},
            {"type": "square_sum", "payload": {"data": [3]}, "name": "quick"},
        ]
        batch = await post_batch(api, "mixed", jobs)
        held, child, quick = (j["id"] for j in batch["jobs"])
        await wait_for(api, quick, {"completed"})
        page = await ui.get(f"/ui/batches/{batch['id']}")
        assert page.status_code == 200
        assert (count_in(page.text, "pending"), count_in(page.text, "blocked")) == (1, 1)
        assert (count_in(page.text, "completed"), count_in(page.text, "cancelled")) == (1, 0)
        assert "1/3 ended" in page.text and "in progress" in page.text
        assert all(name in page.text for name in ("held", "after-held", "quick"))
        assert f'class="waits">after <a href="/ui/jobs/{held}">' in page.text  # the blocked job's parent
        assert "Cancel batch" in page.text and f"/ui/jobs?batch_id={batch['id']}" in page.text

        refused = await ui.post(f"/ui/batches/{batch['id']}/cancel", data={"csrf": "forged"})
        assert refused.status_code == 403
        assert (await api.get(f"/batches/{batch['id']}")).json()["done"] is False

        cancelled = await ui.post(f"/ui/batches/{batch['id']}/cancel", data={"csrf": token_in(page)})
        assert cancelled.status_code == 303
        assert cancelled.headers["location"] == f"/ui/batches/{batch['id']}?cancelled=2"
        view = (await api.get(f"/batches/{batch['id']}")).json()
        assert view["done"] is True and view["counts"] == {"completed": 1, "cancelled": 2}
        after = await ui.get(cancelled.headers["location"])
        assert "Cancellation requested for 2 jobs." in after.text
        assert "Cancel batch" not in after.text and "3/3 ended" in after.text
        assert count_in(after.text, "cancelled") == 2

        listed = await ui.get(f"/ui/jobs?batch_id={batch['id']}")
        assert listed.status_code == 200 and f'href="/ui/batches/{batch["id"]}"' in listed.text
        assert len(re.findall(r'<tr data-job="', listed.text)) == 3
        detail = await ui.get(f"/ui/jobs/{child}")
        assert f'href="/ui/batches/{batch["id"]}"' in detail.text
        assert f'<dd class="parents"><a href="/ui/jobs/{held}">' in detail.text


async def test_a_batch_page_streams_its_counts(stack: Stack, client: httpx.AsyncClient) -> None:
    other = await post_batch(client, "theirs", one_job("theirs"))
    ui, key = await signed_in(stack)
    async with aclosing(ui), await stack.client(key) as api:
        batch = await post_batch(api, "streamed", one_job("streamed"))
        await wait_for(api, batch["jobs"][0]["id"], {"completed"})
        live = await ui.get(f"/ui/live?batch={batch['id']}")  # done: one `batch` event, then the end
        assert live.status_code == 200 and live.headers["content-type"].startswith("text/event-stream")
        assert 'event: batch\ndata: {"id":"' + batch["id"] in live.text
        assert '"counts":{"completed":1},"done":true' in live.text
        assert (await ui.get(f"/ui/live?batch={other['id']}")).status_code == 404
