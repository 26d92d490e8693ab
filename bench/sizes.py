"""How big each scenario runs: `default` (the real run, under 10 minutes on 2 cores) and `tiny` (seconds)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Sizes:
    """Every knob that sets how long the run takes."""

    name: str
    clients: int = 32  # concurrent HTTP connections / enqueuers
    e2e_jobs: int = 2000
    warmup_jobs: int = 60
    low_load_jobs: int = 100
    low_load_gap_s: float = 0.03
    backlog_jobs: int = 500
    api_seconds: float = 5.0
    api_warmup_seconds: float = 1.0
    csv_inprocess_rows: int = 1_000_000
    csv_small_rows: int = 100_000
    csv_large_rows: int = 10_000_000
    download_rows: int = 2_000_000  # about 100 MB
    download_repeats: int = 3
    recovery_trials: int = 5
    recovery_settings: dict[str, str] = field(default_factory=dict)  # worker env overrides
    profile_seconds: float = 8.0
    stats_jobs: int = 1_000_000  # rows in the jobs table while GET /stats is measured
    fair_heavy_jobs: int = 20_000  # the heavy key's backlog (scenario 8)
    fair_light_jobs: int = 50  # the light key's jobs, one at a time
    fair_light_gap_s: float = 0.05
    fair_workers: int = 2
    dispatch_rounds: int = 2  # plain / with priorities and caps, alternated, each this many times
    batch_single_jobs: int = 4000  # scenario 9: POST /jobs requests (one job each)
    batch_requests: int = 64  # scenario 9: POST /batches requests (1,000 jobs each)
    batch_rounds: int = 2  # scenario 9: single and batch submissions alternated this many times
    batch_alone_requests: int = 10  # scenario 9: batch requests one at a time, for their latency alone
    webhook_jobs: int = 2000  # scenario 10: deliveries in the outbox
    s3_rounds: int = 2  # scenario 11: local and S3 sides alternated this many times (jobs; downloads repeat)
    s3_small_jobs: int = 100  # scenario 11: small csv_report jobs a worker drains, per side and round
    s3_small_rows: int = 10_000  # scenario 11: rows of each small job (about 0.5 MB: one PutObject)


DEFAULT = Sizes(name="default")

TINY = Sizes(
    name="tiny",
    e2e_jobs=100,
    warmup_jobs=10,
    low_load_jobs=10,
    low_load_gap_s=0.02,
    backlog_jobs=40,
    api_seconds=0.5,
    api_warmup_seconds=0.2,
    csv_inprocess_rows=20_000,
    csv_small_rows=10_000,
    csv_large_rows=100_000,
    download_rows=20_000,
    download_repeats=1,
    recovery_trials=1,
    recovery_settings={"LEASE_SECONDS": "1", "HEARTBEAT_SECONDS": "0.2", "RECONCILE_EVERY_SECONDS": "1"},
    profile_seconds=1.0,
    stats_jobs=20_000,
    fair_heavy_jobs=200,
    fair_light_jobs=10,
    fair_light_gap_s=0.02,
    dispatch_rounds=1,
    batch_single_jobs=100,
    batch_requests=3,
    batch_rounds=1,
    batch_alone_requests=2,
    webhook_jobs=60,
    s3_rounds=1,
    s3_small_jobs=10,
    s3_small_rows=1000,
)
