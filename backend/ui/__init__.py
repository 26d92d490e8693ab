"""The dashboard at `/ui`: server-rendered pages, a little JavaScript, every asset served by the API."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from backend.api.errors import STATUS_BY_ERROR, platform_error
from backend.domain import errors
from backend.ui import admin, batches, pages, schedules, signin
from backend.ui.deps import SESSION_COOKIE, CsrfRejected, SignInRequired, UiRateLimited, render

STATIC = Path(__file__).parent / "static"
UI_STATUS: dict[type[errors.PlatformError], int] = {
    CsrfRejected: 403,
    admin.AdminOnly: 403,
    UiRateLimited: 429,
    **STATUS_BY_ERROR,
}


async def _error(request: Request, exc: Exception) -> Response:
    """Dashboard errors as pages (sign-in for a missing session); the API's own errors stay JSON."""
    if not request.url.path.startswith("/ui"):
        return await platform_error(request, exc)
    if isinstance(exc, SignInRequired):
        response = RedirectResponse("/ui/login", status_code=303)
        if SESSION_COOKIE in request.cookies:  # expired, forged or revoked: drop it
            response.delete_cookie(SESSION_COOKIE, path="/ui")
        return response
    code = next((c for t, c in UI_STATUS.items() if isinstance(exc, t)), 400)
    return render(request, "error.html", None, code, code=code, message=str(exc))


async def _not_found(request: Request, rest: str) -> Response:
    """Any other /ui path."""
    return render(request, "error.html", None, 404, code=404, message="There is no such page.")


def install_ui(app: FastAPI) -> None:
    """Mount the dashboard's routes, assets and error pages."""
    app.include_router(signin.router)
    app.include_router(pages.router)
    app.include_router(batches.router)
    app.include_router(schedules.router)
    app.include_router(admin.router)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")
    app.add_api_route("/ui/{rest:path}", _not_found, methods=["GET"], include_in_schema=False)
    app.add_exception_handler(errors.PlatformError, _error)
