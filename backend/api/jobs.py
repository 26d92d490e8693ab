"""Job routes: thin; the rules live in `backend/services/jobs.py`."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, HTTPException, Query, Response
from fastapi.responses import JSONResponse, StreamingResponse

from backend.api.deps import (
    AUTH_RESPONSES,
    OWNER_PATTERN,
    CurrentKey,
    IdempotencyDep,
    JobServiceDep,
    OwnedJobDep,
    StateDep,
    owner_filter,
)
from backend.api.errors import ErrorMessage
from backend.api.json_body import JsonBodyRoute
from backend.api.telemetry import TRACEPARENT_OPENAPI, request_traceparent
from backend.domain.datetimes import Timestamp
from backend.domain.enums import JobStatus
from backend.domain.job_types import JobType
from backend.domain.jobs import (
    MAX_TAGS,
    BulkRequest,
    BulkResult,
    JobCreate,
    JobDetail,
    JobInclude,
    JobList,
    JobPublic,
    JobResultView,
    JobStatusView,
    RunView,
    SearchText,
    Tag,
)
from backend.domain.lifecycle import Event
from backend.repo.jobs import JobFilters
from backend.services.jobs import Submitted
from backend.services.watch import event_id, job_updates

router = APIRouter(prefix="/jobs", tags=["jobs"], route_class=JsonBodyRoute, responses=AUTH_RESPONSES)

SSE_RETRY_MS = 1000  # how soon a client reconnects after a stream's lifetime is over

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "Job not found (or not yours)"}}
CONFLICT: dict[int | str, dict[str, Any]] = {409: {"description": "The job's status does not allow this"}}
SUBMIT_RESPONSES: dict[int | str, dict[str, Any]] = {
    201: {
        "description": "Job created (or, with `Idempotent-Replayed: true`, the first response replayed)",
        "headers": {
            "Location": {"description": "URL of the job", "schema": {"type": "string"}},
            "Idempotent-Replayed": {
                "description": "`true` when a stored response is replayed for a repeated key",
                "schema": {"type": "string"},
            },
        },
    },
    400: {"description": "Idempotency-Key malformed (or missing while required)"},
    409: {"description": "Idempotency-Key in use by a request still in flight; retry after `Retry-After`"},
    413: {"description": "Body larger than MAX_BODY_BYTES"},
    422: {"description": "Validation error naming the field, or Idempotency-Key reused with another body"},
}


@router.post(
    "",
    status_code=201,
    response_model=JobPublic,
    responses=SUBMIT_RESPONSES,
    openapi_extra=TRACEPARENT_OPENAPI,
)
async def submit_job(
    body: Annotated[JobCreate, Body()],
    key: CurrentKey,
    service: JobServiceDep,
    idempotency: IdempotencyDep,
) -> Response:
    """Submit a job: stored before this returns, run by a worker soon after (or at `scheduled_at`)."""
    return submitted(await service.submit(key.id, body, idempotency, key.is_admin, request_traceparent()))


def submitted(outcome: Submitted) -> Response:
    """A submission's response: the stored or fresh body, `Location`, and `Idempotent-Replayed` on a
    replay."""
    headers = {"Location": outcome.location} if outcome.location else {}
    if outcome.replayed:
        headers["Idempotent-Replayed"] = "true"
    if isinstance(outcome.body, bytes):
        return Response(outcome.body, outcome.status_code, headers, media_type="application/json")
    return JSONResponse(outcome.body, status_code=outcome.status_code, headers=headers)


@router.get(
    "",
    response_model=JobList,
    responses={403: {"description": "`owner` with a client key", "model": ErrorMessage}},
)
async def list_jobs(
    key: CurrentKey,
    service: JobServiceDep,
    status: Annotated[list[JobStatus] | None, Query()] = None,
    type: Annotated[list[JobType] | None, Query()] = None,
    created_after: Timestamp | None = None,
    created_before: Timestamp | None = None,
    tag: Annotated[
        list[Tag] | None, Query(max_length=MAX_TAGS, description="Jobs carrying all of these.")
    ] = None,
    q: Annotated[SearchText | None, Query(description="A job id, or the start of a job's name.")] = None,
    batch_id: Annotated[uuid.UUID | None, Query(description="Only the jobs of this batch.")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: str | None = None,
    owner: Annotated[
        str | None,
        Query(
            description="Admin keys only: `all` for every key's jobs, or one key's id.",
            pattern=OWNER_PATTERN,
        ),
    ] = None,
) -> JobList:
    """Your jobs (an admin's: every key's with `owner=all`, or one key's), newest first, a page at a time
    (`next_cursor` → `cursor`)."""
    filters = JobFilters(status, type, created_after, created_before, tag, q, batch_id=batch_id)
    owner_id = owner_filter(key, owner)
    try:
        rows, next_cursor = await service.list(owner_id, filters, limit, cursor)
    except ValueError as exc:
        detail = [{"loc": ["query", "cursor"], "msg": "Invalid cursor", "type": "value_error"}]
        raise HTTPException(status_code=422, detail=detail) from exc
    return JobList(items=[JobPublic.of(r, key.is_admin) for r in rows], next_cursor=next_cursor)


BULK_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "How many jobs matched and how many changed (none with `dry_run`)"}
}


# Declared before the /{job_id} routes, so that "bulk" is never read as a job id.
@router.post("/bulk/cancel", responses=BULK_RESPONSES)
async def bulk_cancel(request: BulkRequest, key: CurrentKey, service: JobServiceDep) -> BulkResult:
    """Cancel every matching pending, retrying or running job, in batches (running ones are aborted)."""
    return await service.bulk(key.id, request, Event.CANCEL)


@router.post("/bulk/retry", responses=BULK_RESPONSES)
async def bulk_retry(request: BulkRequest, key: CurrentKey, service: JobServiceDep) -> BulkResult:
    """Run every matching failed or cancelled job again, in batches, each with a fresh attempt budget."""
    return await service.bulk(key.id, request, Event.REQUEUE)


@router.get("/{job_id}", responses=NOT_FOUND, response_model_exclude_unset=True)
async def get_job(
    job: OwnedJobDep,
    key: CurrentKey,
    service: JobServiceDep,
    include: Annotated[list[JobInclude] | None, Query(description="`runs`: add the run history.")] = None,
) -> JobDetail:
    """Everything about one job (with `include=runs`, its runs too)."""
    detail = JobDetail.of(job, key.is_admin)
    if include and JobInclude.RUNS in include:
        runs = [RunView.model_validate(run) for run in await service.runs(job)]
        detail = detail.model_copy(update={"runs": runs})
    return detail


@router.get("/{job_id}/status", responses=NOT_FOUND)
async def get_job_status(job: OwnedJobDep) -> JobStatusView:
    """Status and progress only (cheap to poll)."""
    return JobStatusView.model_validate(job)


@router.get("/{job_id}/result", responses=NOT_FOUND)
async def get_job_result(job: OwnedJobDep) -> JobResultView:
    """The result and file metadata; `result` is null until the job completes."""
    return JobResultView.of(job)


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={**NOT_FOUND, 200: {"description": "Server-Sent Events", "content": {"text/event-stream": {}}}},
)
async def job_events(
    job: OwnedJobDep,
    key: CurrentKey,
    state: StateDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=40)] = None,
) -> StreamingResponse:
    """Server-Sent Events: a `job` event per status or progress change; ends when the job does, or after
    `SSE_MAX_SECONDS` (reconnect with `Last-Event-ID`: a state already seen is not sent again)."""
    settings = state.resources.settings
    sub = state.watcher.subscribe(job.owner_id, job.id)  # TooManyStreams (429) before the response starts

    async def stream() -> AsyncIterator[str]:
        try:
            yield f"retry: {SSE_RETRY_MS}\n\n"
            async for update in job_updates(sub, settings.sse_max_seconds, last_event_id):
                body = JobPublic.of(update, key.is_admin).model_dump_json()
                yield f"id: {event_id(update)}\nevent: job\ndata: {body}\n\n"
        finally:
            state.watcher.unsubscribe(sub)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


@router.post("/{job_id}/cancel", status_code=202, responses={**NOT_FOUND, **CONFLICT})
async def cancel_job(job: OwnedJobDep, key: CurrentKey, service: JobServiceDep) -> JobPublic:
    """Cancel: a waiting job at once; a running one is aborted by its worker and ends `cancelled`."""
    return JobPublic.of(await service.cancel(job), key.is_admin)


@router.post("/{job_id}/retry", status_code=202, responses={**NOT_FOUND, **CONFLICT})
async def retry_job(job: OwnedJobDep, key: CurrentKey, service: JobServiceDep) -> JobPublic:
    """Run a `failed` or `cancelled` job again with a fresh attempt budget."""
    return JobPublic.of(await service.retry(job), key.is_admin)
