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
import random
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from backend.adapters.webhook_http import WebhookPoster
from backend.core.batching import GroupCommit
from backend.core.config import Settings
from backend.core.metrics import WEBHOOK_DELIVERIES
from backend.db.pool import Executor
from backend.domain.errors import JobStateConflict
from backend.domain.jobs import JobPublic
from backend.domain.records import JOB_COLUMNS, JobRecord
from backend.domain.webhooks import (
    ROTATION_OVERLAP,
    AttemptEnd,
    AttemptView,
    DeliveryView,
    WebhookSecretView,
    backoff_s,
    event_body,
    new_secret,
    sign,
    webhook_id,
)
from backend.repo.deployment import DeploymentRepository
from backend.repo.sessions import SessionRepository
from backend.repo.webhooks import WebhookRepository

log = logging.getLogger(__name__)

SEND_CONCURRENCY = 32  # deliveries one worker has in flight at most
SECRETS_TTL_S = 1.0
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

    async def _row(self, key_id: uuid.UUID) -> asyncpg.Record:
        row = await self.repo.secret_row(key_id)
        if row is None:
            await self.repo.create_secret(key_id, await self.box.seal(key_id, new_secret()))
            row = await self.repo.secret_row(key_id)
            assert row is not None
        return row

    async def secret(self, key_id: uuid.UUID) -> WebhookSecretView:
        """The key's signing secret (made on first use), and until when the one it replaced signs too."""
        row = await self._row(key_id)
        return WebhookSecretView(secret=await self.box.open(key_id, row["sealed"]), **_overlap(row))

    async def signing_secrets(self, key_id: uuid.UUID) -> list[str]:
        """The secrets a delivery is signed with now: the current one, and the previous one for a day after
        a rotation."""
        row = await self._row(key_id)
        secrets = [await self.box.open(key_id, row["sealed"])]
        if _overlap(row):
            secrets.append(await self.box.open(key_id, row["previous_sealed"]))
        return secrets

    async def rotate(self, key_id: uuid.UUID) -> WebhookSecretView:
        """A new signing secret for the key; deliveries from now on are signed with it (and, for
        ROTATION_OVERLAP, with the old one too)."""
        secret = new_secret()
        rotated_at = await self.repo.replace_secret(key_id, await self.box.seal(key_id, secret))
        until = rotated_at + ROTATION_OVERLAP if rotated_at else None
        return WebhookSecretView(secret=secret, previous_valid_until=until)

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


