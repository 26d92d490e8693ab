"""Webhooks end to end: real worker processes POST to real local HTTP receivers; signatures are checked
with `standardwebhooks` (the reference implementation), never with the code under test."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from backend.domain.webhooks import new_secret
from tests.utils.receiver import HANG, Received, receiving
from tests.utils.stack import Stack, submit, wait_for


async def deliveries(client: httpx.AsyncClient, job_id: str) -> list[dict[str, Any]]:
    """GET /jobs/{id}/webhooks."""
    response = await client.get(f"/jobs/{job_id}/webhooks")
    assert response.status_code == 200, response.text
    result: list[dict[str, Any]] = response.json()
    return result


async def wait_delivery(
    client: httpx.AsyncClient,
    job_id: str,
    done: Any,
    timeout: float = 30.0,  # noqa: ASYNC109
) -> dict[str, Any]:
    """Poll the job's delivery log until its first delivery satisfies `done`."""
    deadline = time.monotonic() + timeout
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        found = await deliveries(client, job_id)
        if found and done(found[0]):
            return found[0]
        await asyncio.sleep(0.1)
    raise AssertionError(f"delivery of {job_id} not done: {found}")


def verified(secret: str, request: Received) -> dict[str, Any]:
    """The event, after the reference implementation verified its signature."""
    event: dict[str, Any] = Webhook(secret).verify(request.body, request.headers)
    return event


async def test_fails_twice_then_delivered_signed_with_a_stable_id(client: httpx.AsyncClient) -> None:
    async with receiving(lambda n: 500 if n < 2 else 204) as receiver:
        secret = (await client.get("/webhooks/secret")).json()["secret"]
        job = await submit(client, "sleep", {"seconds": 0}, webhook_url=receiver.url)
        assert job["webhook_url"] == receiver.url
        await wait_for(client, job["id"], {"completed"})
        delivery = await wait_delivery(client, job["id"], lambda d: d["status"] == "delivered")
        requests = await receiver.wait_requests(3)
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 500, 204]
    assert {r.headers["webhook-id"] for r in requests} == {delivery["webhook_id"]}
    assert delivery["webhook_id"].startswith("msg_")
    for request in requests:
        event = verified(secret, request)
        assert request.method == "POST" and request.path == "/hook"
        assert event["type"] == "job.completed" == delivery["type"]
        assert event["data"]["id"] == job["id"] and event["data"]["status"] == "completed"
        assert datetime.fromisoformat(event["timestamp"]) == datetime.fromisoformat(delivery["timestamp"])
    timestamps = {json.loads(r.body)["timestamp"] for r in requests}
    assert len(timestamps) == 1  # fixed when the job ended, not per attempt


async def test_failed_and_cancelled_jobs_are_told_too(client: httpx.AsyncClient) -> None:
    async with receiving(lambda n: 200) as receiver:
        secret = (await client.get("/webhooks/secret")).json()["secret"]
        failing = await submit(
            client, "sleep", {"seconds": 0, "fail_first": 5}, max_attempts=1, webhook_url=receiver.url
        )
        later = await submit(
            client, "sleep", {"seconds": 0}, scheduled_at="2999-01-01T00:00:00Z", webhook_url=receiver.url
        )
        assert (await client.post(f"/jobs/{later['id']}/cancel")).status_code in (200, 202)
        await wait_for(client, failing["id"], {"failed"})
        requests = await receiver.wait_requests(2)
    events = {verified(secret, r)["data"]["id"]: verified(secret, r)["type"] for r in requests}
    assert events == {failing["id"]: "job.failed", later["id"]: "job.cancelled"}


async def test_a_redirect_is_not_followed(client: httpx.AsyncClient) -> None:
    async with (
        receiving(lambda n: 200) as target,
        receiving(lambda n: (302, {"Location": target.url})) as hop,
    ):
        job = await submit(client, "sleep", {"seconds": 0}, webhook_url=hop.url)
        delivery = await wait_delivery(client, job["id"], lambda d: len(d["attempts"]) >= 2)
    assert delivery["status"] == "pending"  # retried later, as for any non-2xx
    assert {a["status_code"] for a in delivery["attempts"]} == {302}
    assert target.requests == []


async def test_a_hanging_receiver_times_out_after_5_s(client: httpx.AsyncClient) -> None:
    async with receiving(lambda n: HANG) as receiver:
        job = await submit(client, "sleep", {"seconds": 0}, webhook_url=receiver.url)
        delivery = await wait_delivery(client, job["id"], lambda d: len(d["attempts"]) >= 1, timeout=20)
    attempt = delivery["attempts"][0]
    assert attempt["status_code"] is None and "timeout" in attempt["error"]
    assert 4500 <= attempt["duration_ms"] < 7000


