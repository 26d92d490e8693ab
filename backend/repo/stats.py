"""StatsRepository: every statement on the stats tables (events, rollups, latency histograms, gauges) and
on the job metrics they feed (`metrics_job_totals`, `metrics_job_seconds`).

The triggers of migration 0008 append one `stats_events` row per created job and per move into a terminal
status, migration 0018's one per retry. `FOLD` deletes a batch of events and adds them to the rollups and
to the metrics totals in the same statement, so an event is always either still queued or counted, never
both nor neither; `PERCENTILES` then recomputes the percentiles of the buckets it touched, in the same
transaction.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from backend.db.pool import Executor
from backend.domain.enums import WAITING_STATUSES, JobStatus, sql_list
from backend.domain.metrics import JOB_SECONDS_BUCKETS, OUTCOME_OF_EVENT
from backend.domain.stats import ALL_OWNERS, ALL_TYPES, GRAINS, EventKind, Measure

RUNNING = f"'{JobStatus.RUNNING.value}'"
WAITING = sql_list(WAITING_STATUSES)
GRAIN_VALUES = ", ".join(f"({g}::smallint)" for g in GRAINS)
EPOCH = "timestamptz 'epoch'"
# A histogram bucket's `le`: the first bound at or above the value, else +Inf. $2 holds the bounds and
# +Inf, $3 the bounds negated, so ascending from the largest: width_bucket(-value, $3) counts the bounds at
# or above the value in one binary search (a subquery over the bounds per sample cost ten times as much).
LE = "($2::float8[])[cardinality($2::float8[]) - width_bucket(-{value}, $3::float8[])]"
LE_BOUNDS = [*JOB_SECONDS_BUCKETS, math.inf]
NEGATED_BOUNDS = [-bound for bound in reversed(JOB_SECONDS_BUCKETS)]
OUTCOME = "CASE kind " + " ".join(f"WHEN {k.value} THEN '{o}'" for k, o in OUTCOME_OF_EVENT.items()) + " END"
ENDED = f"{EventKind.COMPLETED.value}, {EventKind.FAILED.value}, {EventKind.CANCELLED.value}"

# Events are first summed per minute, owner, type, kind and latency bins (a burst of a million creations
# in a few minutes is a few rows), then added to 3 grains x 4 (owner, type) combinations. Returns how many
# events went, and the (grain, owner, type, bucket) keys whose histograms changed. Retries are not in the
# rollups: they only go to the metrics totals, with every end, and the wait and run times of the ends in
# Prometheus histogram buckets (`LE`).
FOLD = f"""
    WITH ev AS (
        DELETE FROM stats_events WHERE ctid = ANY(ARRAY(SELECT ctid FROM stats_events LIMIT $1))
        RETURNING at, owner_id, type, kind, wait_s, run_s
    ), minute AS (
        SELECT date_bin(interval '1 minute', at, {EPOCH}) AS at, owner_id, type, kind,
               jp_stats_bin(wait_s) AS wait_bin, jp_stats_bin(run_s) AS run_bin, count(*)::int AS n
        FROM ev WHERE kind <> {EventKind.RETRIED.value} GROUP BY 1, 2, 3, 4, 5, 6
    ), totals AS (
        INSERT INTO metrics_job_totals AS t (type, outcome, n)
        SELECT type, {OUTCOME}, count(*) FROM ev WHERE kind <> {EventKind.CREATED.value} GROUP BY 1, 2
        ON CONFLICT (type, outcome) DO UPDATE SET n = t.n + EXCLUDED.n
    ), seconds AS (
        INSERT INTO metrics_job_seconds AS s (type, measure, le, n, sum_s)
        SELECT ev.type, m.measure,
               {LE.format(value="greatest(m.s, 0)")}, count(*), sum(greatest(m.s, 0))
        FROM ev CROSS JOIN LATERAL (VALUES ({Measure.WAIT.value}::smallint, ev.wait_s),
                                           ({Measure.RUN.value}::smallint, ev.run_s)) AS m(measure, s)
        WHERE ev.kind IN ({ENDED}) AND m.s IS NOT NULL
        GROUP BY 1, 2, 3
        ON CONFLICT (type, measure, le) DO UPDATE SET n = s.n + EXCLUDED.n, sum_s = s.sum_s + EXCLUDED.sum_s
    ), expanded AS (
        SELECT g.grain, o.owner_id, t.type, date_bin(make_interval(mins => g.grain), m.at, {EPOCH}) AS bucket,
               m.kind, m.wait_bin, m.run_bin, m.n
        FROM minute m
        CROSS JOIN (VALUES {GRAIN_VALUES}) AS g(grain)
        CROSS JOIN LATERAL (VALUES (m.owner_id), ('{ALL_OWNERS}'::uuid)) AS o(owner_id)
        CROSS JOIN LATERAL (VALUES (m.type), ('{ALL_TYPES}')) AS t(type)
    ), counted AS (
        INSERT INTO stats_rollups AS r (grain, owner_id, type, bucket, created, completed, failed, cancelled)
        SELECT grain, owner_id, type, bucket,
               coalesce(sum(n) FILTER (WHERE kind = {EventKind.CREATED.value}), 0),
               coalesce(sum(n) FILTER (WHERE kind = {EventKind.COMPLETED.value}), 0),
               coalesce(sum(n) FILTER (WHERE kind = {EventKind.FAILED.value}), 0),
               coalesce(sum(n) FILTER (WHERE kind = {EventKind.CANCELLED.value}), 0)
        FROM expanded GROUP BY 1, 2, 3, 4
        ON CONFLICT (grain, owner_id, type, bucket) DO UPDATE
        SET created = r.created + EXCLUDED.created, completed = r.completed + EXCLUDED.completed,
            failed = r.failed + EXCLUDED.failed, cancelled = r.cancelled + EXCLUDED.cancelled
    ), binned AS (
        INSERT INTO stats_latency AS l (grain, owner_id, type, bucket, measure, bin, n)
        SELECT e.grain, e.owner_id, e.type, e.bucket, s.measure, s.bin, sum(e.n)
        FROM expanded e
        CROSS JOIN LATERAL (VALUES ({Measure.WAIT.value}::smallint, e.wait_bin),
                                   ({Measure.RUN.value}::smallint, e.run_bin)) AS s(measure, bin)
        WHERE s.bin IS NOT NULL
        GROUP BY 1, 2, 3, 4, 5, 6
        ON CONFLICT (grain, owner_id, type, bucket, measure, bin) DO UPDATE SET n = l.n + EXCLUDED.n
        RETURNING l.grain, l.owner_id, l.type, l.bucket
    ), touched AS (
        SELECT DISTINCT grain, owner_id, type, bucket FROM binned
    )
    SELECT (SELECT count(*) FROM ev) AS events, array_agg(grain) AS grains, array_agg(owner_id) AS owners,
           array_agg(type) AS types, array_agg(bucket) AS buckets
    FROM touched
