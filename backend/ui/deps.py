"""The dashboard's dependencies: who is signed in, CSRF checks, form bodies, and page rendering."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qs

from fastapi import Depends, HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from backend.adapters.ratelimit import parse_cached
from backend.api.deps import StateDep
from backend.domain.errors import PlatformError
from backend.services.auth import Principal

T = TypeVar("T")
SESSION_COOKIE = "jp_session"
LOGIN_COOKIE = "jp_login"  # a pre-session nonce: the sign-in form's CSRF token is derived from it
MAX_FORM_FIELDS = 200

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")

# Pages load only what the API itself serves; no inline script; never framed.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


class SignInRequired(PlatformError):
    """Sign in to continue"""


class CsrfRejected(PlatformError):
    """This form is stale or did not come from the dashboard; reload the page and try again"""


class UiRateLimited(PlatformError):
    """Too many requests for this API key; wait a moment"""


@dataclass(frozen=True)
class UiUser:
    """The signed-in API key, its session cookie and the CSRF token its forms carry."""

    principal: Principal
    cookie: str
    csrf: str

    @property
    def is_admin(self) -> bool:
        """True for an admin key."""
        return self.principal.is_admin

    @property
    def scope(self) -> uuid.UUID | None:
        """Whose jobs and schedules this user reaches: its key's own, or every key's (None) for an admin."""
        return None if self.principal.is_admin else self.principal.id


async def ui_user(request: Request, state: StateDep) -> UiUser:
    """The session's key (SignInRequired without a live session); the key's rate limit applies as on
    the API."""
    cookie = request.cookies.get(SESSION_COOKIE)
    principal = await state.sessions.resolve(cookie)
    if principal is None or cookie is None:
        raise SignInRequired()
    own = parse_cached(principal.rate_limit) if principal.rate_limit else None
    if await state.rate_limiter.retry_after(principal.id, own) is not None:
        raise UiRateLimited()
    return UiUser(principal, cookie, await state.sessions.csrf_token(cookie))


UiUserDep = Annotated[UiUser, Depends(ui_user)]


async def form_body(request: Request) -> dict[str, list[str]]:
    """The urlencoded form (the body size is capped by MAX_BODY_BYTES before this)."""
    raw = (await request.body()).decode("utf-8", errors="replace")
    try:
        return parse_qs(raw, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    except ValueError as exc:
        raise HTTPException(status_code=400, detail="Too many form fields") from exc


FormDep = Annotated[dict[str, list[str]], Depends(form_body)]


def first(form: dict[str, list[str]], name: str) -> str:
    """A form field's first value ('' when absent)."""
    values = form.get(name)
    return values[0] if values else ""


async def checked_user(user: UiUserDep, form: FormDep, state: StateDep) -> UiUser:
    """The signed-in user of a state-changing form post whose CSRF token is this session's (else 403)."""
    if not await state.sessions.csrf_valid(user.cookie, first(form, "csrf")):
        raise CsrfRejected()
    return user


CheckedUserDep = Annotated[UiUser, Depends(checked_user)]


STALE_CURSOR = "That page link is no longer valid; showing the first page."


async def page_or_first(page: Awaitable[tuple[list[T], str | None]]) -> tuple[list[T], str | None, str]:
    """A keyset page (rows, next cursor, ""), or, when its cursor no longer decodes (ValueError), no rows
    and STALE_CURSOR to show above them."""
    try:
        rows, next_cursor = await page
    except ValueError:
        return [], None, STALE_CURSOR
    return rows, next_cursor, ""


def render(
    request: Request, template: str, user: UiUser | None, status_code: int = 200, **context: Any
) -> HTMLResponse:
    """A page, with the signed-in user, its CSRF token and the security headers."""
    page = {"user": user, "csrf": user.csrf if user else "", "path": request.url.path, **context}
    response = templates.TemplateResponse(request, template, page, status_code=status_code)
    response.headers.update(SECURITY_HEADERS)
    return response
