"""A job's webhook events and attempts on the dashboard's job page, and redelivery through its form
(CSRF-checked); the signing secret never appears."""

from __future__ import annotations

from contextlib import aclosing

from tests.integration.test_webhooks import wait_delivery
from tests.ui.test_dashboard_http import signed_in, token_in
from tests.utils.receiver import receiving
from tests.utils.stack import Stack, submit

NEVER = "2999-01-01T00:00:00Z"  # a job scheduled then stays pending: nothing runs it


async def test_job_page_shows_webhook_attempts_and_redelivers(stack: Stack) -> None:
    ui, key = await signed_in(stack)
    async with (
        aclosing(ui),
        await stack.client(key) as api,
        receiving(lambda n: 500 if n == 0 else 204) as receiver,
    ):
        secret = (await api.get("/webhooks/secret")).json()["secret"]
        job = await submit(api, "square_sum", {"data": [4]}, webhook_url=receiver.url)
        delivery = await wait_delivery(api, job["id"], lambda d: d["status"] == "delivered")
        page = await ui.get(f"/ui/jobs/{job['id']}")
        assert page.status_code == 200
        text = page.text
        assert "job.completed" in text and delivery["webhook_id"] in text and receiver.url in text
        assert ">500</span>" in text and ">204</span>" in text and "st-delivered" in text
        assert secret not in text and secret.removeprefix("whsec_") not in text

        path = f"/ui/jobs/{job['id']}/webhooks/redeliver"
        assert (await ui.post(path, data={"csrf": "forged"})).status_code == 403
        redelivered = await ui.post(path, data={"csrf": token_in(page)})
        assert redelivered.status_code == 303
        assert redelivered.headers["location"] == f"/ui/jobs/{job['id']}?done=redeliver"
        requests = await receiver.wait_requests(3)
        assert {r.headers["webhook-id"] for r in requests} == {delivery["webhook_id"]}
        await wait_delivery(api, job["id"], lambda d: len(d["attempts"]) == 3)
        again = await ui.get(redelivered.headers["location"])
        assert "will be sent again" in again.text and again.text.count(">204</span>") == 2

        waiting = await submit(api, "sleep", {"seconds": 0}, webhook_url=receiver.url, scheduled_at=NEVER)
        not_yet = await ui.get(f"/ui/jobs/{waiting['id']}")
        assert "No event yet" in not_yet.text and "Redeliver" not in not_yet.text
        refused = await ui.post(
            f"/ui/jobs/{waiting['id']}/webhooks/redeliver", data={"csrf": token_in(not_yet)}
        )
        assert refused.status_code == 409 and "no webhook event to redeliver" in refused.text
        # left pending: ending it would queue an event for a receiver that is gone by then

        plain = await submit(api, "square_sum", {"data": [1]})
        assert "Webhook" not in (await ui.get(f"/ui/jobs/{plain['id']}")).text
