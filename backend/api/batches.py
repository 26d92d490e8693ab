"""Batch routes: many jobs submitted as one unit; the rules live in `backend/services/jobs.py`."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Response
from fastapi.responses import StreamingResponse

from backend.api.deps import AUTH_RESPONSES, CurrentKey, IdempotencyDep, JobServiceDep, StateDep
from backend.api.jobs import SSE_RETRY_MS, SUBMIT_RESPONSES, submitted
from backend.api.json_body import JsonBodyRoute
from backend.api.telemetry import TRACEPARENT_OPENAPI, request_traceparent
from backend.domain.batches import BatchCreate, BatchCreated, BatchView
from backend.domain.records import BatchRecord

router = APIRouter(prefix="/batches", tags=["batches"], route_class=JsonBodyRoute, responses=AUTH_RESPONSES)

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "Batch not found (or not yours)"}}


async def owned_batch(batch_id: uuid.UUID, key: CurrentKey, service: JobServiceDep) -> BatchRecord:
    """The caller's batch (any, for an admin key) or 404."""
    return await service.batch(None if key.is_admin else key.id, batch_id)


OwnedBatchDep = Annotated[BatchRecord, Depends(owned_batch)]


@router.post(
    "",
    status_code=201,
    response_model=BatchCreated,
    responses=SUBMIT_RESPONSES,
    openapi_extra=TRACEPARENT_OPENAPI,
)
async def submit_batch(
    body: Annotated[BatchCreate, Body()],
    key: CurrentKey,
    service: JobServiceDep,
    idempotency: IdempotencyDep,
) -> Response:
    """Submit 1-1,000 jobs at once: all are stored in one transaction, or none (a bad one is a 422 naming
    `jobs[i]`). In `depends_on`, `#i` names the batch's job at index i (an earlier one)."""
    return submitted(
        await service.submit_batch(key.id, body, idempotency, key.is_admin, request_traceparent())
    )


@router.get("/{batch_id}", responses=NOT_FOUND)
async def get_batch(batch: OwnedBatchDep, service: JobServiceDep) -> BatchView:
    """How many of the batch's jobs are in each status; `done` once every one is terminal (its jobs:
    `GET /jobs?batch_id=`)."""
    return await service.batch_view(batch)


@router.post("/{batch_id}/cancel", status_code=202, responses=NOT_FOUND)
async def cancel_batch(batch: OwnedBatchDep, service: JobServiceDep) -> BatchView:
    """Cancel every job of the batch that has not ended (running ones are aborted by their workers)."""
    await service.cancel_batch(batch)
    return await service.batch_view(batch)


@router.get(
    "/{batch_id}/events",
    response_class=StreamingResponse,
    responses={**NOT_FOUND, 200: {"description": "Server-Sent Events", "content": {"text/event-stream": {}}}},
)
async def batch_events(
    batch: OwnedBatchDep, key: CurrentKey, service: JobServiceDep, state: StateDep
) -> StreamingResponse:
    """Server-Sent Events: a `batch` event (counts, done) whenever the counts change; ends when every job
    is terminal, or after `SSE_MAX_SECONDS` (reconnect).

    The stream counts against the key's `SSE_MAX_STREAMS_PER_KEY` like a job's (a watch with no jobs of
    its own: the batch is followed by one grouped count of its ≤ 1,000 rows per watcher interval, not by
    one subscription per job)."""
    lifetime = state.resources.settings.sse_max_seconds
    watch = state.watcher.open_watch(key.id)  # TooManyStreams (429) before the response starts

    async def stream() -> AsyncIterator[str]:
        try:
            yield f"retry: {SSE_RETRY_MS}\n\n"
            deadline, last = time.monotonic() + lifetime, None
            while time.monotonic() < deadline:
                view = await service.batch_view(batch)
                if view.counts != last:
                    last = view.counts
                    yield f"event: batch\ndata: {view.model_dump_json()}\n\n"
                if view.done:
                    return
                await asyncio.sleep(state.watcher.interval_s)
        finally:
            state.watcher.close_watch(watch)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)