"""


def _percentile(measure: Measure, share: float, name: str) -> str:
    first_bin = f"min(bin) FILTER (WHERE measure = {measure.value} AND upto >= {share} * total)"
    return f"jp_stats_bin_value({first_bin}) AS {name}"


PERCENTILE_COLUMNS = ", ".join(
    _percentile(measure, share, f"{measure.name.lower()}_p{round(share * 100)}")
    for measure in Measure
    for share in (0.5, 0.95)
)
# A percentile is the first bin whose running count reaches that share of the bucket's samples; it reads
# as the bin's geometric middle. One range of stats_latency's key per bucket.
PERCENTILES = f"""
    WITH keys AS (
        SELECT * FROM unnest($1::smallint[], $2::uuid[], $3::text[], $4::timestamptz[])
            AS k(grain, owner_id, type, bucket)
    ), cumulative AS (
        SELECT l.grain, l.owner_id, l.type, l.bucket, l.measure, l.bin,
               sum(l.n) OVER (histogram ORDER BY l.bin) AS upto, sum(l.n) OVER histogram AS total
        FROM keys k JOIN stats_latency l USING (grain, owner_id, type, bucket)
        WINDOW histogram AS (PARTITION BY l.grain, l.owner_id, l.type, l.bucket, l.measure)
    ), pct AS (
        SELECT grain, owner_id, type, bucket, {PERCENTILE_COLUMNS}
        FROM cumulative GROUP BY 1, 2, 3, 4
    )
    UPDATE stats_rollups r
    SET wait_p50 = p.wait_p50, wait_p95 = p.wait_p95, run_p50 = p.run_p50, run_p95 = p.run_p95
    FROM pct p
    WHERE r.grain = p.grain AND r.owner_id = p.owner_id AND r.type = p.type AND r.bucket = p.bucket
"""
# The live gauges from the jobs table: each arm matches a partial index's predicate (ix_jobs_waiting_due,
# ix_jobs_running_lease), so terminal rows are never read. `pending` counts every waiting job (pending or
# retrying, due or not); the oldest wait is that of the longest-waiting due one.
CLEAR_NOW = "DELETE FROM stats_now"
FILL_NOW = f"""
    INSERT INTO stats_now (owner_id, type, pending, running, oldest_pending_at, as_of)
    SELECT coalesce(owner_id, '{ALL_OWNERS}'::uuid), coalesce(type, '{ALL_TYPES}'),
           coalesce(sum(pending), 0), coalesce(sum(running), 0), min(due_since), now()
    FROM (
        SELECT owner_id, type, 1 AS pending, 0 AS running,
               CASE WHEN scheduled_at <= now() THEN scheduled_at END AS due_since
        FROM jobs WHERE status IN ({WAITING})
        UNION ALL
        SELECT owner_id, type, 0, 1, NULL FROM jobs WHERE status = {RUNNING}
    ) live
    GROUP BY GROUPING SETS ((owner_id, type), (owner_id), (type), ())
