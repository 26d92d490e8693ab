"""The `/metrics` page: this host's process counters, and the fleet's job metrics from PostgreSQL.

Two kinds of series, two ways to add them up across API instances (the README's "Metrics" says why):
- per host (`jobplatform_http_*`, `jobplatform_webhook_deliveries_total`): counted by the processes
  themselves, summed over the host's processes (`backend.core.metrics`); sum them across instances.
- fleet-wide (`jobplatform_jobs*`, `jobplatform_job_*_seconds`, the queue and wait gauges): read from
  PostgreSQL and Redis, the same on every instance; take one (`max`) across instances, never the sum.

Every query here is cheap whatever the size of `jobs`: the gauges read the partial indexes of live jobs
only, and the totals are tables of a few hundred rows that the stats duty keeps adding to.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence

import anyio
import asyncpg
from prometheus_client import generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from backend.core.metrics import render_process_metrics
from backend.domain.enums import LIVE_STATUSES
from backend.domain.job_types import SPECS
from backend.domain.metrics import JOB_SECONDS_BUCKETS, JobOutcome
from backend.domain.stats import Measure
from backend.repo.jobs import JobRepository
from backend.repo.stats import StatsRepository
from backend.resources import Resources

FLEET = " Fleet-wide (the same on every API instance: aggregate with max, not sum)."


class _Families(Collector):
    """Metric families already built, for the exposition format writer."""

    def __init__(self, families: Sequence[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


async def render_metrics(res: Resources) -> bytes:
    """The whole page: the host's process metrics (read in a thread), then the fleet's."""
    fleet = await fleet_families(res)
    process = await anyio.to_thread.run_sync(render_process_metrics)
    return process + generate_latest(_Families(fleet))


async def fleet_families(res: Resources) -> list[Metric]:
    """The gauges (live jobs, oldest due wait, Redis queue depth) and the job totals and histograms."""
    jobs, stats = JobRepository(res.pool), StatsRepository(res.pool)
    counts = await jobs.live_counts()
    oldest = await jobs.oldest_due_wait_seconds()
    queued = await res.queue.depth()
    live = GaugeMetricFamily(
        "jobplatform_jobs", "Jobs waiting or running, by status." + FLEET, labels=["status"]
    )
    for status in LIVE_STATUSES:
        live.add_metric([str(status)], counts.get(status, 0))
    return [
        live,
        GaugeMetricFamily(
            "jobplatform_oldest_due_wait_seconds",
            "Age of the longest-waiting job that is due to run." + FLEET,
            value=oldest,
        ),
        GaugeMetricFamily(
            "jobplatform_queue_deliveries",
            "Deliveries in the Redis queue (queued or deferred)." + FLEET,
            value=queued,
        ),
        finished_family(await stats.job_totals()),
        *seconds_families(await stats.job_seconds()),
    ]


def _types(seen: Iterable[str]) -> list[str]:
    """Every job type, and any other the tables name (a type since removed keeps its counts)."""
    return sorted(set(SPECS) | set(seen))


def finished_family(rows: Sequence[asyncpg.Record]) -> CounterMetricFamily:
    """`jobplatform_jobs_finished_total{type, outcome}`, every series present from 0."""
    totals = {(r["type"], r["outcome"]): r["n"] for r in rows}
    family = CounterMetricFamily(
        "jobplatform_jobs_finished",
        "Runs of jobs that ended, by type and outcome: completed, failed, cancelled (a job's end), or "
        "retried (the run ended and the job will run again). Counted from PostgreSQL every "
        "STATS_INTERVAL_SECONDS." + FLEET,
        labels=["type", "outcome"],
    )
    for job_type in _types(t for t, _ in totals):
        for outcome in JobOutcome:
            family.add_metric([job_type, outcome.value], totals.get((job_type, outcome.value), 0))
    return family


SECONDS_HELP = {
    Measure.WAIT: "Seconds from a job's creation to its first start, observed when the job ends.",
    Measure.RUN: "Seconds from a job's first start to its end (retries included), observed when it ends.",
}


def seconds_families(rows: Sequence[asyncpg.Record]) -> list[HistogramMetricFamily]:
    """`jobplatform_job_wait_seconds` and `jobplatform_job_run_seconds` by type, from stored buckets."""
    stored: dict[tuple[int, str], list[asyncpg.Record]] = defaultdict(list)
    for row in rows:
        stored[(row["measure"], row["type"])].append(row)
    families = []
    for measure in Measure:
        family = HistogramMetricFamily(
            f"jobplatform_job_{measure.name.lower()}_seconds",
            SECONDS_HELP[measure] + FLEET,
            labels=["type"],
        )
        for job_type in _types(t for m, t in stored if m == measure):
            buckets, total = _cumulative(stored[(measure, job_type)])
            family.add_metric([job_type], buckets=buckets, sum_value=total)
        families.append(family)
    return families


def _cumulative(rows: Sequence[asyncpg.Record]) -> tuple[list[tuple[str, float]], float]:
    """The histogram's cumulative (le, count) pairs, ending with +Inf, and its sum."""
    per_bound = {float(r["le"]): int(r["n"]) for r in rows}
    bounds = sorted(set(JOB_SECONDS_BUCKETS) | set(per_bound) | {math.inf})
    return list(_running(bounds, per_bound)), float(sum(r["sum_s"] for r in rows))


def _running(bounds: Sequence[float], per_bound: dict[float, int]) -> Iterator[tuple[str, float]]:
    count = 0
    for bound in bounds:
        count += per_bound.get(bound, 0)
        yield ("+Inf" if math.isinf(bound) else repr(bound)), count
