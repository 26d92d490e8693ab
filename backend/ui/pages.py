"""The dashboard's pages about jobs: overview, the job list, one job, failures, submit, live updates."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse
from pydantic import TypeAdapter, ValidationError

from backend.api.deps import JobServiceDep, StateDep, StorageDep, WebhookServiceDep
from backend.api.downloads import download_result
from backend.api.telemetry import request_traceparent
from backend.domain.batches import BatchView
from backend.domain.enums import JobStatus
from backend.domain.errors import JobStateChanging, JobStateConflict, QuotaExceeded
from backend.domain.job_types import JOB_TYPES, SPECS
from backend.domain.jobs import MAX_TAGS, BulkRequest, JobPublic, SearchText, Tag
from backend.domain.lifecycle import Event, sources
from backend.domain.records import BatchRecord, JobRecord
from backend.domain.stats import StatsWindow
from backend.repo.jobs import JobFilters
from backend.services.jobs import JobService, decode_cursor, encode_cursor
from backend.services.stats import stats_view
from backend.services.watch import visible_state
from backend.services.webhooks import WebhookService
from backend.ui.charts import Series, line_chart
from backend.ui.deps import CheckedUserDep, FormDep, UiUser, UiUserDep, first, page_or_first, render
from backend.ui.forms import JobForm, job_forms, submission

router = APIRouter(prefix="/ui", include_in_schema=False)

PAGE_SIZE = 25
MAX_LIVE_JOBS = 100  # jobs one live stream follows (a page shows 25)
TAGS: TypeAdapter[list[Tag]] = TypeAdapter(list[Tag])
SEARCH: TypeAdapter[SearchText] = TypeAdapter(SearchText)
CANCELLABLE = sources(Event.CANCEL)
RETRYABLE = sources(Event.REQUEUE)
LIVE_RETRY_MS = 2000
LIVE_ARRIVALS_EVERY_S = 2.0  # how often a followed list looks for new jobs
LIVE_COUNTS_EVERY_S = 1.0  # how often a batch's live page recounts its jobs
MAX_SHOWN_JSON = 100_000  # characters of a payload or result shown on the page
NOTICES = {  # a job page's line after an action (`?done=`)
    "cancel": "Cancellation requested.",
    "retry": "The job will run again.",
    "redeliver": "The latest webhook event will be sent again, with the same webhook-id.",
}


def _owner(user: UiUser, everyone: bool) -> uuid.UUID | None:
    """Whose jobs a page shows: the key's own, or (admins asking for it) everyone's."""
    return None if everyone and user.is_admin else user.principal.id


@router.get("")
async def overview(
    request: Request, user: UiUserDep, state: StateDep, window: StatsWindow = StatsWindow.DAY
) -> Response:
    """Charts from the rollups, the queue now, and failure rates by type."""
    stats = await stats_view(state.resources.pool, owner_id=user.scope, window=window, job_type=None)
    starts = [b.start for b in stats.buckets]
    throughput = line_chart(
        "Jobs per bucket",
        "jobs",
        starts,
        [
            Series("created", "s-created", [b.created for b in stats.buckets]),
            Series("completed", "s-completed", [b.completed for b in stats.buckets]),
            Series("failed", "s-failed", [b.failed for b in stats.buckets]),
        ],
    )
    latency = line_chart(
        "Wait and run time, p95",
        "seconds",
        starts,
        [
            Series("wait p95", "s-wait", [b.wait_p95 for b in stats.buckets]),
            Series("run p95", "s-run", [b.run_p95 for b in stats.buckets]),
        ],
    )
    return render(
        request,
        "overview.html",
        user,
        stats=stats,
        charts=[throughput, latency],
        windows=list(StatsWindow),
        window=window,
    )


def _job_filters(params: Any) -> tuple[JobFilters, dict[str, Any], str]:
    """Filters from the job list's query string, the values to show back, and a message if any was bad."""
    asked_statuses = [s for s in params.getlist("status") if s]  # "" is the form's "any"
    asked_types = [t for t in params.getlist("type") if t]
    statuses = [s for s in asked_statuses if s in JobStatus.__members__.values()]
    types = [t for t in asked_types if t in SPECS]
    shown = {
        "status": statuses,
        "type": types,
        "tags": params.get("tags", ""),
        "q": params.get("q", ""),
        "owner": params.get("owner", ""),
        "batch_id": "",
    }
    message = ""
    if len(statuses) != len(asked_statuses) or len(types) != len(asked_types):
        message = "Unknown status or type ignored."
    batch_id: uuid.UUID | None = None
    if params.get("batch_id"):
        try:
            batch_id = uuid.UUID(params["batch_id"])
            shown["batch_id"] = str(batch_id)
        except ValueError:
            message = "That batch id is not a UUID; showing every batch's jobs."
    tags: list[str] | None = None
    search: str | None = None
    try:
        tags = TAGS.validate_python([t.strip() for t in shown["tags"].split(",") if t.strip()]) or None
        if tags and len(tags) > MAX_TAGS:
            raise ValueError
    except (ValidationError, ValueError):
        tags, message = None, f"Tags: up to {MAX_TAGS}, each 1-64 characters, comma-separated."
    try:
        search = SEARCH.validate_python(shown["q"].strip()) if shown["q"].strip() else None
    except ValidationError:
        message = "Search: up to 200 characters."
    filters = JobFilters(statuses or None, types or None, None, None, tags, search, batch_id=batch_id)
    return filters, shown, message