def _overlap(row: asyncpg.Record) -> dict[str, datetime]:
    """`previous_valid_until` while the secret before the last rotation still signs, else nothing."""
    rotated_at: datetime | None = row["rotated_at"]
    if row["previous_sealed"] is None or rotated_at is None:
        return {}
    until = rotated_at + ROTATION_OVERLAP
    return {"previous_valid_until": until} if until > datetime.now(UTC) else {}


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
    """The worker duty: keep up to SEND_CONCURRENCY deliveries in flight, claimed as slots free (SKIP
    LOCKED, shared by all workers), each signed, POSTed and recorded on its own, so a receiver that hangs
    for its 5 s holds one slot, not a whole round."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool) -> None:
        self.settings = settings
        self.repo = WebhookRepository(pool)
        self.poster = WebhookPoster(settings.webhook_allow_private)
        self.secrets = WebhookService(settings, pool)
        self._signing: dict[uuid.UUID, tuple[float, list[str]]] = {}
        self._record = GroupCommit(self.repo.finish)  # attempts ending together: one statement
        self.in_flight: set[asyncio.Task[None]] = set()
        self._slot_freed = asyncio.Event()

    async def run(self) -> None:
        """Claim and send until cancelled; idle, look every WEBHOOK_POLL_SECONDS."""
        poll = self.settings.webhook_poll_seconds
        while True:
            room = SEND_CONCURRENCY - len(self.in_flight)
            try:
                claimed = await self.repo.claim_due(room, self.settings.webhook_lease_seconds)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("claiming webhooks failed; trying again", extra={"error": repr(exc)})
                claimed = []
            for row in claimed:
                self._start(row)
            if len(claimed) < room:  # nothing more is due now
                await asyncio.sleep(poll * random.uniform(0.8, 1.2))
            # Claim again once half the slots are free: one claim for many deliveries, not one each.
            while len(self.in_flight) > SEND_CONCURRENCY // 2:
                self._slot_freed.clear()
                await self._slot_freed.wait()

    async def send_due(self) -> int:
        """One round, for a caller that wants it now (tests, tools): attempt every due delivery the free
        slots allow once, and wait for them; how many."""
        claimed = await self.repo.claim_due(SEND_CONCURRENCY, self.settings.webhook_lease_seconds)
        await asyncio.gather(*(self._attempt(row) for row in claimed))
        return len(claimed)

    def _start(self, row: asyncpg.Record) -> None:
        task = asyncio.create_task(self._attempt(row))
        self.in_flight.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.in_flight.discard(task)
        self._slot_freed.set()
        if not task.cancelled() and (exc := task.exception()) is not None:
            # the lease lapses and another attempt follows: at least once, with the same webhook-id
            log.error("webhook attempt crashed", exc_info=exc)

    async def _signing_secrets(self, owner_id: uuid.UUID) -> list[str]:
        """The owner's signing secrets, opened at most once a second per key (a rotation shows within 1 s,
        and the old secret keeps signing for a day anyway)."""
        now = time.monotonic()
        cached = self._signing.get(owner_id)
        if cached is None or cached[0] < now:
            cached = (now + SECRETS_TTL_S, await self.secrets.signing_secrets(owner_id))
            self._signing[owner_id] = cached
        return cached[1]

    async def _attempt(self, row: asyncpg.Record) -> None:
        job = JobRecord.from_row({c: row[c] for c in JOB_COLUMNS})
        msg_id = webhook_id(row["delivery_id"])
        body = event_body(row["event_type"], row["occurred_at"], JobPublic.of(job).model_dump(mode="json"))
        timestamp = int(time.time())
        headers = {
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(await self._signing_secrets(job.owner_id), msg_id, timestamp, body),
        }
        started, clock = datetime.now(UTC), time.monotonic()
        outcome = await self.poster.post(job.webhook_url or "", body, headers)
        WEBHOOK_DELIVERIES.labels(outcome.kind).inc()
        attempts = row["delivery_attempts"]
        end = AttemptEnd(
            delivery_id=row["delivery_id"],
            attempts=attempts,
            at=started,
            status_code=outcome.status_code,
            error=outcome.error,
            duration_ms=int((time.monotonic() - clock) * 1000),
            retry_in_s=backoff_s(attempts, self.settings.webhook_backoff_seconds),
        )
        await self._record.submit(end)
        extra: dict[str, Any] = {"webhook_id": msg_id, "job_id": str(job.id), "attempt": attempts}
        if end.delivered:
            log.info("webhook delivered", extra={**extra, "status_code": outcome.status_code})
        else:
            failure = {"status_code": outcome.status_code, "error": outcome.error}
            log.info("webhook attempt failed", extra={**extra, **failure})

    async def aclose(self) -> None:
        """Stop the attempts in flight (their leases lapse: sent again later, same id), close the client."""
        for task in list(self.in_flight):
            task.cancel()
        await asyncio.gather(*self.in_flight, return_exceptions=True)
        await self.poster.aclose()


@contextlib.asynccontextmanager
async def sending_webhooks(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[None]:
    """Send due webhooks while the block runs (every worker; SKIP LOCKED shares the work)."""
    sender = WebhookSender(settings, pool)
    loop = asyncio.create_task(sender.run(), name="webhooks")
    try:
        yield
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
        await sender.aclose()
