"""`priority`, `concurrency_key`, `concurrency_limit` on a submission: stored, shown, validated by field."""

from __future__ import annotations

import httpx
import pytest

from tests.utils.stack import submit

BASE = {"type": "square_sum", "payload": {"data": [1]}}


async def test_dispatch_fields_are_stored_and_shown(client: httpx.AsyncClient) -> None:
    job = await submit(client, "square_sum", {"data": [1]}, priority=7, concurrency_key="tenant-db")
    assert (job["priority"], job["concurrency_key"], job["concurrency_limit"]) == (7, "tenant-db", 1)
    plain = await submit(client, "square_sum", {"data": [1]})
    assert (plain["priority"], plain["concurrency_key"], plain["concurrency_limit"]) == (0, None, None)


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"priority": 11}, "priority"),
        ({"priority": -11}, "priority"),
        ({"priority": 1.5}, "priority"),
        ({"priority": "high"}, "priority"),
        ({"concurrency_limit": 2}, "concurrency_limit"),  # a limit needs a key
        ({"concurrency_key": "k", "concurrency_limit": 0}, "concurrency_limit"),
        ({"concurrency_key": "k", "concurrency_limit": 1001}, "concurrency_limit"),
        ({"concurrency_key": ""}, "concurrency_key"),
        ({"concurrency_key": "x" * 201}, "concurrency_key"),
        ({"concurrency_key": "a\nb"}, "concurrency_key"),
    ],
)
async def test_bad_dispatch_fields_name_the_field(
    client: httpx.AsyncClient, extra: dict[str, object], field: str
) -> None:
    response = await client.post("/jobs", json={**BASE, **extra})
    assert response.status_code == 422, response.text
    assert [e["loc"][-1] for e in response.json()["detail"]] == [field]
