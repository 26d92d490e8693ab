"""The job metrics kept in PostgreSQL for `/metrics`: outcomes and latency buckets (Prometheus' own
shapes), fleet-wide totals that the stats duty adds its events to."""

from __future__ import annotations

from enum import StrEnum

from backend.domain.stats import EventKind


class JobOutcome(StrEnum):
    """How a run of a job ended, as `jobplatform_jobs_finished_total{outcome}` counts it."""

    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    RETRIED = "retried"  # the run ended (an error, a lapsed lease, a shut-down) and the job will run again


OUTCOME_OF_EVENT = {
    EventKind.COMPLETED: JobOutcome.COMPLETED,
    EventKind.FAILED: JobOutcome.FAILED,
    EventKind.CANCELLED: JobOutcome.CANCELLED,
    EventKind.RETRIED: JobOutcome.RETRIED,
}

# Upper bounds (seconds, `le`) of the wait and run histograms: from a no-op's milliseconds to reports of
# an hour or more. A stored row keeps its bound: changing these later leaves old counts where they were.
JOB_SECONDS_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    1800.0, 3600.0, 7200.0,
)  # fmt: skip
