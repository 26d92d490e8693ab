"""FastAPI dependencies as `Annotated` aliases: routes read like sentences."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import Depends, Header, HTTPException, Request, Security, status
from fastapi.openapi.models import APIKey, APIKeyIn
from fastapi.security.base import SecurityBase

from backend.adapters.ratelimit import parse_cached
from backend.adapters.storage import Storage
from backend.api.errors import ErrorMessage
from backend.api.idempotency import HEADER_MAX_LENGTH, HEADER_PATTERN, parse_idempotency_header
from backend.api.state import AppState
from backend.core.config import Settings
from backend.domain.errors import IdempotencyKeyMissing
from backend.domain.records import JobRecord, ScheduleRecord
from backend.services.auth import Principal
from backend.services.idempotency import IdempotencyKey
from backend.services.jobs import JobService
from backend.services.keys import KeyAdmin
from backend.services.schedules import ScheduleService
from backend.services.types import TypeControl
from backend.services.webhooks import WebhookService


async def get_state(request: Request) -> AppState:
    """The application's shared resources."""
    state: AppState = request.app.state.platform
    return state


StateDep = Annotated[AppState, Depends(get_state)]


async def get_settings(state: StateDep) -> Settings:
    """The settings this app was built with."""
    return state.resources.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


API_KEY_HEADER = "X-API-Key"


class ApiKeyAuth(SecurityBase):
    """The `X-API-Key` security scheme (OpenAPI, the docs' Authorize button) and the authentication itself.

    One dependency with no parameters of its own but the request: FastAPI solves every dependency of a
    route on every request, and those of a dependency recursively, a cached one included, so an
    `APIKeyHeader` and the app state as sub-dependencies cost more than the cached lookup they feed.
    """

    def __init__(self) -> None:
        self.model = APIKey(
            **{"in": APIKeyIn.header},  # `in` is a keyword
            name=API_KEY_HEADER,
            description="Your API key (`make run` prints a development key).",
        )
        self.scheme_name = "APIKeyHeader"

    async def __call__(self, request: Request) -> Principal:
        """The authenticated API key, or 401; 429 with Retry-After past RATE_LIMIT or
        AUTH_FAILURES_PER_MINUTE."""
        state: AppState = request.app.state.platform
        raw = request.headers.get(API_KEY_HEADER)
        client = request.client.host if request.client else None
        principal = await state.authenticator.authenticate(raw, client) if raw else None
        if principal is None:
            raise HTTPException(
                status_code=status.HTTP_401_UNAUTHORIZED,
                detail="Missing or invalid API key",
                headers={"WWW-Authenticate": 'APIKey header="X-API-Key"'},
            )
        own = parse_cached(principal.rate_limit) if principal.rate_limit else None
        wait_s = await state.rate_limiter.retry_after(principal.id, own)
        if wait_s is not None:
            raise HTTPException(
                status_code=status.HTTP_429_TOO_MANY_REQUESTS,
                detail="Rate limit exceeded for this API key",
                headers={"Retry-After": str(wait_s)},
            )
        return principal


current_key = ApiKeyAuth()

CurrentKey = Annotated[Principal, Security(current_key)]

ADMIN_REQUIRED = "Admin API key required"


async def admin_key(key: CurrentKey) -> Principal:
    """The authenticated key if it is an admin key, else 403."""
    if not key.is_admin:
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail=ADMIN_REQUIRED)
    return key


AdminKey = Annotated[Principal, Depends(admin_key)]

OWNER_PATTERN = "^(all|[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12})$"


def owner_filter(key: Principal, owner: str | None) -> uuid.UUID | None:
    """Whose things to list (the `owner` query parameter): the caller's, unless an admin asks for
    everyone's (None) or one key's; 403 for a client key that asks."""
    if owner is None:
        return key.id
    if not key.is_admin:
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail=ADMIN_REQUIRED)
    return None if owner == "all" else uuid.UUID(owner)


