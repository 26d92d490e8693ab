"""Schedule routes: thin; the rules live in `backend/services/schedules.py`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query, Response

from backend.api.deps import (
    AUTH_RESPONSES,
    OWNER_PATTERN,
    CurrentKey,
    OwnedScheduleDep,
    ScheduleServiceDep,
    owner_filter,
)
from backend.api.errors import ErrorMessage
from backend.api.json_body import JsonBodyRoute
from backend.domain.schedules import (
    ScheduleCreate,
    ScheduleList,
    SchedulePatch,
    SchedulePublic,
    schedule_location,
)

router = APIRouter(
    prefix="/schedules", tags=["schedules"], route_class=JsonBodyRoute, responses=AUTH_RESPONSES
)

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "Schedule not found (or not yours)", "model": ErrorMessage}
}
INVALID: dict[int | str, dict[str, Any]] = {
    422: {"description": "Validation error naming the field (`body.cron`, `body.job.payload.rows`, ...)"}
}


@router.post(
    "",
    status_code=201,
    responses={
        201: {
            "description": "Schedule created",
            "headers": {"Location": {"description": "URL of the schedule", "schema": {"type": "string"}}},
        },
        422: {"description": "Validation error naming the field, or MAX_SCHEDULES_PER_KEY reached"},
    },
)
async def create_schedule(
    body: Annotated[ScheduleCreate, Body()], key: CurrentKey, service: ScheduleServiceDep, response: Response
) -> SchedulePublic:
    """Create a schedule: at every slot of `cron` (in `timezone`) or every `every_seconds`, submit `job`.

    Each fire makes one job (its `schedule_id` names the schedule), however many workers run. After
    downtime the missed slots make a single fire. `overlap: skip` skips a fire while the previous job
    has not ended."""
    schedule = await service.create(key.id, body)
    response.headers["Location"] = schedule_location(schedule.id)
    return SchedulePublic.of(schedule, key.is_admin)


@router.get("", responses={403: {"description": "`owner` with a client key", "model": ErrorMessage}})
async def list_schedules(
    key: CurrentKey,
    service: ScheduleServiceDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 100,
    cursor: str | None = None,
    owner: Annotated[
        str | None,
        Query(
            description="Admin keys only: `all` for every key's schedules, or one key's id.",
            pattern=OWNER_PATTERN,
        ),
    ] = None,
) -> ScheduleList:
    """Your schedules (an admin's: every key's with `owner=all`, or one key's), oldest first."""
    owner_id = owner_filter(key, owner)
    try:
        rows, next_cursor = await service.list(owner_id, limit, cursor)
    except ValueError as exc:
        detail = [{"loc": ["query", "cursor"], "msg": "Invalid cursor", "type": "value_error"}]
        raise HTTPException(status_code=422, detail=detail) from exc
    return ScheduleList(items=[SchedulePublic.of(s, key.is_admin) for s in rows], next_cursor=next_cursor)


@router.get("/{schedule_id}", responses=NOT_FOUND)
async def get_schedule(schedule: OwnedScheduleDep, key: CurrentKey) -> SchedulePublic:
    """One schedule, with its next slot (`next_run_at`) and its last fire."""
    return SchedulePublic.of(schedule, key.is_admin)


@router.patch("/{schedule_id}", responses={**NOT_FOUND, **INVALID})
async def update_schedule(
    schedule: OwnedScheduleDep,
    patch: Annotated[SchedulePatch, Body()],
    key: CurrentKey,
    service: ScheduleServiceDep,
) -> SchedulePublic:
    """Change the fields given. A new timing (or resuming with `paused: false`) moves `next_run_at` to
    the first slot after now; pausing stops fires until then."""
    return SchedulePublic.of(await service.update(schedule, patch), key.is_admin)


@router.delete("/{schedule_id}", status_code=204, responses=NOT_FOUND)
async def delete_schedule(schedule: OwnedScheduleDep, service: ScheduleServiceDep) -> Response:
    """Delete the schedule for good. The jobs it made stay; their `schedule_id` becomes null."""
    await service.delete(schedule)
    return Response(status_code=204)
