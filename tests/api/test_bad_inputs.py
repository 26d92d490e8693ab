"""Inputs that used to reach the database or the fingerprint and end in a 500 are 4xx naming the field."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import httpx
import pytest

OUT_OF_UTC = ["0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59-23:59"]
NOT_RFC3339 = ["0.5", "1700000000", "2026-01-31", "2026-01-31T09:30"]
SLEEP = {"type": "sleep", "payload": {"seconds": 0}}


def locs(response: httpx.Response) -> list[list[Any]]:
    assert response.status_code == 422, response.text
    return [e["loc"] for e in response.json()["detail"]]


def cursor(created: str) -> str:
    raw = f"{created}|{uuid.uuid4()}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.mark.parametrize("value", OUT_OF_UTC)
async def test_date_times_outside_utc_are_422_naming_the_field(client: httpx.AsyncClient, value: str) -> None:
    submitted = await client.post("/jobs", json={**SLEEP, "scheduled_at": value})
    assert locs(submitted) == [["body", "sleep", "scheduled_at"]]
    for field in ("created_after", "created_before"):
        assert locs(await client.get("/jobs", params={field: value})) == [["query", field]]
        export = {"type": "jobs_export", "payload": {field: value}}
        assert locs(await client.post("/jobs", json=export)) == [["body", "jobs_export", "payload", field]]
    assert locs(await client.get("/jobs", params={"cursor": cursor(value)})) == [["query", "cursor"]]
    assert locs(await client.get("/jobs", params={"cursor": cursor("2026-01-01T00:00:00")})) == [
        ["query", "cursor"]
    ]


@pytest.mark.parametrize("value", NOT_RFC3339)
async def test_only_rfc3339_date_times_are_accepted(client: httpx.AsyncClient, value: str) -> None:
    for field in ("created_after", "created_before"):
        assert locs(await client.get("/jobs", params={field: value})) == [["query", field]]
        export = {"type": "jobs_export", "payload": {field: value}}
        assert locs(await client.post("/jobs", json=export)) == [["body", "jobs_export", "payload", field]]
    assert locs(await client.post("/jobs", json={**SLEEP, "scheduled_at": value})) == [
        ["body", "sleep", "scheduled_at"]
    ]


async def test_numbers_are_not_date_times(client: httpx.AsyncClient) -> None:
    assert locs(await client.post("/jobs", json={**SLEEP, "scheduled_at": 0.5})) == [
        ["body", "sleep", "scheduled_at"]
    ]
    export = {"type": "jobs_export", "payload": {"created_before": 1_700_000_000}}
    assert locs(await client.post("/jobs", json=export)) == [
        ["body", "jobs_export", "payload", "created_before"]
    ]
    listed = await client.get("/jobs", params={"created_after": "2026-01-31T09:30:00+02:00"})
    assert listed.status_code == 200, listed.text
