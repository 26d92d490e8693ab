"""Settings: one object, read from the environment or `.env`."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_KEYS = {"changeme", "change-me", "secret", "dev"}


def to_asyncpg_url(url: str) -> str:
    """Normalise any PostgreSQL DSN to the SQLAlchemy asyncpg dialect."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://", "postgresql+psycopg://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


class Settings(BaseSettings):
    """Everything configurable, for the API, the worker and the CLI alike."""

    model_config = SettingsConfigDict(env_file=".env", env_ignore_empty=True, extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    database_url: str | None = None
    redis_url: str | None = None
    data_dir: Path = Path(".data")
    results_dir: Path | None = None
    results_url: str | None = Field(
        default=None,
        description="Where result files live: s3://bucket[/prefix] for an S3-compatible store, or "
        "file:///folder; unset: the local folder RESULTS_DIR.",
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="An S3-compatible server (MinIO, Ceph, R2, ...); unset: AWS S3."
    )
    s3_addressing_style: Literal["auto", "path", "virtual"] = Field(
        default="auto", description="Bucket in the path or the host name; auto: path with S3_ENDPOINT_URL."
    )
    aws_region: str | None = Field(default=None, description="Unset: AWS_DEFAULT_REGION, else us-east-1.")
    aws_access_key_id: str | None = Field(
        default=None, description="Unset: the AWS default chain (env, ~/.aws, instance or pod role)."
    )
    aws_secret_access_key: SecretStr | None = None
    aws_session_token: SecretStr | None = None
    s3_part_size_bytes: int = Field(
        default=16 * 2**20,
        ge=5 * 2**20,
        le=5 * 2**30,
        description="Files larger than this are uploaded in parts of this size (S3: 5 MiB to 5 GiB).",
    )
    s3_max_connections: int = Field(
        default=100, ge=1, description="Connections to the S3 store per process (a download holds one)."
    )
    s3_presigned_downloads: bool = Field(
        default=False,
        description="Downloads answer 307 to a presigned GET URL on the store instead of streaming through "
        "the API (the store must be reachable by clients at S3_ENDPOINT_URL).",
    )
    s3_presign_seconds: int = Field(
        default=300, ge=10, le=7 * 86400, description="How long a presigned download URL works."
    )
    bootstrap_api_key: str | None = None
    port: int = 8000
    host: str = "127.0.0.1"

    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    job_retention_days: float = Field(default=7, ge=0)
    idempotency_ttl_hours: float = Field(default=24, gt=0)
    idempotency_required: bool = False
    # A revoked key must get 401 from every API process within 1 s (PRODUCT.md): a hit is cached this long.
    auth_cache_seconds: float = Field(
        default=1, ge=0, description="How long a key lookup is cached; a revocation takes up to this long."
    )
    rate_limit: str | None = Field(default=None, description="Per API key, e.g. 100/minute; unset: none.")
    auth_failures_per_minute: int = Field(
        default=30, ge=0, description="Failed authentications per client address per minute; 0: no limit."
    )
    db_pool_size: int = Field(
        default=20, ge=1, description="PostgreSQL connections kept open per API process."
    )
    http_max_header_bytes: int = Field(
        default=32_768, ge=1024, description="Largest request head (request line + headers); past it 431."
    )
    http_header_timeout_seconds: float = Field(
        default=10, gt=0, description="Time a request head may take to arrive; past it 408 and close."
    )
    http_max_connections: int = Field(
        default=1000, ge=1, description="Connections one API process serves at once; beyond them 503."
    )

    # Per API key limits, so that no key can take everything (0 = no limit).
    max_waiting_jobs_per_key: int = Field(
        default=10_000, ge=0, description="Pending, retrying or blocked jobs."
    )
    # Off by default, as PRODUCT.md has it (per-key max_running: unset = no cap); a capped key that saturates
    # its cap pays for refused claims and promotions (measured in bench/RESULTS.md).
    max_running_jobs_per_key: int = Field(default=0, ge=0, description="Jobs running at once, fleet-wide.")
    type_concurrency: dict[str, int] = Field(
        default_factory=dict,
        description='Jobs of a type running at once, fleet-wide, e.g. {"csv_report": 4}; others: no cap.',
    )
    max_result_bytes_per_key: int = Field(default=10 * 2**30, ge=0, description="Result files kept.")
    enable_diagnostic_jobs: bool | None = Field(
        default=None, description="Allow the `sleep` type; unset: on except in production."
    )
    max_schedules_per_key: int = Field(
        default=100, ge=0, description="Schedules one API key may have (0 = no limit)."
    )
    sse_max_streams_per_key: int = Field(default=10, ge=1, description="Open event streams per API key.")
    sse_max_seconds: float = Field(
        default=300, gt=0, description="An event stream ends after this long; the client reconnects."
    )

    ui_session_hours: float = Field(default=12, gt=0, description="A dashboard sign-in lasts this long.")
    ui_session_secret: SecretStr | None = Field(
        default=None, description="Signs dashboard cookies; unset: a random secret kept in the database."
    )
    ui_secure_cookie: bool | None = Field(
        default=None, description="Mark the session cookie Secure; unset: when the request came over https."
    )

    webhook_allow_private: bool = Field(
        default=False,
        description="Allow webhook_url over plain http and to private, loopback, link-local addresses.",
    )
    webhook_secrets_key: SecretStr | None = Field(
        default=None,
        description="Encrypts webhook signing secrets at rest (any long random string); unset: derived "
        "from the deployment's secret in the database.",
    )
    webhook_backoff_seconds: list[float] = Field(
        default_factory=lambda: [5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0],
        min_length=1,
        description="Waits between webhook attempts; the last repeats until 24 h after the event.",
    )
    webhook_lease_seconds: float = Field(
        default=30, gt=5, description="A sender killed mid-POST leaves its delivery to others after this."
    )
    webhook_poll_seconds: float = Field(
        default=0.5, gt=0, description="How often workers look for due webhooks."
    )

    worker_concurrency: int = Field(default=20, ge=1)
    queue_name: str = "arq:queue"
    queue_horizon_seconds: float = Field(
        default=3600, gt=0, description="Jobs due later than this wait in PostgreSQL only, not in Redis."
    )
    poll_delay_seconds: float = Field(default=0.02, gt=0)
    lease_seconds: float = Field(default=15, gt=0)
    heartbeat_seconds: float = Field(default=1.0, gt=0)
    schedule_poll_seconds: float = Field(
        default=0.5, gt=0, le=60, description="How often each worker looks for due schedules."
    )
    reconcile_every_seconds: int = Field(default=3, ge=1, le=60)
    reconcile_grace_seconds: float = Field(default=5, ge=0)
    purge_every_minutes: int = Field(default=10, ge=1, le=60)
    purge_batch_size: int = Field(default=1000, ge=1)
    stats_interval_seconds: int = Field(
        default=10, ge=1, le=60, description="How often workers fold job events into the /stats rollups."
    )
    stats_retention_days: float = Field(default=30, gt=0, description="How long /stats rollups are kept.")
    retry_base_seconds: float = Field(default=1.0, ge=0)
    retry_cap_seconds: float = Field(default=300.0, ge=0)
    default_max_attempts: int = Field(default=3, ge=1, le=20)
    shutdown_grace_seconds: int = Field(default=10, ge=0)
    task_timeouts: dict[str, float] = Field(
        default_factory=dict, description='Per-type timeout overrides in seconds, e.g. {"csv_report": 600}.'
    )

    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "console"

    prometheus_multiproc_dir: Path | None = Field(
        default=None,
        description="The folder where the processes of one host keep their Prometheus counters (prometheus-"
        "client's multiprocess mode); every API and worker process of the host must share it.",
    )
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP collector base URL (e.g. http://collector:4318); unset: no tracing at all.",
    )

    @field_validator("database_url")
    @classmethod
    def _asyncpg_dsn(cls, value: str | None) -> str | None:
        return to_asyncpg_url(value) if value else value

    @field_validator("results_url")
    @classmethod
    def _results_url_form(cls, value: str | None) -> str | None:
        if value and not value.startswith(("s3://", "file://")):
            raise ValueError("must be s3://bucket[/prefix] or file:///folder (or unset: RESULTS_DIR)")
        if value and value.startswith("s3://"):
            from backend.adapters.s3 import S3Location

            S3Location.parse(value)
        return value

    @field_validator("rate_limit")
    @classmethod
    def _rate_limit_form(cls, value: str | None) -> str | None:
        if value:
            from backend.adapters.ratelimit import RateLimit

            RateLimit.parse(value)
        return value

    @field_validator("type_concurrency")
    @classmethod
    def _known_types_at_least_one(cls, value: dict[str, int]) -> dict[str, int]:
        from backend.domain.job_types import SPECS

        if unknown := sorted(set(value) - set(SPECS)):
            raise ValueError(f"unknown job type(s) {', '.join(unknown)}; known: {', '.join(sorted(SPECS))}")
        if low := sorted(t for t, cap in value.items() if cap < 1):
            raise ValueError(f"a cap must be at least 1 (omit a type to leave it uncapped): {', '.join(low)}")
        return value

    @field_validator("stats_interval_seconds")
    @classmethod
    def _divides_a_minute(cls, value: int) -> int:
        if 60 % value:
            raise ValueError("must divide 60 (the duty runs at fixed seconds of every minute)")
        return value

    @model_validator(mode="after")
    def _refuse_placeholder_key(self) -> Settings:
        key = self.bootstrap_api_key
        if self.environment == "production" and key and key.lower() in PLACEHOLDER_KEYS:
            raise ValueError("BOOTSTRAP_API_KEY is a placeholder; set a real secret in production")
        return self

    @property
    def diagnostic_jobs_enabled(self) -> bool:
        """Whether diagnostic job types (`sleep`) may be submitted."""
        if self.enable_diagnostic_jobs is None:
            return self.environment != "production"
        return self.enable_diagnostic_jobs

    @property
    def resolved_results_dir(self) -> Path:
        """The local results folder (`RESULTS_URL=file://…`, else `RESULTS_DIR`, else `$DATA_DIR/results`)."""
        if self.results_url and self.results_url.startswith("file://"):
            return Path(self.results_url.removeprefix("file://")).resolve()
        return (self.results_dir or self.data_dir / "results").resolve()

    @property
    def results_in_s3(self) -> bool:
        """Whether result files live in an S3-compatible store (`RESULTS_URL=s3://…`)."""
        return bool(self.results_url and self.results_url.startswith("s3://"))

    @property
    def scratch_dir(self) -> Path:
        """Where workers write result files before uploading them to an S3 store (`$DATA_DIR/scratch`)."""
        return (self.data_dir / "scratch").resolve()

    def require_database_url(self) -> str:
        """The database URL, or a clear error when nothing resolved it."""
        if not self.database_url:
            raise RuntimeError("DATABASE_URL is not set (use `jobplatform dev` to start embedded servers)")
        return self.database_url

    def require_redis_url(self) -> str:
        """The Redis URL, or a clear error when nothing resolved it."""
        if not self.redis_url:
            raise RuntimeError("REDIS_URL is not set (use `jobplatform dev` to start embedded servers)")
        return self.redis_url


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (tests build their own `Settings` instead)."""
    return Settings()
