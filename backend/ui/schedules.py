"""The dashboard's schedules page: every schedule with its next fire, pause / resume and delete."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from backend.api.deps import ScheduleServiceDep
from backend.domain.schedules import SchedulePatch
from backend.ui.deps import CheckedUserDep, UiUserDep, render

router = APIRouter(prefix="/ui/schedules", include_in_schema=False)
PAGE_SIZE = 100


@router.get("")
async def schedules(request: Request, user: UiUserDep, service: ScheduleServiceDep) -> Response:
    """The key's schedules (every key's for an admin), oldest first."""
    rows, _ = await service.list(user.scope, PAGE_SIZE, None)
    return render(request, "schedules.html", user, schedules=rows)


@router.post("/{schedule_id}/{action}")
async def change(
    schedule_id: uuid.UUID, action: str, user: CheckedUserDep, service: ScheduleServiceDep
) -> Response:
    """Pause, resume or delete one schedule (ScheduleNotFound renders the 404 page)."""
    schedule = await service.get(user.scope, schedule_id)
    if action == "delete":
        await service.delete(schedule)
    elif action in ("pause", "resume"):
        await service.update(schedule, SchedulePatch(paused=action == "pause"))
    else:
        return Response(status_code=404)
    return RedirectResponse("/ui/schedules", status_code=303)