async def test_a_hanging_receiver_holds_one_slot_not_the_others(client: httpx.AsyncClient) -> None:
    async with receiving(lambda n: HANG) as stuck, receiving(lambda n: 204) as fast:
        slow = await submit(client, "sleep", {"seconds": 0}, webhook_url=stuck.url)
        await stuck.wait_requests(1)  # its attempt is in flight for 5 s
        quick = [await submit(client, "sleep", {"seconds": 0}, webhook_url=fast.url) for _ in range(5)]
        for job in quick:
            await wait_delivery(client, job["id"], lambda d: d["status"] == "delivered", timeout=20)
        assert (await deliveries(client, slow["id"]))[0]["attempts"] == []  # still waiting on the hang


async def test_after_a_rotation_both_secrets_verify_for_a_day(client: httpx.AsyncClient) -> None:
    async with receiving(lambda n: 204) as receiver:
        old = (await client.get("/webhooks/secret")).json()["secret"]
        rotated = (await client.post("/webhooks/secret/rotate")).json()
        await asyncio.sleep(1.1)  # a sender reads a key's secrets at most once a second
        job = await submit(client, "sleep", {"seconds": 0}, webhook_url=receiver.url)
        [request] = await receiver.wait_requests(1)
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    assert verified(old, request)["data"]["id"] == job["id"]
    assert verified(rotated["secret"], request)["data"]["id"] == job["id"]
    until = datetime.fromisoformat(rotated["previous_valid_until"])
    assert 23.9 * 3600 < (until - datetime.now(until.tzinfo)).total_seconds() <= 24 * 3600
    assert (await client.get("/webhooks/secret")).json()["previous_valid_until"] == rotated[
        "previous_valid_until"
    ]
    other = new_secret()
    with pytest.raises(WebhookVerificationError):
        verified(other, request)


async def test_redeliver_sends_the_same_message_again(client: httpx.AsyncClient) -> None:
    async with receiving(lambda n: 200) as receiver:
        secret = (await client.get("/webhooks/secret")).json()["secret"]
        job = await submit(client, "sleep", {"seconds": 0}, webhook_url=receiver.url)
        await wait_delivery(client, job["id"], lambda d: d["status"] == "delivered")
        response = await client.post(f"/jobs/{job['id']}/webhooks/redeliver")
        assert response.status_code == 202, response.text
        delivery = await wait_delivery(
            client, job["id"], lambda d: d["status"] == "delivered" and len(d["attempts"]) == 2
        )
        requests = await receiver.wait_requests(2)
    assert {r.headers["webhook-id"] for r in requests} == {delivery["webhook_id"]}
    assert all(verified(secret, r)["type"] == "job.completed" for r in requests)


async def test_sigkilled_sender_leaves_the_delivery_to_another_worker(isolated: Any) -> None:
    hang_first = receiving(lambda n: HANG if n == 0 else 200)
    async with isolated(workers=1) as stack, await stack.client() as client, hang_first as receiver:
        secret = (await client.get("/webhooks/secret")).json()["secret"]
        job = await submit(client, "sleep", {"seconds": 0}, webhook_url=receiver.url)
        await receiver.wait_requests(1)  # the first worker is mid-POST
        stack.workers[0].kill()
        stack.spawn_worker()
        delivery = await wait_delivery(client, job["id"], lambda d: d["status"] == "delivered", 40)
        requests = await receiver.wait_requests(2)
    assert requests[0].headers["webhook-id"] == requests[1].headers["webhook-id"] == delivery["webhook_id"]
    assert verified(secret, requests[1])["data"]["id"] == job["id"]
    # the killed attempt never got to log itself; the one that delivered did
    assert [a["status_code"] for a in delivery["attempts"]] == [200]


async def test_private_destinations_refused_unless_allowed(isolated: Any) -> None:
    stack: Stack
    async with isolated(workers=1, webhook_allow_private=False) as stack, await stack.client() as client:
        plain = await client.post(
            "/jobs", json={"type": "sleep", "payload": {"seconds": 0}, "webhook_url": "http://example.com/"}
        )
        assert plain.status_code == 422
        assert plain.json()["detail"][0]["loc"] == ["body", "webhook_url"]
        async with receiving(lambda n: 200) as receiver:
            for host in ("127.0.0.1", "localhost"):
                url = f"https://{host}:{receiver.port}/hook"
                job = await submit(client, "sleep", {"seconds": 0}, webhook_url=url)
                delivery = await wait_delivery(client, job["id"], lambda d: len(d["attempts"]) >= 1)
                assert delivery["attempts"][0]["error"].startswith("refused"), delivery
        assert receiver.requests == []
