"""SessionRepository: dashboard sign-ins (`ui_sessions`) and the secret that signs their cookies."""

from __future__ import annotations

import uuid

from backend.db.pool import Executor
from backend.repo.api_keys import COLUMNS, ApiKeyRecord, record_of

CREATE = """
    INSERT INTO ui_sessions (token_hash, key_id, expires_at)
    VALUES ($1, $2, now() + make_interval(secs => $3))
"""
# The session's key, if the session is live and the key not revoked: revoking a key ends its sessions.
KEY_OF = f"""
    SELECT {", ".join(f"k.{c.strip()}" for c in COLUMNS.split(","))}
    FROM ui_sessions s JOIN api_keys k ON k.id = s.key_id
    WHERE s.token_hash = $1 AND s.expires_at > now() AND k.revoked_at IS NULL
"""
DELETE = "DELETE FROM ui_sessions WHERE token_hash = $1"
DELETE_EXPIRED = "DELETE FROM ui_sessions WHERE expires_at <= now()"
SECRET = "SELECT session_secret FROM deployment"


class SessionRepository:
    """SQL for dashboard sessions."""

    def __init__(self, db: Executor) -> None:
        self.db = db

    async def create(self, token_hash: str, key_id: uuid.UUID, lifetime_s: float) -> None:
        """Store a new session for `lifetime_s` seconds."""
        await self.db.execute(CREATE, token_hash, key_id, float(lifetime_s))

    async def key_of(self, token_hash: str) -> ApiKeyRecord | None:
        """The live session's active key, or None."""
        return record_of(await self.db.fetchrow(KEY_OF, token_hash))

    async def delete(self, token_hash: str) -> None:
        """End a session (sign-out)."""
        await self.db.execute(DELETE, token_hash)

    async def delete_expired(self) -> int:
        """Forget expired sessions; returns how many."""
        status: str = await self.db.execute(DELETE_EXPIRED)
        return int(status.split()[-1])

    async def secret(self) -> str:
        """The deployment's cookie-signing secret (the deployment row must exist)."""
        secret: str = await self.db.fetchval(SECRET)
        return secret
