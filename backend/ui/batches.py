"""The dashboard's batches: the list (newest first, with counts and progress) and one batch with its jobs
and a cancel button."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import RedirectResponse

from backend.api.deps import JobServiceDep
from backend.domain.batches import BatchView
from backend.domain.enums import JobStatus
from backend.repo.jobs import JobFilters
from backend.ui.deps import CheckedUserDep, UiUserDep, page_or_first, render

router = APIRouter(prefix="/ui/batches", include_in_schema=False)

PAGE_SIZE = 25
STATUSES = list(JobStatus)  # the order counts are shown in (the lifecycle's)


@dataclass(frozen=True)
class BatchSummary:
    """A batch as the dashboard shows it: its counts in lifecycle order and how far it has got."""

    view: BatchView

    @property
    def total(self) -> int:
        """Its jobs (those not purged yet)."""
        return sum(self.view.counts.values())

    @property
    def ended(self) -> int:
        """Its jobs in a terminal status."""
        return sum(n for s, n in self.view.counts.items() if JobStatus(s).is_terminal)

    @property
    def counts(self) -> list[tuple[str, int]]:
        """(status, count) for every status any job is in, in lifecycle order."""
        return [(s.value, self.view.counts[s]) for s in STATUSES if self.view.counts.get(s)]


@router.get("")
async def batch_list(
    request: Request,
    user: UiUserDep,
    service: JobServiceDep,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """The key's batches (every key's for an admin), newest first, 25 a page."""
    views, next_cursor, message = await page_or_first(service.list_batches(user.scope, PAGE_SIZE, cursor))
    return render(
        request,
        "batches.html",
        user,
        status_code=400 if message else 200,
        batches=[BatchSummary(v) for v in views],
        next_cursor=next_cursor,
        message=message,
    )


@router.get("/{batch_id}")
async def batch_page(
    request: Request,
    batch_id: uuid.UUID,
    user: UiUserDep,
    service: JobServiceDep,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    cancelled: Annotated[int | None, Query(ge=0)] = None,
) -> Response:
    """One batch: its counts (live), its jobs 25 a page (live), and Cancel batch while any job can end."""
    batch = await service.batch(user.scope, batch_id)  # BatchNotFound renders the 404 page
    summary = BatchSummary(await service.batch_view(batch))
    page = service.list(user.scope, JobFilters(batch_id=batch.id), PAGE_SIZE, cursor)
    jobs, next_cursor, message = await page_or_first(page)
    return render(
        request,
        "batch.html",
        user,
        status_code=400 if message else 200,
        batch=batch,
        summary=summary,
        statuses=STATUSES,
        jobs=jobs,
        next_cursor=next_cursor,
        message=message,
        cancelled=cancelled,
    )


@router.post("/{batch_id}/cancel")
async def cancel_batch(batch_id: uuid.UUID, user: CheckedUserDep, service: JobServiceDep) -> Response:
    """Cancel every job of the batch that has not ended, as `POST /batches/{id}/cancel` does."""
    batch = await service.batch(user.scope, batch_id)
    changed = await service.cancel_batch(batch)
    return RedirectResponse(f"/ui/batches/{batch.id}?cancelled={changed}", status_code=303)
