"""ORM tables. Alembic migrations own the schema; these must match them exactly (a test checks)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSON, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from backend.db.base import Base
from backend.domain.enums import TERMINAL_STATUSES, WAITING_STATUSES, JobStatus, KeyRole, sql_list

STATUS_VALUES = sql_list(tuple(JobStatus))
ROLE_VALUES = ", ".join(f"'{role.value}'" for role in KeyRole)
WAITING = f"status IN ({sql_list(WAITING_STATUSES)})"
RUNNING = f"status = '{JobStatus.RUNNING.value}'"
BLOCKED = f"status = '{JobStatus.BLOCKED.value}'"
TERMINAL = f"status IN ({sql_list(TERMINAL_STATUSES)})"


# 256 bits from PostgreSQL's strong random source, made once per deployment.
RANDOM_SECRET = (
    "encode(sha256(convert_to(gen_random_uuid()::text || gen_random_uuid()::text || "
    "gen_random_uuid()::text, 'UTF8')), 'hex')"
)


def _now() -> Any:
    return mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())


class ApiKey(Base):
    """A client credential; only the sha256 of the secret is stored, and `id` is how people refer to it."""

    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint(f"role IN ({ROLE_VALUES})", name="role_valid"),
        CheckConstraint("max_running >= 1", name="max_running_positive"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    key_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    created_at: Mapped[datetime] = _now()
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    role: Mapped[str] = mapped_column(String(16), nullable=False, server_default=KeyRole.CLIENT.value)
    # Per-key overrides of MAX_RUNNING_JOBS_PER_KEY and RATE_LIMIT; NULL: the platform's setting.
    max_running: Mapped[int | None] = mapped_column(Integer)
    rate_limit: Mapped[str | None] = mapped_column(String(32))


class Job(Base):
    """A unit of work: PostgreSQL is its source of truth, Redis only delivers it."""

    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(f"status IN ({STATUS_VALUES})", name="status_valid"),
        CheckConstraint("progress >= 0 AND progress <= 1", name="progress_range"),
        CheckConstraint("max_attempts BETWEEN 1 AND 20", name="max_attempts_range"),
        CheckConstraint("priority BETWEEN -10 AND 10", name="priority_range"),
        CheckConstraint(
            "(concurrency_key IS NULL) = (concurrency_limit IS NULL) AND "
            "(concurrency_limit IS NULL OR concurrency_limit BETWEEN 1 AND 1000)",
            name="concurrency_pair",
        ),
        Index(
            "ix_jobs_concurrency_running",
            "owner_id",
            "concurrency_key",
            postgresql_where=text(f"concurrency_key IS NOT NULL AND {RUNNING}"),
        ),
        Index(
            "ix_jobs_concurrency_waiting",
            "owner_id",
            "concurrency_key",
            "scheduled_at",
            postgresql_where=text(f"concurrency_key IS NOT NULL AND {WAITING}"),
        ),
        Index("ix_jobs_owner_created", "owner_id", "created_at", "id"),
        Index("ix_jobs_batch", "batch_id", "created_at", "id", postgresql_where=text("batch_id IS NOT NULL")),
        Index(
            "ix_jobs_waiting_due",
            "scheduled_at",
            postgresql_where=text(WAITING),
        ),
        Index("ix_jobs_running_lease", "lease_expires_at", postgresql_where=text(RUNNING)),
        # Per-key limits: waiting jobs, running jobs, result bytes kept.
        Index(
            "ix_jobs_owner_waiting",
            "owner_id",
            "scheduled_at",
            postgresql_where=text(WAITING),
        ),
        Index("ix_jobs_owner_running", "owner_id", postgresql_where=text(RUNNING)),
        Index("ix_jobs_owner_blocked", "owner_id", postgresql_where=text(BLOCKED)),
        Index("ix_jobs_owner_files", "owner_id", postgresql_where=text("result_file IS NOT NULL")),
        Index("ix_jobs_tags", "tags", postgresql_using="gin"),
        Index(
            "ix_jobs_terminal_finished",
            "finished_at",
            postgresql_where=text(TERMINAL),
        ),
        # One job per schedule and fire time, however many workers fire it (the ON CONFLICT arbiter). Partial:
        # it holds scheduled jobs only, and serves the schedule's ON DELETE SET NULL.
        Index(
            "ux_jobs_schedule_fire",
            "schedule_id",
            "schedule_fire_at",
            unique=True,
            postgresql_where=text("schedule_id IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    owner_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("api_keys.id", ondelete="CASCADE"), nullable=False
    )
    type: Mapped[str] = mapped_column(String(32), nullable=False)
    name: Mapped[str | None] = mapped_column(String(200))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, server_default=JobStatus.PENDING.value)
    progress: Mapped[float] = mapped_column(Float, nullable=False, server_default="0")
    attempts: Mapped[int] = mapped_column(SmallInteger, nullable=False, server_default="0")
    max_attempts: Mapped[int] = mapped_column(SmallInteger, nullable=False, server_default="3")
    result: Mapped[Any | None] = mapped_column(JSONB)
    error: Mapped[str | None] = mapped_column(Text)
    result_file: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    tags: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False, server_default="{}")
    cancel_requested: Mapped[bool] = mapped_column(nullable=False, server_default="false")
    worker_id: Mapped[str | None] = mapped_column(String(200))
    claim_token: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _now()
    scheduled_at: Mapped[datetime] = _now()
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = _now()
    priority: Mapped[int] = mapped_column(SmallInteger, nullable=False, server_default="0")
    # At most `concurrency_limit` of the owner's jobs with this key run at once (both set, or neither).
    concurrency_key: Mapped[str | None] = mapped_column(String(200))
    concurrency_limit: Mapped[int | None] = mapped_column(SmallInteger)
    # Set by a schedule's fire; a deleted schedule leaves its jobs, with schedule_id NULL.
    schedule_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("schedules.id", ondelete="SET NULL")
    )
    schedule_fire_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Told when the job ends (migration 0014's trigger writes a `webhook_deliveries` row).
    webhook_url: Mapped[str | None] = mapped_column(String(2000))
    # The batch it was submitted in (migration 0015); a purged batch leaves its jobs.
    batch_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("batches.id", ondelete="SET NULL")
    )
    # The W3C trace context of the request that submitted it (migration 0017): the worker's run span is
    # its child. `00-<trace id>-<parent span id>-<flags>`, always 55 characters.
    traceparent: Mapped[str | None] = mapped_column(String(55))
    # The jobs it waits for, as submitted (its view); `job_dependencies` is the same, indexed by parent.
    depends_on: Mapped[list[uuid.UUID]] = mapped_column(
        ARRAY(UUID(as_uuid=True)), nullable=False, server_default="{}"
    )


class Batch(Base):
    """Jobs submitted together in one request (`POST /batches`), committed all or none."""

    __tablename__ = "batches"
    # The dashboard's batch list, newest first: a key's (migration 0016), and every key's for an admin.
    __table_args__ = (
        Index("ix_batches_owner_created", "owner_id", "created_at", "id"),
        Index("ix_batches_created", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    owner_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("api_keys.id", ondelete="CASCADE"), nullable=False
    )
    name: Mapped[str | None] = mapped_column(String(200))
    job_count: Mapped[int] = mapped_column(Integer, nullable=False)
    created_at: Mapped[datetime] = _now()


class JobDependency(Base):
    """Child waits for parent; the parent's end moves a blocked child (trigger `jp_on_parent_end`, 0015)."""

    __tablename__ = "job_dependencies"
    __table_args__ = (Index("ix_job_dependencies_parent", "parent_id", "child_id"),)

    child_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    parent_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )


