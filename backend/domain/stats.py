"""Job statistics: windows, bucket grains, event kinds, and the `GET /stats` schemas."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from enum import IntEnum, StrEnum

from pydantic import BaseModel, Field

# Rollups are kept per (owner, type) and also for every owner (this owner id) and every type (this type).
ALL_OWNERS = uuid.UUID(int=0)
ALL_TYPES = ""
GRAINS = (1, 15, 60)  # bucket minutes; each divides the next, all aligned to the Unix epoch

LATENCY_RESOLUTION = (
    "Seconds, from a log-scale histogram with 10 bins per decade: the value is the bin's geometric "
    "middle, within ±12 % of the exact percentile (under 1 ms reads as 0.0005). Null without a sample."
)


class EventKind(IntEnum):
    """What a `stats_events` row records (written by the triggers of migrations 0008 and 0017)."""

    CREATED = 0
    COMPLETED = 1
    FAILED = 2
    CANCELLED = 3
    RETRIED = 4  # a run ended and its job will run again (only the Prometheus totals count these)


class Measure(IntEnum):
    """Which latency a `stats_latency` histogram counts."""

    WAIT = 0  # created -> first start
    RUN = 1  # first start -> end


class StatsWindow(StrEnum):
    """How far back `GET /stats` looks, and in which buckets."""

    HOUR = "1h"
    DAY = "24h"
    WEEK = "7d"

    @property
    def grain(self) -> int:
        """Bucket length in minutes."""
        return {StatsWindow.HOUR: 1, StatsWindow.DAY: 15, StatsWindow.WEEK: 60}[self]

    @property
    def bucket_count(self) -> int:
        """How many buckets the window has (the last one is the current, still filling)."""
        return {StatsWindow.HOUR: 60, StatsWindow.DAY: 96, StatsWindow.WEEK: 168}[self]

    @property
    def bucket_seconds(self) -> int:
        return self.grain * 60

    def bucket_starts(self, now: datetime) -> list[datetime]:
        """Every bucket of the window ending with the one holding `now`, oldest first."""
        size = self.bucket_seconds
        last = int(now.timestamp()) // size * size
        first = last - (self.bucket_count - 1) * size
        epoch = datetime.fromtimestamp(first, UTC)
        return [epoch + timedelta(seconds=i * size) for i in range(self.bucket_count)]


class Counts(BaseModel):
    """How many jobs were created, and how many ended in each terminal status."""

    created: int = Field(0, description="Jobs submitted.")
    completed: int = Field(0, description="Jobs that ended `completed`.")
    failed: int = Field(
        0, description="Jobs that ended `failed` (a job run again and failing again counts again)."
    )
    cancelled: int = Field(0, description="Jobs that ended `cancelled`.")

    def add(self, other: Counts) -> None:
        """Add another's counts to these."""
        self.created += other.created
        self.completed += other.completed
        self.failed += other.failed
        self.cancelled += other.cancelled


class StatsBucket(Counts):
    """One bucket: jobs created in it, jobs that ended in it, and the latencies of those that ended."""

    start: datetime
    wait_p50: float | None = Field(
        None,
        description="Median wait (created → first start) of the jobs that ended in this bucket. "
        + LATENCY_RESOLUTION,
    )
    wait_p95: float | None = Field(None, description="95th percentile of the wait. " + LATENCY_RESOLUTION)
    run_p50: float | None = Field(
        None,
        description="Median run time (first start → end) of the jobs that ended in this bucket. "
        + LATENCY_RESOLUTION,
    )
    run_p95: float | None = Field(None, description="95th percentile of the run time. " + LATENCY_RESOLUTION)


class TypeStats(Counts):
    """One job type's counts over the window."""

    failure_rate: float | None = Field(
        None, description="failed / (completed + failed) over the window; null when none ended so."
    )


class LiveGauges(BaseModel):
    """Jobs waiting and running right now (as of `as_of`)."""

    pending: int = Field(
        0, description="Jobs waiting to run: `pending` or `retrying`, due or scheduled later."
    )
    running: int = Field(0, description="Jobs running.")
    oldest_wait_seconds: float = Field(
        0, description="How long the longest-waiting due job had waited (0 when none waits)."
    )


class StatsView(BaseModel):
    """Job statistics over a window, served from rollups a worker duty keeps current."""

    window: StatsWindow
    bucket_seconds: int
    type: str | None = Field(description="The job type asked for; null for every type.")
    as_of: datetime | None = Field(
        description="When the rollups and gauges were last brought up to date (every "
        "STATS_INTERVAL_SECONDS); null before the first time."
    )
    buckets: list[StatsBucket] = Field(description="Every bucket of the window, oldest first, zero-filled.")
    totals: Counts
    by_type: dict[str, TypeStats] = Field(
        description="Counts per job type over the window (types seen only)."
    )
    now: LiveGauges
