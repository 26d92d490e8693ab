"""Webhooks: per-key signing secrets (sealed at rest), the delivery log, redelivery, and the sender duty.

Secrets are sealed with AES-GCM because the platform must recover them to sign (a hash would not do):
a database dump, a backup or a read-only SQL injection then yields ciphertext, not the secrets that let
anyone forge our deliveries. The sealing key comes from WEBHOOK_SECRETS_KEY, kept outside the database;
unset, it is derived from the deployment's secret in the database, which protects only against leaks of
the secrets table alone (say, a partial export). The key's id is the cipher's associated data, so a
sealed secret copied to another key's row does not open.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from backend.adapters.webhook_http import WebhookPoster
from backend.core.config import Settings
from backend.core.metrics import WEBHOOK_DELIVERIES
from backend.core.periodic import repeating
from backend.db.pool import Executor
from backend.domain.errors import JobStateConflict
from backend.domain.jobs import JobPublic
from backend.domain.records import JobRecord
from backend.domain.webhooks import (
    AttemptView,
    DeliveryView,
    backoff_s,
    event_body,
    new_secret,
    sign,
    webhook_id,
)
from backend.repo.deployment import DeploymentRepository
from backend.repo.jobs import JobRepository
from backend.repo.sessions import SessionRepository
from backend.repo.webhooks import WebhookRepository

log = logging.getLogger(__name__)

SEND_BATCH = 20  # deliveries one worker claims per round (sent concurrently)
NONCE_BYTES = 12


class SecretBox:
    """Seals and opens signing secrets with AES-256-GCM."""

    def __init__(self, db: Executor, configured: str | None) -> None:
        self.db = db
        self._key = self._derive(configured.encode()) if configured else None

    @staticmethod
    def _derive(material: bytes) -> bytes:
        return hmac.new(material, b"jobplatform webhook secrets v1", hashlib.sha256).digest()

    async def _aead(self) -> AESGCM:
        if self._key is None:
            await DeploymentRepository(self.db).id()  # the row (and its secret) exists from here on
            self._key = self._derive((await SessionRepository(self.db).secret()).encode())
        return AESGCM(self._key)

    async def seal(self, key_id: uuid.UUID, secret: str) -> bytes:
        """nonce || ciphertext of `secret`, bound to `key_id`."""
        nonce = os.urandom(NONCE_BYTES)
        return nonce + (await self._aead()).encrypt(nonce, secret.encode(), key_id.bytes)

    async def open(self, key_id: uuid.UUID, sealed: bytes) -> str:
        """The secret sealed for `key_id` (InvalidTag if the sealing key changed or the row was moved)."""
        plain = (await self._aead()).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], key_id.bytes)
        return plain.decode()


def box_of(settings: Settings, db: Executor) -> SecretBox:
    """The secret box these settings describe."""
    configured = settings.webhook_secrets_key
    return SecretBox(db, configured.get_secret_value() if configured else None)


class WebhookService:
    """Secrets and the delivery log, for the API."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool) -> None:
        self.repo = WebhookRepository(pool)
        self.box = box_of(settings, pool)

    async def secret(self, key_id: uuid.UUID) -> str:
        """The key's signing secret, made on first use."""
        sealed = await self.repo.sealed_secret(key_id)
        if sealed is None:
            await self.repo.create_secret(key_id, await self.box.seal(key_id, new_secret()))
            sealed = await self.repo.sealed_secret(key_id)
            assert sealed is not None
        return await self.box.open(key_id, sealed)

    async def rotate(self, key_id: uuid.UUID) -> str:
        """A new signing secret for the key; deliveries from now on are signed with it."""
        secret = new_secret()
        await self.repo.replace_secret(key_id, await self.box.seal(key_id, secret))
        return secret

    async def deliveries(self, job_id: uuid.UUID) -> list[DeliveryView]:
        """The job's webhook events, each with its attempts."""
        rows = await self.repo.of_job(job_id)
        attempts: dict[uuid.UUID, list[AttemptView]] = {r["id"]: [] for r in rows}
        for a in await self.repo.attempts_of(list(attempts)):
            attempts[a["delivery_id"]].append(AttemptView.model_validate(dict(a.items())))
        return [_delivery_view(r, attempts[r["id"]]) for r in rows]

    async def redeliver(self, job: JobRecord) -> DeliveryView:
        """Send the job's latest event again (same webhook-id); 409 if it has none."""
        delivery_id = await self.repo.redeliver(job.id)
        if delivery_id is None:
            raise JobStateConflict("The job has no webhook event to redeliver (no webhook_url, or not ended)")
        return next(d for d in await self.deliveries(job.id) if d.webhook_id == webhook_id(delivery_id))