class Schedule(Base):
    """A job submission made again at every slot of a cron expression or a fixed step (migration 0012)."""

    __tablename__ = "schedules"
    __table_args__ = (
        CheckConstraint("(cron IS NULL) <> (every_seconds IS NULL)", name="one_timing"),
        CheckConstraint("every_seconds >= 1", name="every_seconds_positive"),
        CheckConstraint("overlap IN ('allow', 'skip')", name="overlap_valid"),
        Index("ix_schedules_owner", "owner_id", "id"),
        # The firing duty's scan: due, active schedules only.
        Index("ix_schedules_due", "next_run_at", postgresql_where=text("NOT paused")),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    owner_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("api_keys.id", ondelete="CASCADE"), nullable=False
    )
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    cron: Mapped[str | None] = mapped_column(String(100))
    every_seconds: Mapped[int | None] = mapped_column(Integer)
    timezone: Mapped[str] = mapped_column(String(64), nullable=False, server_default="UTC")
    job: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    overlap: Mapped[str] = mapped_column(String(8), nullable=False, server_default="allow")
    paused: Mapped[bool] = mapped_column(nullable=False, server_default="false")
    next_run_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    last_run_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # No foreign key: purge may delete that job, and the schedule goes on.
    last_job_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class JobRun(Base):
    """One claim of a job by a worker: the audit trail that proves no two runs overlapped."""

    __tablename__ = "job_runs"
    __table_args__ = (Index("ix_job_runs_job_id", "job_id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    job_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False
    )
    attempt: Mapped[int] = mapped_column(SmallInteger, nullable=False)
    claim_token: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False, unique=True)
    worker_id: Mapped[str] = mapped_column(String(200), nullable=False)
    started_at: Mapped[datetime] = _now()
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    outcome: Mapped[str | None] = mapped_column(String(16))


