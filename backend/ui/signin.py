"""Signing in to the dashboard with an API key, and out again."""

from __future__ import annotations

import hmac
import secrets

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from backend.api.deps import StateDep
from backend.domain.errors import AuthThrottled
from backend.ui.deps import LOGIN_COOKIE, SESSION_COOKIE, CheckedUserDep, FormDep, first, render

router = APIRouter(prefix="/ui", include_in_schema=False)

WRONG_KEY = "That API key was not accepted."  # the same words whether the key is unknown or revoked
STALE_FORM = "The sign-in form expired; please try again."


def _secure(request: Request, setting: bool | None) -> bool:
    return setting if setting is not None else request.url.scheme == "https"


async def _form(request: Request, state: StateDep, message: str = "", status_code: int = 200) -> Response:
    """The sign-in form, with a fresh pre-session nonce cookie its hidden token is bound to."""
    nonce = secrets.token_urlsafe(24)
    page = render(
        request,
        "signin.html",
        None,
        status_code,
        login_token=await state.sessions.login_token(nonce),
        message=message,
    )
    secure = _secure(request, state.resources.settings.ui_secure_cookie)
    page.set_cookie(LOGIN_COOKIE, nonce, httponly=True, samesite="strict", secure=secure, path="/ui")
    return page


@router.get("/login")
async def sign_in_page(request: Request, state: StateDep) -> Response:
    """The sign-in form."""
    return await _form(request, state)


@router.post("/login")
async def sign_in(request: Request, state: StateDep, form: FormDep) -> Response:
    """Check the key; on success set the HttpOnly, SameSite=Strict session cookie and go to the overview."""
    nonce = request.cookies.get(LOGIN_COOKIE, "")
    expected = await state.sessions.login_token(nonce) if nonce else ""
    if not expected or not hmac.compare_digest(expected, first(form, "login_token")):
        return await _form(request, state, STALE_FORM, 403)
    client = request.client.host if request.client else None
    try:
        signed_in = await state.sessions.sign_in(first(form, "api_key").strip(), client)
    except AuthThrottled as exc:
        return await _form(request, state, f"Too many failed attempts; wait {exc.retry_after_s} s.", 429)
    if signed_in is None:
        return await _form(request, state, WRONG_KEY, 401)
    cookie, _ = signed_in
    settings = state.resources.settings
    response = RedirectResponse("/ui", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=int(settings.ui_session_hours * 3600),
        httponly=True,
        samesite="strict",
        secure=_secure(request, settings.ui_secure_cookie),
        path="/ui",
    )
    response.delete_cookie(LOGIN_COOKIE, path="/ui")
    return response


@router.post("/logout")
async def sign_out(user: CheckedUserDep, state: StateDep) -> Response:
    """End the session (server-side too) and clear the cookie."""
    await state.sessions.sign_out(user.cookie)
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/ui")
    return response
