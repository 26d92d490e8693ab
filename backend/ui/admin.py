"""The dashboard's admin pages (admin keys only): workers, keys, paused job types."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from backend.api.deps import KeyAdminDep, StateDep, TypeControlDep
from backend.domain.errors import PlatformError
from backend.domain.job_types import JOB_TYPES
from backend.domain.keys import KeyCreate
from backend.services.keys import KeyAdmin
from backend.services.workers import live_workers
from backend.ui.deps import CheckedUserDep, FormDep, UiUser, UiUserDep, first, render

router = APIRouter(prefix="/ui/admin", include_in_schema=False)


class AdminOnly(PlatformError):
    """This page is for admin keys"""


async def admin_user(user: UiUserDep) -> UiUser:
    """The signed-in key if it is an admin key (else the 403 page)."""
    if not user.is_admin:
        raise AdminOnly()
    return user


async def checked_admin(user: CheckedUserDep) -> UiUser:
    """An admin's form post with a valid CSRF token."""
    return await admin_user(user)


AdminDep = Annotated[UiUser, Depends(admin_user)]
CheckedAdminDep = Annotated[UiUser, Depends(checked_admin)]


@router.get("/workers")
async def workers(request: Request, user: AdminDep, state: StateDep) -> Response:
    """Live worker processes and what they run."""
    return render(request, "workers.html", user, workers=await live_workers(state.resources))


async def _keys_page(
    request: Request, user: UiUser, keys: KeyAdmin, status_code: int = 200, **context: object
) -> Response:
    listed = await keys.all()
    return render(request, "keys.html", user, status_code=status_code, keys=listed, **context)


@router.get("/keys")
async def keys(request: Request, user: AdminDep, keys: KeyAdminDep) -> Response:
    """Every key (never a secret), a form for a new one, revoke buttons."""
    return await _keys_page(request, user, keys)


@router.post("/keys")
async def create_key(request: Request, user: CheckedAdminDep, keys: KeyAdminDep, form: FormDep) -> Response:
    """Create a key; this response is the only time its secret is shown."""
    fields = {
        "name": first(form, "name").strip(),
        "role": first(form, "role") or "client",
        "max_running": first(form, "max_running").strip() or None,
        "rate_limit": first(form, "rate_limit").strip() or None,
    }
    try:
        body = KeyCreate.model_validate(fields)
    except ValidationError as exc:
        errors = {str(e["loc"][0]): e["msg"] for e in exc.errors(include_url=False) if e["loc"]}
        return await _keys_page(request, user, keys, 422, errors=errors, values=fields)
    secret, key = await keys.create(body)
    return await _keys_page(request, user, keys, 201, created=key, secret=secret)


@router.post("/keys/{key_id}/revoke")
async def revoke_key(key_id: uuid.UUID, user: CheckedAdminDep, keys: KeyAdminDep) -> Response:
    """Revoke a key: refused by every API process within a second, its dashboard sessions end at once."""
    await keys.revoke(key_id)
    return RedirectResponse("/ui/admin/keys", status_code=303)


@router.get("/types")
async def types(request: Request, user: AdminDep, control: TypeControlDep) -> Response:
    """Every job type with its pause state, and pause / resume buttons."""
    return render(request, "types.html", user, types=await control.all(), specs=JOB_TYPES)


@router.post("/types/{job_type}/{action}")
async def pause_or_resume(
    job_type: str, action: str, user: CheckedAdminDep, control: TypeControlDep
) -> Response:
    """Pause (waiting jobs of the type stay waiting) or resume (they are dispatched again)."""
    if action == "pause":
        await control.pause(job_type)
    elif action == "resume":
        await control.resume(job_type)
    else:
        return Response(status_code=404)
    return RedirectResponse("/ui/admin/types", status_code=303)
