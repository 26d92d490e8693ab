"""Admin routes (admin keys only): the key list, new keys, revocation, the live workers, paused types."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends

from backend.api.deps import (
    ADMIN_RESPONSES,
    AUTH_RESPONSES,
    KeyAdminDep,
    StateDep,
    TypeControlDep,
    admin_key,
)
from backend.api.json_body import JsonBodyRoute
from backend.domain.job_types import TypeState
from backend.domain.keys import KeyCreate, KeyCreated, KeyPublic
from backend.domain.workers import WorkerPublic
from backend.services.workers import live_workers

router = APIRouter(
    prefix="/admin",
    tags=["admin"],
    route_class=JsonBodyRoute,
    responses={**AUTH_RESPONSES, **ADMIN_RESPONSES},
    dependencies=[Depends(admin_key)],
)

KEY_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No API key has this id"}}


@router.get("/keys")
async def list_keys(keys: KeyAdminDep) -> list[KeyPublic]:
    """Every API key, oldest first (never a secret)."""
    return [KeyPublic.model_validate(k) for k in await keys.all()]


@router.post("/keys", status_code=201, responses={422: {"description": "Validation error naming the field"}})
async def create_key(body: Annotated[KeyCreate, Body()], keys: KeyAdminDep) -> KeyCreated:
    """Create an API key; the response is the only place its `secret` is ever shown."""
    secret, key = await keys.create(body)
    return KeyCreated(**KeyPublic.model_validate(key).model_dump(), secret=secret)


@router.post("/keys/{key_id}/revoke", responses=KEY_NOT_FOUND)
async def revoke_key(key_id: uuid.UUID, keys: KeyAdminDep) -> KeyPublic:
    """Revoke a key: every API process answers it 401 within 1 s (AUTH_CACHE_SECONDS)."""
    return KeyPublic.model_validate(await keys.revoke(key_id))


@router.get("/workers")
async def list_workers(state: StateDep) -> list[WorkerPublic]:
    """Worker processes seen within one lease (a killed one drops out within a lease), with their jobs."""
    return [WorkerPublic.model_validate(w) for w in await live_workers(state.resources)]


TYPE_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No job type has this name"}}


@router.get("/types")
async def list_types(types: TypeControlDep) -> list[TypeState]:
    """Every job type and whether it is paused."""
    return await types.all()


@router.post("/types/{job_type}/pause", responses=TYPE_NOT_FOUND)
async def pause_type(job_type: str, types: TypeControlDep) -> TypeState:
    """Pause a job type fleet-wide: its waiting jobs stay waiting (none is lost); running ones finish."""
    return await types.pause(job_type)


@router.post("/types/{job_type}/resume", responses=TYPE_NOT_FOUND)
async def resume_type(job_type: str, types: TypeControlDep) -> TypeState:
    """Resume a paused job type: its waiting jobs are put back on the queue at once."""
    return await types.resume(job_type)