def _delivery_view(row: asyncpg.Record, attempts: list[AttemptView]) -> DeliveryView:
    pending = row["status"] == "pending"
    return DeliveryView(
        webhook_id=webhook_id(row["id"]),
        type=row["event_type"],
        timestamp=row["occurred_at"],
        status=row["status"],
        next_attempt_at=row["next_attempt_at"] if pending else None,
        delivered_at=row["delivered_at"],
        attempts=attempts,
    )


class WebhookSender:
    """The worker duty: claim due deliveries (SKIP LOCKED, shared by all workers), sign, POST, record."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool) -> None:
        self.settings = settings
        self.repo = WebhookRepository(pool)
        self.jobs = JobRepository(pool)
        self.poster = WebhookPoster(settings.webhook_allow_private)
        self.secrets = WebhookService(settings, pool)

    async def send_due(self) -> int:
        """One round: every claimed delivery attempted once, concurrently; returns how many."""
        claimed = await self.repo.claim_due(SEND_BATCH, self.settings.webhook_lease_seconds)
        await asyncio.gather(*(self._attempt(row) for row in claimed))
        return len(claimed)

    async def _attempt(self, row: asyncpg.Record) -> None:
        job = await self.jobs.get(row["job_id"])
        if job is None or not row["url"]:  # purged meanwhile: its deliveries go with it (ON DELETE CASCADE)
            return
        msg_id = webhook_id(row["id"])
        body = event_body(row["event_type"], row["occurred_at"], JobPublic.of(job).model_dump(mode="json"))
        timestamp = int(time.time())
        secret = await self.secrets.secret(row["owner_id"])
        headers = {
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secret, msg_id, timestamp, body),
        }
        started, clock = datetime.now(UTC), time.monotonic()
        outcome = await self.poster.post(row["url"], body, headers)
        WEBHOOK_DELIVERIES.labels(outcome.kind).inc()
        ms = int((time.monotonic() - clock) * 1000)
        await self.repo.log_attempt(row["id"], started, outcome.status_code, outcome.error, ms)
        ok = outcome.status_code is not None and 200 <= outcome.status_code < 300
        extra: dict[str, Any] = {"webhook_id": msg_id, "job_id": str(job.id), "attempt": row["attempts"]}
        if ok:
            await self.repo.delivered(row["id"], row["attempts"])
            log.info("webhook delivered", extra={**extra, "status_code": outcome.status_code})
            return
        retry_in = backoff_s(row["attempts"], self.settings.webhook_backoff_seconds)
        await self.repo.failed(row["id"], row["attempts"], retry_in)
        failure = {"status_code": outcome.status_code, "error": outcome.error}
        log.info("webhook attempt failed", extra={**extra, **failure})

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self.poster.aclose()


@contextlib.asynccontextmanager
async def sending_webhooks(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[None]:
    """Send due webhooks every WEBHOOK_POLL_SECONDS while the block runs (every worker; SKIP LOCKED shares
    the work)."""
    sender = WebhookSender(settings, pool)
    try:
        async with repeating("webhooks", sender.send_due, settings.webhook_poll_seconds, jitter=0.2):
            yield
    finally:
        await sender.aclose()