class IdempotencyKey(Base):
    """A stored first response for (API key, Idempotency-Key); the unique constraint is the arbiter."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (
        UniqueConstraint("owner_id", "key", name="uq_idempotency_keys_owner_key"),
        Index("ix_idempotency_keys_created_at", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    owner_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("api_keys.id", ondelete="CASCADE"), nullable=False
    )
    key: Mapped[str] = mapped_column(String(255), nullable=False)
    fingerprint: Mapped[str] = mapped_column(String(64), nullable=False)
    status_code: Mapped[int] = mapped_column(Integer, nullable=False)
    # JSON, not JSONB: a replay must return the first response's keys in their original order.
    response_body: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    location: Mapped[str | None] = mapped_column(String(300))
    job_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    created_at: Mapped[datetime] = _now()


class Deployment(Base):
    """This deployment's identity: one row, made on first start; it marks the result files we write.

    A shared results store may hold other deployments' files: the orphan sweep touches only ours.
    """

    __tablename__ = "deployment"
    __table_args__ = (CheckConstraint("singleton", name="singleton"),)

    singleton: Mapped[bool] = mapped_column(primary_key=True, server_default="true")
    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    created_at: Mapped[datetime] = _now()
    # Signs dashboard session cookies (unless UI_SESSION_SECRET is set): random, made with the row.
    session_secret: Mapped[str] = mapped_column(
        String(64), nullable=False, server_default=text(RANDOM_SECRET)
    )


class UiSession(Base):
    """A dashboard sign-in: the sha256 of the cookie's random token, for one API key, until it expires.

    Server-side, so that signing out or revoking the key ends it at once (a stateless cookie would live on).
    """

    __tablename__ = "ui_sessions"
    __table_args__ = (Index("ix_ui_sessions_expires_at", "expires_at"),)

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("api_keys.id", ondelete="CASCADE"), nullable=False
    )
    created_at: Mapped[datetime] = _now()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class WebhookSecret(Base):
    """An API key's webhook signing secret, sealed with AES-GCM (never stored in the clear)."""

    __tablename__ = "webhook_secrets"

    key_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True
    )
    sealed: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    created_at: Mapped[datetime] = _now()
    # the secret before the last rotation: deliveries carry its signature too for a while
    previous_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    rotated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class WebhookDelivery(Base):
    """The outbox: one event of a job's end to POST to its webhook_url, until delivered or given up."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'delivered', 'failed')", name="status_valid"),
        Index("ix_webhook_deliveries_due", "next_attempt_at", postgresql_where=text("status = 'pending'")),
        Index("ix_webhook_deliveries_job", "job_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    job_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False
    )
    owner_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    event_type: Mapped[str] = mapped_column(String(32), nullable=False)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    # Also the lease: a claim moves it past the attempt's end, so a killed sender's delivery comes due again.
    next_attempt_at: Mapped[datetime] = _now()
    give_up_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _now()


class WebhookAttempt(Base):
    """One POST of a delivery: when, the answer's status code or the error, how long it took."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (Index("ix_webhook_attempts_delivery", "delivery_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    delivery_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), nullable=False
    )
    attempted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    status_code: Mapped[int | None] = mapped_column(SmallInteger)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int] = mapped_column(Integer, nullable=False)


