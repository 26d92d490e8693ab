"""First contact: submit a job over HTTP and watch a real worker complete it."""

from __future__ import annotations

import httpx

from tests.utils.stack import submit, wait_for


async def test_square_sum_runs_to_completion(client: httpx.AsyncClient) -> None:
    job = await submit(client, "square_sum", {"data": [1, 2, 3]})
    done = await wait_for(client, job["id"], {"completed", "failed"})
    assert done["status"] == "completed", done
    assert done["result"] == {"value": 14}
    assert done["attempts"] == 1
