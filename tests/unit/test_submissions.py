"""Plain submissions stored together, and the views of new jobs serialized without models.

Concurrent `POST /jobs` without an Idempotency-Key or `depends_on` share one INSERT and one enqueue; each
still gets its own job, and a row the database refuses fails its own request only. The views built from
records (`public_view`, `created_json`) must be byte for byte what the pydantic models serialize.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from pydantic_core import to_json

from backend.core.config import Settings
from backend.domain.batches import BatchCreated, created_json
from backend.domain.enums import JobStatus
from backend.domain.jobs import SUBMISSION_MODELS, JobPublic, new_job_view
from backend.domain.records import Delivery, JobRecord
from backend.resources import Resources
from backend.services.jobs import JobService
from backend.services.quotas import QuotaGuard

NOW = datetime(2026, 12, 1, 16, 0, 0, 123456, tzinfo=UTC)


class FakeJobs:
    """`JobRepository.insert_many` in memory; refuses any statement holding a row named "refused"."""

    def __init__(self) -> None:
        self.statements: list[list[str | None]] = []

    async def insert_many(
        self, rows: Sequence[Mapping[str, Any]], batch_id: uuid.UUID | None = None
    ) -> list[Mapping[str, Any]]:
        self.statements.append([r["name"] for r in rows])
        await asyncio.sleep(0.001)
        if any(r["name"] == "refused" for r in rows):
            raise ValueError("refused by the database")
        stamps = {"created_at": NOW, "scheduled_at": NOW, "updated_at": NOW, "finished_at": None}
        return [stamps for _ in rows]


class FakeQueue:
    def __init__(self) -> None:
        self.calls: list[list[Delivery]] = []

    async def enqueue_many(self, deliveries: Sequence[Delivery]) -> int:
        self.calls.append(list(deliveries))
        return len(deliveries)


def service() -> tuple[JobService, FakeJobs, FakeQueue]:
    settings = Settings(enable_diagnostic_jobs=True, max_waiting_jobs_per_key=0, max_result_bytes_per_key=0)
    queue = FakeQueue()
    resources = Resources(settings, pool=cast(Any, None), queue=cast(Any, queue), storage=cast(Any, None))
    jobs = FakeJobs()
    svc = JobService(resources, QuotaGuard(cast(Any, jobs), settings))
    svc.jobs = cast(Any, jobs)
    return svc, jobs, queue


def sleep_job(name: str) -> Any:
    return SUBMISSION_MODELS["sleep"](type="sleep", payload={"seconds": 0}, name=name)


async def test_concurrent_plain_submissions_share_one_insert_and_one_enqueue() -> None:
    svc, jobs, queue = service()
    owner = uuid.uuid4()
    names = [f"job {i}" for i in range(5)]
    outcomes = await asyncio.gather(*(svc.submit(owner, sleep_job(n), None) for n in names))
    assert jobs.statements == [names]
    assert len(queue.calls) == 1 and len(queue.calls[0]) == 5
    for name, outcome in zip(names, outcomes, strict=True):
        assert outcome.status_code == 201 and not outcome.replayed
        body = outcome.json_body()
        assert body["name"] == name and outcome.location == f"/jobs/{body['id']}"
    assert {str(d.job_id) for d in queue.calls[0]} == {o.json_body()["id"] for o in outcomes}


async def test_a_refused_row_fails_only_its_own_request() -> None:
    svc, jobs, queue = service()
    owner = uuid.uuid4()
    names = ["a", "refused", "b"]
    outcomes = await asyncio.gather(
        *(svc.submit(owner, sleep_job(n), None) for n in names), return_exceptions=True
    )
    assert isinstance(outcomes[1], ValueError)
    assert [cast(Any, o).json_body()["name"] for o in (outcomes[0], outcomes[2])] == ["a", "b"]
    assert jobs.statements == [names, ["a"], ["refused"], ["b"]]  # the group, then each row alone
    assert [len(c) for c in queue.calls] == [2]  # the stored ones, still with one enqueue


async def test_a_lone_refused_row_fails_once() -> None:
    svc, jobs, _ = service()
    with pytest.raises(ValueError):
        await svc.submit(uuid.uuid4(), sleep_job("refused"), None)
    assert jobs.statements == [["refused"]]


def inserted() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(values, stamps) of new jobs: a plain one, and one with every optional field (blocked)."""
    plain = {
        "id": uuid.uuid4(),
        "owner_id": uuid.uuid4(),
        "type": "sleep",
        "name": None,
        "payload": {"seconds": 0.0, "fail_first": 0},
        "max_attempts": 3,
        "scheduled_at": None,
        "tags": [],
        "priority": 0,
        "concurrency_key": None,
        "concurrency_limit": None,
        "webhook_url": None,
        "traceparent": None,
    }
    full = {
        **plain,
        "id": uuid.uuid4(),
        "name": "é ünïcode \u2028",
        "payload": {"seconds": 0.5, "fail_first": 1},
        "tags": ["a", "b"],
        "priority": -3,
        "concurrency_key": "k",
        "concurrency_limit": 2,
        "webhook_url": "https://example.com/hook",
        "depends_on": [uuid.uuid4(), uuid.uuid4()],
        "status": JobStatus.BLOCKED,
        "error": None,
        "traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01",
    }
    stamps = {"created_at": NOW, "scheduled_at": NOW, "updated_at": NOW, "finished_at": None}
    later = {**stamps, "scheduled_at": NOW + timedelta(hours=1)}
    return [(plain, stamps), (full, later)]


def record(values: dict[str, Any], stamps: dict[str, Any], batch_id: uuid.UUID | None) -> JobRecord:
    """The row as the database holds it (`SELECT *`): what was sent, the stamps, the defaults."""
    defaults = {
        "status": JobStatus.PENDING,
        "progress": 0.0,
        "attempts": 0,
        "result": None,
        "error": None,
        "result_file": None,
        "cancel_requested": False,
        "worker_id": None,
        "claim_token": None,
        "lease_expires_at": None,
        "started_at": None,
        "depends_on": [],
    }
    row = {**defaults, **values, **stamps, "batch_id": batch_id}
    return JobRecord.from_row(row)


@pytest.mark.parametrize("show_owner", [False, True])
def test_a_new_job_view_is_what_the_model_serializes(show_owner: bool) -> None:
    batch_id = uuid.uuid4()
    for values, stamps in inserted():
        for batch in (None, batch_id):
            model = JobPublic.of(record(values, stamps, batch), show_owner)
            view = to_json(new_job_view(values, stamps, batch, show_owner))
            assert view == model.model_dump_json().encode()


def test_created_json_is_what_the_batch_model_serializes() -> None:
    jobs = inserted()
    batch_id = uuid.uuid4()
    model = BatchCreated(
        id=batch_id,
        name="nightly",
        created_at=NOW,
        counts={"pending": 1, "blocked": 1},
        done=False,
        jobs=[JobPublic.of(record(v, s, batch_id), True) for v, s in jobs],
    )
    rows = [{**v, "status": v.get("status", JobStatus.PENDING)} for v, _ in jobs]
    created = created_json(batch_id, "nightly", rows, [s for _, s in jobs], True)
    assert created == model.model_dump_json().encode()