class PausedType(Base):
    """A job type an admin paused: its waiting jobs are not claimed (running ones finish) until resumed."""

    __tablename__ = "paused_types"

    type: Mapped[str] = mapped_column(String(32), primary_key=True)
    paused_at: Mapped[datetime] = _now()


class WorkerProcess(Base):
    """A live worker process: it renews `last_seen` every heartbeat and deletes itself on shutdown."""

    __tablename__ = "workers"
    __table_args__ = (Index("ix_workers_last_seen", "last_seen"),)

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    host: Mapped[str] = mapped_column(String(200), nullable=False)
    pid: Mapped[int] = mapped_column(Integer, nullable=False)
    queue_name: Mapped[str] = mapped_column(String(200), nullable=False)
    started_at: Mapped[datetime] = _now()
    last_seen: Mapped[datetime] = _now()


# Job statistics (migration 0008): triggers on `jobs` append events, the stats duty folds them into rollups.
# An append-only queue drained by the duty: no key, no index (it is read whole, a batch at a time).
stats_events = Table(
    "stats_events",
    Base.metadata,
    Column("at", DateTime(timezone=True), nullable=False),
    Column("owner_id", UUID(as_uuid=True), nullable=False),
    Column("type", Text, nullable=False),
    Column("kind", SmallInteger, nullable=False),  # 0 created, 1 completed, 2 failed, 3 cancelled, 4 retried
    Column("wait_s", Float),
    Column("run_s", Float),
)


def _count() -> Any:
    return mapped_column(Integer, nullable=False, server_default="0")


class StatsRollup(Base):
    """Counts and percentiles of one bucket for one (owner, type); owner nil = all, type '' = all."""

    __tablename__ = "stats_rollups"

    grain: Mapped[int] = mapped_column(SmallInteger, primary_key=True)  # bucket minutes: 1, 15, 60
    owner_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    type: Mapped[str] = mapped_column(Text, primary_key=True)
    bucket: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    created: Mapped[int] = _count()
    completed: Mapped[int] = _count()
    failed: Mapped[int] = _count()
    cancelled: Mapped[int] = _count()
    wait_p50: Mapped[float | None] = mapped_column(Float)
    wait_p95: Mapped[float | None] = mapped_column(Float)
    run_p50: Mapped[float | None] = mapped_column(Float)
    run_p95: Mapped[float | None] = mapped_column(Float)


class StatsLatency(Base):
    """A latency histogram bin of one rollup bucket: how many samples fell in it (the percentiles' source)."""

    __tablename__ = "stats_latency"

    grain: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    owner_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    type: Mapped[str] = mapped_column(Text, primary_key=True)
    bucket: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    measure: Mapped[int] = mapped_column(SmallInteger, primary_key=True)  # 0 wait, 1 run
    bin: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    n: Mapped[int] = mapped_column(Integer, nullable=False)


class StatsNow(Base):
    """Live gauges per (owner, type), replaced whole by every stats tick."""

    __tablename__ = "stats_now"

    owner_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    type: Mapped[str] = mapped_column(Text, primary_key=True)
    pending: Mapped[int] = mapped_column(Integer, nullable=False)
    running: Mapped[int] = mapped_column(Integer, nullable=False)
    oldest_pending_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    as_of: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


# Job metrics for /metrics (migration 0018): fleet-wide totals the stats duty adds its events to.
class MetricsJobTotal(Base):
    """How many runs of a type ended with an outcome (completed, failed, cancelled, retried), ever."""

    __tablename__ = "metrics_job_totals"

    type: Mapped[str] = mapped_column(Text, primary_key=True)
    outcome: Mapped[str] = mapped_column(Text, primary_key=True)
    n: Mapped[int] = mapped_column(BigInteger, nullable=False)


class MetricsJobSeconds(Base):
    """One bucket of a type's wait or run histogram: samples in (previous bound, le], and their sum."""

    __tablename__ = "metrics_job_seconds"

    type: Mapped[str] = mapped_column(Text, primary_key=True)
    measure: Mapped[int] = mapped_column(SmallInteger, primary_key=True)  # 0 wait, 1 run
    le: Mapped[float] = mapped_column(Float, primary_key=True)  # 'Infinity' for the last bucket
    n: Mapped[int] = mapped_column(BigInteger, nullable=False)
    sum_s: Mapped[float] = mapped_column(Float, nullable=False)
