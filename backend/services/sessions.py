"""Dashboard sessions: sign in with an API key, a signed cookie naming a server-side session, CSRF tokens.

The cookie is `<token>.<signature>`: a random 256-bit token and its HMAC-SHA256 under the deployment's
secret. A forged or altered cookie is refused before any query; a genuine one is looked up by the token's
sha256, so the database never holds a usable token, and signing out or revoking the key ends it at once.
Each session's CSRF token is the HMAC of its token under another label: nothing extra to store, and a
page can only carry it if it was rendered for that session.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from backend.db.pool import Executor
from backend.repo.deployment import DeploymentRepository
from backend.repo.sessions import SessionRepository
from backend.services.auth import Authenticator, Principal


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SessionService:
    """Creates, resolves and ends dashboard sessions."""

    def __init__(
        self, db: Executor, authenticator: Authenticator, lifetime_s: float, secret: str | None = None
    ) -> None:
        self.db = db
        self.sessions = SessionRepository(db)
        self.authenticator = authenticator
        self.lifetime_s = lifetime_s
        self._secret = secret.encode() if secret else None

    async def _key(self) -> bytes:
        if self._secret is None:
            await DeploymentRepository(self.db).id()  # the row (and its secret) exists from here on
            self._secret = (await self.sessions.secret()).encode()
        return self._secret

    async def _mac(self, label: str, token: str) -> str:
        return hmac.new(await self._key(), f"{label}:{token}".encode(), hashlib.sha256).hexdigest()

    async def sign_in(self, raw_key: str, client: str | None) -> tuple[str, Principal] | None:
        """A new session's cookie value for a valid key (None for a wrong one; AuthThrottled if `client`
        failed too often, exactly as on the API)."""
        principal = await self.authenticator.authenticate(raw_key, client)
        if principal is None:
            return None
        token = secrets.token_urlsafe(32)
        await self.sessions.create(_hash(token), principal.id, self.lifetime_s)
        return f"{token}.{await self._mac('session', token)}", principal

    async def _token(self, cookie: str | None) -> str | None:
        """The token of a cookie whose signature holds."""
        if not cookie or cookie.count(".") != 1 or len(cookie) > 200:
            return None
        token, signature = cookie.split(".")
        return token if hmac.compare_digest(signature, await self._mac("session", token)) else None

    async def resolve(self, cookie: str | None) -> Principal | None:
        """The principal of a live session whose key is not revoked, else None."""
        token = await self._token(cookie)
        if token is None:
            return None
        key = await self.sessions.key_of(_hash(token))
        return Principal.of(key) if key is not None else None

    async def sign_out(self, cookie: str | None) -> None:
        """End the session (a no-op for an unknown or forged cookie)."""
        token = await self._token(cookie)
        if token is not None:
            await self.sessions.delete(_hash(token))

    async def csrf_token(self, cookie: str) -> str:
        """The CSRF token forms of this session carry."""
        token = await self._token(cookie)
        return await self._mac("csrf", token) if token else ""

    async def csrf_valid(self, cookie: str | None, submitted: str | None) -> bool:
        """True if `submitted` is this session's CSRF token."""
        token = await self._token(cookie)
        if token is None or not submitted:
            return False
        return hmac.compare_digest(submitted, await self._mac("csrf", token))

    async def login_token(self, nonce: str) -> str:
        """The token the sign-in form carries for a pre-session nonce cookie (login CSRF)."""
        return await self._mac("login", nonce)