"""
EXPIRE = """
    WITH r AS (DELETE FROM stats_rollups WHERE grain = $1 AND bucket < $2 RETURNING 1),
         l AS (DELETE FROM stats_latency WHERE grain = $1 AND bucket < $2 RETURNING 1)
    SELECT (SELECT count(*) FROM r) + (SELECT count(*) FROM l)
"""

# The job metrics, whole: a few hundred rows at most, whatever the number of jobs.
JOB_TOTALS = "SELECT type, outcome, n FROM metrics_job_totals"
JOB_SECONDS = "SELECT type, measure, le, n, sum_s FROM metrics_job_seconds ORDER BY type, measure, le"

# Reads: one range of the rollups' key per query.
BUCKETS = """
    SELECT bucket, created, completed, failed, cancelled, wait_p50, wait_p95, run_p50, run_p95
    FROM stats_rollups WHERE grain = $1 AND owner_id = $2 AND type = $3 AND bucket >= $4 AND bucket <= $5
    ORDER BY bucket
"""
BY_TYPE = """
    SELECT type, sum(created)::bigint AS created, sum(completed)::bigint AS completed,
           sum(failed)::bigint AS failed, sum(cancelled)::bigint AS cancelled
    FROM stats_rollups
    WHERE grain = $1 AND owner_id = $2 AND type = ANY($3::text[]) AND bucket >= $4 AND bucket <= $5
    GROUP BY type ORDER BY type
"""
# One row, always: the gauges of (owner, type), zero when it has no live job, and when they were taken
# (the every-owner, every-type row exists from the first refresh on, even with no job at all).
NOW = f"""
    SELECT coalesce(n.pending, 0) AS pending, coalesce(n.running, 0) AS running,
           coalesce(extract(epoch FROM n.as_of - n.oldest_pending_at), 0)::float8 AS oldest_wait_s,
           (SELECT as_of FROM stats_now WHERE owner_id = '{ALL_OWNERS}'::uuid AND type = '{ALL_TYPES}')
               AS as_of
    FROM (VALUES (1)) AS one LEFT JOIN stats_now n ON n.owner_id = $1 AND n.type = $2
"""


@dataclass(frozen=True)
class Folded:
    """One batch of events folded into the rollups."""

    events: int
    keys: tuple[list[int], list[uuid.UUID], list[str], list[datetime]]  # buckets whose histograms changed


class StatsRepository:
    """The stats SQL, on a pool or on one connection (the duty's transaction)."""

    def __init__(self, db: Executor) -> None:
        self.db = db

    async def fold_events(self, limit: int) -> Folded:
        """Delete up to `limit` queued events and add them to the rollups and histograms."""
        row = await self.db.fetchrow(FOLD, limit, LE_BOUNDS, NEGATED_BOUNDS)
        keys = (row["grains"] or [], row["owners"] or [], row["types"] or [], row["buckets"] or [])
        return Folded(int(row["events"]), keys)

    async def update_percentiles(self, folded: Folded) -> None:
        """Recompute p50/p95 of the buckets a fold touched, from their histograms."""
        if folded.keys[0]:
            await self.db.execute(PERCENTILES, *folded.keys)

    async def refresh_now(self) -> None:
        """Replace the live gauges (call inside a transaction: readers see the old set or the new)."""
        await self.db.execute(CLEAR_NOW)
        await self.db.execute(FILL_NOW)

    async def expire(self, grain: int, before: datetime) -> int:
        """Delete one grain's buckets older than `before`; how many rows went."""
        return int(await self.db.fetchval(EXPIRE, grain, before))

    async def buckets(
        self, grain: int, owner_id: uuid.UUID, job_type: str, first: datetime, last: datetime
    ) -> list[asyncpg.Record]:
        """The stored buckets of one (owner, type) in [first, last] (those nothing happened in are absent)."""
        rows: list[asyncpg.Record] = await self.db.fetch(BUCKETS, grain, owner_id, job_type, first, last)
        return rows

    async def by_type(
        self, grain: int, owner_id: uuid.UUID, types: Sequence[str], first: datetime, last: datetime
    ) -> list[asyncpg.Record]:
        """Counts per type over [first, last], for the types that have any."""
        rows: list[asyncpg.Record] = await self.db.fetch(BY_TYPE, grain, owner_id, list(types), first, last)
        return rows

    async def job_totals(self) -> list[asyncpg.Record]:
        """Every (type, outcome, n) of the job metrics."""
        rows: list[asyncpg.Record] = await self.db.fetch(JOB_TOTALS)
        return rows

    async def job_seconds(self) -> list[asyncpg.Record]:
        """Every bucket of the wait and run histograms: (type, measure, le, n, sum_s), in order."""
        rows: list[asyncpg.Record] = await self.db.fetch(JOB_SECONDS)
        return rows

    async def now(self, owner_id: uuid.UUID, job_type: str) -> asyncpg.Record:
        """The gauges of one (owner, type) (zero if it has no live job) and their `as_of` (None before the
        first refresh)."""
        row: asyncpg.Record = await self.db.fetchrow(NOW, owner_id, job_type)
        return row