@router.get("/jobs")
async def job_list(
    request: Request,
    user: UiUserDep,
    service: JobServiceDep,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """Jobs with filters, tags, search and pagination; live rows update over SSE."""
    filters, shown, message = _job_filters(request.query_params)
    owner_id = _owner(user, shown["owner"] == "all")
    jobs, next_cursor, stale = await page_or_first(service.list(owner_id, filters, PAGE_SIZE, cursor))
    message = stale or message
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor"]
    follow = (
        [] if cursor else [*query, ("follow", "1"), *([("since", encode_cursor(jobs[0]))] if jobs else [])]
    )
    return render(
        request,
        "jobs.html",
        user,
        status_code=400 if message else 200,
        jobs=jobs,
        next_cursor=next_cursor,
        query=query,
        follow=urlencode(follow),
        shown=shown,
        message=message,
        statuses=list(JobStatus),
        types=[spec.name for spec in JOB_TYPES],
    )


async def _job_of(user: UiUser, service: JobService, job_id: uuid.UUID) -> JobRecord:
    """The user's job (any job for an admin); JobNotFound renders the 404 page."""
    return await service.get(user.scope, job_id)


def _pretty(value: Any) -> str:
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    return text if len(text) <= MAX_SHOWN_JSON else text[:MAX_SHOWN_JSON] + "\n… (cut; the API has all of it)"


@router.get("/jobs/{job_id}")
async def job_page(
    request: Request,
    job_id: uuid.UUID,
    user: UiUserDep,
    service: JobServiceDep,
    webhooks: WebhookServiceDep,
    done: Annotated[str | None, Query(max_length=20)] = None,
) -> Response:
    """One job: fields, payload, result, error, progress, runs timeline, webhook attempts, download,
    cancel, retry, redeliver."""
    job = await _job_of(user, service, job_id)
    notice = NOTICES.get(done or "", "")
    return await _job_response(request, user, service, webhooks, job, notice=notice)


async def _job_response(
    request: Request,
    user: UiUser,
    service: JobService,
    webhooks: WebhookService,
    job: JobRecord,
    notice: str = "",
    message: str = "",
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "job.html",
        user,
        status_code=status_code,
        job=job,
        runs=await service.runs(job),
        deliveries=await webhooks.deliveries(job.id) if job.webhook_url else [],
        payload=_pretty(job.payload),
        result=_pretty(job.result) if job.result is not None else None,
        can_cancel=job.status in CANCELLABLE,
        can_retry=job.status in RETRYABLE,
        notice=notice,
        message=message,
    )


async def _act(
    request: Request,
    job_id: uuid.UUID,
    user: UiUser,
    service: JobService,
    webhooks: WebhookService,
    event: Event,
) -> Response:
    job = await _job_of(user, service, job_id)
    try:
        await (service.cancel(job) if event is Event.CANCEL else service.retry(job))
    except (JobStateConflict, JobStateChanging) as exc:
        job = await _job_of(user, service, job_id)
        return await _job_response(request, user, service, webhooks, job, message=str(exc), status_code=409)
    name = "cancel" if event is Event.CANCEL else "retry"
    return RedirectResponse(f"/ui/jobs/{job_id}?done={name}", status_code=303)


@router.post("/jobs/{job_id}/cancel")
async def cancel_job(
    request: Request,
    job_id: uuid.UUID,
    user: CheckedUserDep,
    service: JobServiceDep,
    webhooks: WebhookServiceDep,
) -> Response:
    """Cancel from the job's page."""
    return await _act(request, job_id, user, service, webhooks, Event.CANCEL)


@router.post("/jobs/{job_id}/retry")
async def retry_job(
    request: Request,
    job_id: uuid.UUID,
    user: CheckedUserDep,
    service: JobServiceDep,
    webhooks: WebhookServiceDep,
) -> Response:
    """Retry from the job's page."""
    return await _act(request, job_id, user, service, webhooks, Event.REQUEUE)


@router.post("/jobs/{job_id}/webhooks/redeliver")
async def redeliver_webhook(
    request: Request,
    job_id: uuid.UUID,
    user: CheckedUserDep,
    service: JobServiceDep,
    webhooks: WebhookServiceDep,
) -> Response:
    """Send the job's latest webhook event again (same webhook-id), as `POST /jobs/{id}/webhooks/redeliver`
    does; the job's page with the reason (409) if it has none."""
    job = await _job_of(user, service, job_id)
    try:
        await webhooks.redeliver(job)
    except JobStateConflict as exc:
        return await _job_response(request, user, service, webhooks, job, message=str(exc), status_code=409)
    return RedirectResponse(f"/ui/jobs/{job_id}?done=redeliver", status_code=303)


@router.get("/jobs/{job_id}/download")
async def download(
    request: Request, job_id: uuid.UUID, user: UiUserDep, service: JobServiceDep, storage: StorageDep
) -> Response:
    """The job's file, exactly as `GET /jobs/{id}/download` serves it (with the session instead of a key)."""
    job = await _job_of(user, service, job_id)
    return await download_result(request, job, storage, request.headers.get("Range"))


@router.get("/live")
async def live(
    request: Request,
    user: UiUserDep,
    service: JobServiceDep,
    state: StateDep,
    id: Annotated[list[uuid.UUID], Query(max_length=MAX_LIVE_JOBS)] = [],  # noqa: B006 (FastAPI copies it)
    follow: bool = False,
    since: Annotated[str | None, Query(max_length=200)] = None,
    batch: uuid.UUID | None = None,
) -> StreamingResponse:
    """Server-Sent Events for a page: `job` each time a shown job changes; with `follow` (the job list's
    first page, its filters in the query), `new` for each job created after `since`, followed from then on;
    with `batch` (a batch's page), `batch` (its view) each time its counts change, until it is done."""
    counts = _BatchCounts(service, await service.batch(user.scope, batch)) if batch else None
    jobs = await service.jobs.get_many(id) if id else []
    watch = state.watcher.open_watch(user.principal.id)  # TooManyStreams (429) before the response starts
    for job in jobs:
        if user.is_admin or job.owner_id == user.principal.id:
            state.watcher.add_to_watch(watch, job.owner_id, job.id)
    filters, shown, _ = _job_filters(request.query_params)
    try:
        newest = decode_cursor(since) if since else None
    except ValueError:
        newest = None
    arrivals = _Arrivals(service, _owner(user, shown["owner"] == "all"), filters, newest) if follow else None
    deadline = time.monotonic() + state.resources.settings.sse_max_seconds

    async def stream() -> AsyncIterator[str]:
        seen: dict[uuid.UUID, tuple[object, ...]] = {}
        try:
            yield f"retry: {LIVE_RETRY_MS}\n\n"
            while (remaining := deadline - time.monotonic()) > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(watch.changed.wait(), min(remaining, LIVE_ARRIVALS_EVERY_S))
                watch.changed.clear()
                for job in watch.changes(seen):
                    yield f"event: job\ndata: {JobPublic.of(job).model_dump_json()}\n\n"
                if counts is not None and (view := await counts.changed()) is not None:
                    yield f"event: batch\ndata: {view.model_dump_json()}\n\n"
                if arrivals is None and watch.settled() and (counts is None or counts.done):
                    return  # nothing left to report: every followed job ended (or is gone)
                for job in await arrivals.fresh() if arrivals else ():
                    state.watcher.add_to_watch(watch, job.owner_id, job.id)
                    seen[job.id] = visible_state(job)
                    data = {"job": JobPublic.of(job).model_dump(mode="json"), "cursor": encode_cursor(job)}
                    yield f"event: new\ndata: {json.dumps(data)}\n\n"
        finally:
            state.watcher.close_watch(watch)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


@dataclass
class _Arrivals:
    """Jobs created since the newest one a list page shows, matching its filters (one query a tick)."""

    service: JobService
    owner_id: uuid.UUID | None
    filters: JobFilters
    newest: tuple[datetime, uuid.UUID] | None

    async def fresh(self) -> list[JobRecord]:
        """The new jobs, oldest first."""
        rows, _ = await self.service.list(self.owner_id, self.filters, PAGE_SIZE, None)
        new = [r for r in rows if self.newest is None or (r.created_at, r.id) > self.newest]
        if new:
            self.newest = (new[0].created_at, new[0].id)
        return new[::-1]


@dataclass
class _BatchCounts:
    """A batch's counts for its live page: recounted at most every LIVE_COUNTS_EVERY_S (one grouped count
    of its ≤ 1,000 rows, as `GET /batches/{id}/events` does), whatever the shown jobs' changes."""

    service: JobService
    batch: BatchRecord
    last: BatchView | None = None
    counted_at: float = -math.inf

    @property
    def done(self) -> bool:
        """True once the last count found every job terminal."""
        return self.last is not None and self.last.done

    async def changed(self) -> BatchView | None:
        """The batch's view if its counts changed since the last one sent (the first one always)."""
        if time.monotonic() - self.counted_at < LIVE_COUNTS_EVERY_S:
            return None
        self.counted_at = time.monotonic()
        view = await self.service.batch_view(self.batch)
        if self.last is not None and view.counts == self.last.counts:
            return None
        self.last = view
        return view


@router.get("/failures")
async def failures(
    request: Request,
    user: UiUserDep,
    service: JobServiceDep,
    retried: Annotated[int | None, Query(ge=0)] = None,
) -> Response:
    """Failed jobs of the last week grouped by type and error, each group with a bulk retry."""
    groups = await service.failure_groups(user.principal.id)
    return render(request, "failures.html", user, groups=groups, retried=retried)


@router.post("/failures/retry")
async def retry_failures(user: CheckedUserDep, service: JobServiceDep, form: FormDep) -> Response:
    """Retry every failed job of one group (type + exact error), in bounded batches."""
    try:
        request = BulkRequest(
            status=[JobStatus.FAILED], type=[first(form, "type")], error=first(form, "error")
        )
    except ValidationError:
        return RedirectResponse("/ui/failures", status_code=303)
    result = await service.bulk(user.principal.id, request, Event.REQUEUE)
    return RedirectResponse(f"/ui/failures?retried={result.changed}", status_code=303)


def _forms(request: Request, state: StateDep) -> list[JobForm]:
    settings = state.resources.settings
    enabled = {s.name for s in JOB_TYPES if not s.diagnostic or settings.diagnostic_jobs_enabled}
    return job_forms(request.app.openapi(), enabled)


def _submit_page(
    request: Request,
    user: UiUser,
    forms: list[JobForm],
    chosen: JobForm,
    message: str = "",
    status_code: int = 200,
) -> Response:
    return render(
        request, "submit.html", user, status_code=status_code, forms=forms, form=chosen, message=message
    )


@router.get("/submit")
async def submit_page(
    request: Request,
    user: UiUserDep,
    state: StateDep,
    type: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """A form per job type, generated from the payload JSON Schemas in the OpenAPI document."""
    forms = _forms(request, state)
    chosen = next((f for f in forms if f.type == type), forms[0])
    return _submit_page(request, user, forms, chosen)


@router.post("/submit")
async def submit(
    request: Request, user: CheckedUserDep, state: StateDep, service: JobServiceDep, form: FormDep
) -> Response:
    """Validate with the API's own models; errors land next to their fields; success opens the job."""
    forms = _forms(request, state)
    chosen = next((f for f in forms if f.type == first(form, "type")), None)
    if chosen is None:
        return _submit_page(request, user, forms, forms[0], "Choose a job type.", 422)
    body = submission(chosen, form)
    if body is None:
        return _submit_page(request, user, forms, chosen, "Please correct the fields marked below.", 422)
    try:
        # The form's request span (tracing on) is the job's parent, as a POST /jobs request's is.
        traceparent = request_traceparent()
        outcome = await service.submit(user.principal.id, body, None, user.is_admin, traceparent)
    except QuotaExceeded as exc:
        return _submit_page(request, user, forms, chosen, str(exc), 429)
    return RedirectResponse(f"/ui/jobs/{outcome.json_body()['id']}", status_code=303)
