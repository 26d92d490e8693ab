"""Domain errors and validation failures as HTTP responses (the only place that maps them)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

from backend.adapters.storage import StorageError
from backend.domain import errors
from backend.domain.job_types import JOB_TYPES

log = logging.getLogger(__name__)

STATUS_BY_ERROR: dict[type[errors.PlatformError], int] = {
    errors.JobNotFound: 404,
    errors.LinkExpired: 403,
    errors.BatchNotFound: 404,
    errors.KeyNotFound: 404,
    errors.ScheduleNotFound: 404,
    errors.UnknownJobType: 404,
    errors.ResultGone: 404,
    errors.JobStateConflict: 409,
    errors.JobStateChanging: 409,
    errors.TooManyStreams: 429,
    errors.QuotaExceeded: 429,
    errors.FieldError: 422,
    errors.ResultNotReady: 409,
    errors.IdempotencyKeyInvalid: 400,
    errors.IdempotencyKeyMissing: 400,
    errors.IdempotencyKeyReused: 422,
    errors.IdempotencyKeyInFlight: 409,
    errors.AuthThrottled: 429,
}
RETRY_AFTER_S = "1"
RETRY_LATER = (errors.IdempotencyKeyInFlight, errors.JobStateChanging, errors.TooManyStreams)


class ErrorMessage(BaseModel):
    """The body of an error response other than a validation error."""

    detail: str


async def platform_error(_: Request, exc: Exception) -> JSONResponse:
    """Map a domain error to its status code with its message as the detail."""
    code = next((c for t, c in STATUS_BY_ERROR.items() if isinstance(exc, t)), 400)
    body: dict[str, Any] = {"detail": str(exc)}
    if isinstance(exc, errors.IdempotencyKeyReused):
        body["error"] = "idempotency_key_reused"
    if isinstance(exc, errors.FieldError):
        body = {"detail": [{"type": exc.code, "loc": list(exc.loc), "msg": str(exc)}]}
    headers = {"Retry-After": RETRY_AFTER_S} if isinstance(exc, RETRY_LATER) else None
    if isinstance(exc, errors.RetryLater):
        headers = {"Retry-After": str(exc.retry_after_s)}
    return JSONResponse(body, status_code=code, headers=headers)


TYPE_NAMES = ", ".join(spec.name for spec in JOB_TYPES)
TAG_ERRORS = {
    "union_tag_invalid": ("unknown_job_type", "Unknown job type; expected one of: " + TYPE_NAMES),
    "union_tag_not_found": ("missing", "Field required (one of: " + TYPE_NAMES + ")"),
}


def _name_the_type_field(error: dict[str, Any]) -> dict[str, Any]:
    """A bad or missing job type is reported at the body's `type` field, not at the body as a whole."""
    if error.get("type") in TAG_ERRORS:
        kind, msg = TAG_ERRORS[error["type"]]
        return {"type": kind, "loc": [*error.get("loc", ()), "type"], "msg": msg}
    return error


async def validation_error(_: Request, exc: Exception) -> JSONResponse:
    """422 with pydantic's errors, each naming its field."""
    assert isinstance(exc, RequestValidationError)
    details = [_name_the_type_field(dict(e)) for e in exc.errors()]
    for d in details:
        d.pop("input", None)  # never echo submitted data (it may hold secrets) back to clients
    return JSONResponse({"detail": jsonable_encoder(details)}, status_code=422)


HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(routes: Sequence[BaseRoute], scope: Scope) -> list[str]:
    """Every method some route serves at this request's path (Starlette's 405 names one route's only)."""
    return [
        m for m in HTTP_METHODS if any(r.matches({**scope, "method": m})[0] is Match.FULL for r in routes)
    ]


async def http_error(request: Request, exc: Exception) -> Response:
    """FastAPI's own answer to an HTTPException, with a 405's `Allow` naming all the path's methods."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 405:
        allow = ", ".join(allowed_methods(request.app.router.routes, request.scope))
        exc = StarletteHTTPException(405, exc.detail, headers={**(exc.headers or {}), "Allow": allow})
    return await http_exception_handler(request, exc)


async def storage_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """503 while the results store cannot be reached (logged; the store's details stay server-side)."""
    log.error("results store unavailable", extra={"path": request.url.path, "error": str(exc)})
    return JSONResponse(
        {"detail": "Result storage is unavailable; try again shortly"},
        status_code=503,
        headers={"Retry-After": "5"},
    )


async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    """Log the stack, answer a bare 500 (no internals leak to clients)."""
    log.exception("unhandled error", extra={"path": request.url.path})
    return JSONResponse({"detail": "Internal server error"}, status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    """Register every handler on the app."""
    app.add_exception_handler(errors.PlatformError, platform_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(StorageError, storage_unavailable)
    app.add_exception_handler(Exception, unexpected_error)
