"""Download links: a signed, expiring token naming a job, the key that made it and the expiry.

`<job id hex>.<key id hex>.<expiry, epoch s>.<base64url HMAC-SHA256>` under the deployment's secret (the
one that signs dashboard cookies, with its own label). Nothing is stored: the signature makes the token
unforgeable, the expiry is inside it, and each use checks that the key is still active, so revoking the
key kills every link it made.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from datetime import UTC, datetime

from backend.db.pool import Executor
from backend.domain.errors import JobNotFound, LinkExpired
from backend.domain.records import JobRecord
from backend.repo.deployment import DeploymentRepository
from backend.repo.links import LinkRepository
from backend.repo.sessions import SessionRepository

LABEL = b"download-link:"


class LinkService:
    """Issues and resolves download links."""

    def __init__(self, db: Executor, secret: str | None = None) -> None:
        self.db = db
        self._secret = secret.encode() if secret else None

    async def _mac(self, payload: str) -> str:
        if self._secret is None:
            await DeploymentRepository(self.db).id()  # the row (and its secret) exists from here on
            self._secret = (await SessionRepository(self.db).secret()).encode()
        digest = hmac.new(self._secret, LABEL + payload.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    async def issue(self, job_id: uuid.UUID, key_id: uuid.UUID, expires_in_s: int) -> tuple[str, datetime]:
        """(token, expiry) of a link to the job's file for `expires_in_s` seconds."""
        expires = int(time.time()) + expires_in_s
        payload = f"{job_id.hex}.{key_id.hex}.{expires}"
        return f"{payload}.{await self._mac(payload)}", datetime.fromtimestamp(expires, UTC)

    async def resolve(self, token: str) -> JobRecord:
        """The job a valid link serves: JobNotFound (404) if forged, altered, or its key cannot see the job
        any more (revoked); LinkExpired (403) past its expiry."""
        parts = token.split(".") if len(token) < 200 else []
        if len(parts) != 4:
            raise JobNotFound()
        payload = ".".join(parts[:3])
        if not hmac.compare_digest(parts[3].encode(), (await self._mac(payload)).encode()):
            raise JobNotFound()
        job_hex, key_hex, expires = parts[:3]
        if int(expires) < time.time():
            raise LinkExpired()
        job = await LinkRepository(self.db).job_for_key(uuid.UUID(job_hex), uuid.UUID(key_hex))
        if job is None:
            raise JobNotFound()
        return job