RETRY_AFTER_HEADER = {"description": "Seconds to wait before trying again", "schema": {"type": "integer"}}
# What any operation taking `CurrentKey` may answer; routers that authenticate attach it to every route.
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {
        "description": "Missing, unknown or revoked API key",
        "model": ErrorMessage,
        "headers": {
            "WWW-Authenticate": {"description": 'APIKey header="X-API-Key"', "schema": {"type": "string"}}
        },
    },
    429: {
        "description": "Over this key's rate limit (its own, else `RATE_LIMIT`), or over "
        "`AUTH_FAILURES_PER_MINUTE` failed authentications from this address",
        "model": ErrorMessage,
        "headers": {"Retry-After": RETRY_AFTER_HEADER},
    },
}


# What an admin-only operation may answer besides AUTH_RESPONSES.
ADMIN_RESPONSES: dict[int | str, dict[str, Any]] = {
    403: {"description": "A client key; this needs an admin key", "model": ErrorMessage},
}


async def get_job_service(request: Request) -> JobService:
    """Job use cases on the shared pool and queue (the process's one service). Read from the request,
    not through `StateDep`: every sub-dependency costs FastAPI a solve per request, more than this
    lookup (as for `ApiKeyAuth`), and POST /jobs is the hot path."""
    state: AppState = request.app.state.platform
    return state.jobs


JobServiceDep = Annotated[JobService, Depends(get_job_service)]


async def valid_owned_job(job_id: uuid.UUID, key: CurrentKey, service: JobServiceDep) -> JobRecord:
    """Load the caller's job (any job, for an admin key) or answer 404 (another key's job is
    indistinguishable from none)."""
    return await service.get(None if key.is_admin else key.id, job_id)


OwnedJobDep = Annotated[JobRecord, Depends(valid_owned_job)]


async def get_storage(state: StateDep) -> Storage:
    """Result-file storage."""
    return state.resources.storage


StorageDep = Annotated[Storage, Depends(get_storage)]


async def idempotency_request(
    request: Request,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="Makes retries safe: the same key and body replay the first response "
            "(1-255 printable ASCII, bare or as a quoted string).",
            # Documented, not enforced here: a malformed key is a 400 from the parser, not a 422.
            json_schema_extra={"pattern": HEADER_PATTERN, "maxLength": HEADER_MAX_LENGTH},
        ),
    ] = None,
) -> IdempotencyKey | None:
    """The request's Idempotency-Key, if it carries one (the service fingerprints the validated body).
    The settings are read from the request, not through `SettingsDep` (see `get_job_service`)."""
    if idempotency_key is None:
        state: AppState = request.app.state.platform
        if state.resources.settings.idempotency_required:
            raise IdempotencyKeyMissing()
        return None
    key = parse_idempotency_header(request.headers.getlist("Idempotency-Key"))
    return IdempotencyKey(key, request.method, request.url.path)


IdempotencyDep = Annotated[IdempotencyKey | None, Depends(idempotency_request)]


async def get_schedule_service(state: StateDep) -> ScheduleService:
    """Schedule use cases on the shared pool."""
    return ScheduleService(state.resources.settings, state.resources.pool)


ScheduleServiceDep = Annotated[ScheduleService, Depends(get_schedule_service)]


async def valid_owned_schedule(
    schedule_id: uuid.UUID, key: CurrentKey, service: ScheduleServiceDep
) -> ScheduleRecord:
    """Load the caller's schedule (any schedule, for an admin key) or answer 404."""
    return await service.get(None if key.is_admin else key.id, schedule_id)


OwnedScheduleDep = Annotated[ScheduleRecord, Depends(valid_owned_schedule)]


async def get_key_admin(state: StateDep) -> KeyAdmin:
    """Key administration on the shared pool and this process's authenticator."""
    return KeyAdmin(state.resources.pool, state.authenticator)


KeyAdminDep = Annotated[KeyAdmin, Depends(get_key_admin)]


async def get_type_control(state: StateDep) -> TypeControl:
    """Pausing and resuming job types."""
    return TypeControl(state.resources)


TypeControlDep = Annotated[TypeControl, Depends(get_type_control)]


async def get_webhook_service(state: StateDep) -> WebhookService:
    """Webhook use cases (secrets, the delivery log, redelivery) on the shared pool."""
    return WebhookService(state.resources.settings, state.resources.pool)


WebhookServiceDep = Annotated[WebhookService, Depends(get_webhook_service)]
