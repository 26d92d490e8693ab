"""JobRepository: every statement on `jobs` and its run history `job_runs`, on asyncpg.

Status names come from the enum (`sql_list`), and which statuses a write may start from comes from the
lifecycle table: the SQL applies decisions, it does not make them. Every write after a claim is
fenced by the claim token and `status = 'running'`.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from pydantic_core import to_json

from backend.db.pool import Executor
from backend.domain.datetimes import FIRST_INSTANT
from backend.domain.enums import TERMINAL_STATUSES, WAITING_STATUSES, JobStatus, sql_list
from backend.domain.lifecycle import Event, RunEnd, sources
from backend.domain.records import Claim, EndedRun, FailureGroup, JobRecord, RunRecord

RUNNING = f"'{JobStatus.RUNNING.value}'"
BLOCKED = f"'{JobStatus.BLOCKED.value}'"
WAITING = sql_list(WAITING_STATUSES)
TERMINAL = sql_list(TERMINAL_STATUSES)


@dataclass(frozen=True)
class JobFilters:
    """Filters for listing, counting or exporting one owner's jobs."""

    statuses: Sequence[str] | None = None
    types: Sequence[str] | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    tags: Sequence[str] | None = None  # jobs carrying all of them
    search: str | None = None  # a job id, or the start of a name (case-insensitive)
    error: str | None = None  # exactly this error (the dashboard's failure groups)
    batch_id: uuid.UUID | None = None  # jobs of this batch

    def params(self, owner_id: uuid.UUID | None) -> tuple[Any, ...]:
        """$1..$10 of `FILTERED`."""
        statuses = [str(s) for s in self.statuses] if self.statuses else None
        types = [str(t) for t in self.types] if self.types else None
        tags = list(self.tags) if self.tags else None
        job_id, name_prefix = _search_terms(self.search)
        after, before = self.created_after, self.created_before
        return owner_id, statuses, types, after, before, tags, name_prefix, job_id, self.error, self.batch_id


def _search_terms(search: str | None) -> tuple[uuid.UUID | None, str | None]:
    """(job id, LIKE pattern for a name prefix) for a search box: an id finds that job, text a name."""
    if not search:
        return None, None
    try:
        return uuid.UUID(search), None
    except ValueError:
        escaped = search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return None, escaped + "%"


FILTERS = """
    AND ($2::text[] IS NULL OR status = ANY($2::text[]))
    AND ($3::text[] IS NULL OR type = ANY($3::text[]))
    AND ($4::timestamptz IS NULL OR created_at >= $4)
    AND ($5::timestamptz IS NULL OR created_at < $5)
    AND ($6::text[] IS NULL OR tags @> $6::text[])
    AND ($7::text IS NULL OR lower(name) LIKE $7)
    AND ($8::uuid IS NULL OR id = $8)
    AND ($9::text IS NULL OR error = $9)
    AND ($10::uuid IS NULL OR batch_id = $10)
"""
FILTERED = "owner_id = $1" + FILTERS
KEYSET_START = (FIRST_INSTANT, uuid.UUID(int=0))  # before any (timestamp, id): a keyset walk's first page
# Every owner's jobs (an admin's view): $1 is NULL, kept so that both statements number their parameters
# alike. A statement of its own rather than `($1 IS NULL OR owner_id = $1)`, which a generic plan could not
# serve from ix_jobs_owner_created.
FILTERED_ANY_OWNER = "$1::uuid IS NULL" + FILTERS

# A schedule's fire: the unique (schedule_id, schedule_fire_at) makes a second insert of the same fire a
# no-op, however many workers try. (Submissions go through `INSERT_MANY`.)
INSERT_FIRED = """
    INSERT INTO jobs (id, owner_id, type, name, payload, max_attempts, scheduled_at, tags, priority,
                      concurrency_key, concurrency_limit, schedule_id, schedule_fire_at, webhook_url,
                      traceparent)
    VALUES ($1, $2, $3, $4, $5::jsonb, $6, coalesce($7, now()), $8, $9, $10, $11, $12, $13, $14, $15)
    ON CONFLICT (schedule_id, schedule_fire_at) WHERE schedule_id IS NOT NULL DO NOTHING
    RETURNING *
"""
GET_OWNED = "SELECT * FROM jobs WHERE id = $1 AND owner_id = $2"
GET = "SELECT * FROM jobs WHERE id = $1"
GET_MANY = "SELECT * FROM jobs WHERE id = ANY($1::uuid[])"
# The cursor is a row comparison even on the first page, so it is always an index condition on
# ix_jobs_owner_created (a page deep in a large table costs the same as the first).


def _page(where: str) -> str:
    return f"""
    SELECT * FROM jobs WHERE {where}
      AND (created_at, id) < (coalesce($11::timestamptz, 'infinity'),
                              coalesce($12::uuid, 'ffffffff-ffff-ffff-ffff-ffffffffffff'))
    ORDER BY created_at DESC, id DESC LIMIT $13
"""


LIST = _page(FILTERED)
LIST_ANY_OWNER = _page(FILTERED_ANY_OWNER)
COUNT = f"SELECT count(*) FROM jobs WHERE {FILTERED}"
EXPORT_COLUMNS = "id, type, name, status, attempts, error, created_at, started_at, finished_at"
STREAM = f"SELECT {EXPORT_COLUMNS} FROM jobs WHERE {FILTERED} ORDER BY created_at, id"

# Running jobs of the same owner; with the partial index ix_jobs_owner_running this counts at most the cap.
# What a delivery needs (`Delivery.from_row`).
DELIVERY_COLUMNS = "id, attempts, scheduled_at, owner_id, priority"
# A paused type's waiting jobs are neither claimed nor put back on the queue (resuming enqueues them).
NOT_PAUSED = "NOT EXISTS (SELECT 1 FROM paused_types p WHERE p.type = jobs.type)"
OWNER_RUNNING = f"(SELECT count(*) FROM jobs r WHERE r.owner_id = jobs.owner_id AND r.status = {RUNNING})"
# The same for the owner's jobs with this row's concurrency key (ix_jobs_concurrency_running), and for its
# type (among the running jobs only, a few per worker slot: no index of its own, which every claim would
# pay for).
KEY_RUNNING = f"""(SELECT count(*) FROM jobs r WHERE r.owner_id = jobs.owner_id
                   AND r.concurrency_key = jobs.concurrency_key AND r.status = {RUNNING})"""
TYPE_RUNNING = f"(SELECT count(*) FROM jobs r WHERE r.type = jobs.type AND r.status = {RUNNING})"


def owner_cap(default: str) -> str:
    """The running cap of the owner of `jobs`' row: its key's own `max_running`, else `default` (the
    MAX_RUNNING_JOBS_PER_KEY parameter; 0: no cap). One primary-key lookup per row."""
    return f"coalesce((SELECT k.max_running FROM api_keys k WHERE k.id = jobs.owner_id), {default})"


def type_cap(caps: str) -> str:
    """The TYPE_CONCURRENCY cap of `jobs`' row's type ($n: a JSON object of caps, or NULL: none)."""
    return f"({caps}::jsonb ->> jobs.type)::int"


# Every running cap, exact across workers (`jp_below_caps`, migration 0013): the owner's (its key's
# max_running, else $5; 0: none), the job's own concurrency key (at most `concurrency_limit` of the owner's
# jobs with that key) and its type's (TYPE_CONCURRENCY, $6). A job no cap applies to never calls the
# function: no lock, no count (the OR is evaluated left to right). A held job stays waiting, spends no
# attempt, and is enqueued again when a run in the cap that held it ends (`requeue_after`) or by reconcile
# once every cap of it has room.
CLAIM = f"""
    WITH claimed AS (
        UPDATE jobs SET status = {RUNNING}, attempts = attempts + 1, claim_token = $2,
               worker_id = $3, lease_expires_at = now() + make_interval(secs => $4),
               started_at = coalesce(started_at, now()), error = NULL, progress = 0, updated_at = now()
        WHERE id = $1 AND status IN ({sql_list(sources(Event.CLAIM))}) AND scheduled_at <= now()
              AND NOT cancel_requested AND {NOT_PAUSED}
              AND (({owner_cap("$5")} = 0 AND concurrency_key IS NULL AND {type_cap("$6")} IS NULL)
                   OR jp_below_caps(owner_id, {owner_cap("$5")}, concurrency_key, concurrency_limit,
                                    type, {type_cap("$6")}))
        RETURNING id, attempts, max_attempts, type, payload, owner_id, traceparent
    ), run AS (
        -- started when the claim was granted, after any cap lock it waited for (not when the statement
        -- began): a run never appears to overlap the run whose end let it in
        INSERT INTO job_runs (job_id, attempt, claim_token, worker_id, started_at)
        SELECT id, attempts, $2, $3, clock_timestamp() FROM claimed
    )
    SELECT * FROM claimed
"""
# A group of deliveries fetched together, claimed in one statement (migration 0019: the uncapped jobs in
# one UPDATE ... FROM unnest, the capped ones one by one inside it, so that each cap stays exact).
CLAIM_GROUP = "SELECT * FROM jp_claim_group($1::uuid[], $2::uuid[], $3, $4, $5, $6::jsonb)"
# Heartbeats of any number of runs: each renews its lease only while its claim is live.
HEARTBEATS = f"""
    UPDATE jobs SET lease_expires_at = now() + make_interval(secs => $4), progress = h.progress,
           updated_at = now()
    FROM unnest($1::uuid[], $2::uuid[], $3::float8[]) AS h(id, token, progress)
    WHERE jobs.id = h.id AND jobs.claim_token = h.token AND jobs.status = {RUNNING}
    RETURNING h.token, jobs.cancel_requested
"""
# Every way a run ends (completion, retry, failure, abort, hand-back, a lapsed lease) is this one
# statement, for one run or many: each row applies its own lifecycle decision, fenced by its token.
END_RUNS = f"""
    WITH ended AS (
        SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::int[], $5::jsonb[], $6::jsonb[],
                             $7::text[], $8::float8[], $9::text[])
            AS e(id, token, status, refund, result, result_file, error, retry_in, outcome)
    ), j AS (
        UPDATE jobs SET status = e.status, attempts = jobs.attempts - e.refund, result = e.result,
               result_file = e.result_file, error = e.error,
               progress = CASE WHEN e.status = '{JobStatus.COMPLETED.value}' THEN 1 ELSE jobs.progress END,
               scheduled_at = CASE WHEN e.retry_in IS NULL THEN jobs.scheduled_at
                                   ELSE now() + make_interval(secs => e.retry_in) END,
               finished_at = CASE WHEN e.status IN ({TERMINAL}) THEN now() END,
               claim_token = NULL, worker_id = NULL, lease_expires_at = NULL, updated_at = now()
        FROM ended e
        WHERE jobs.id = e.id AND jobs.claim_token = e.token AND jobs.status = {RUNNING}
        RETURNING jobs.id, jobs.owner_id, jobs.status, jobs.attempts, jobs.scheduled_at, jobs.priority,
                  e.token, e.outcome, jobs.scheduled_at <= now() AS due_now,
                  {owner_cap("$10")} AS owner_cap,
                  -- the statement's snapshot: the owner's running jobs, this one included (capped only)
                  CASE WHEN {owner_cap("$10")} > 0 THEN {OWNER_RUNNING} ELSE 0 END AS owner_running,
                  jobs.concurrency_key, jobs.concurrency_limit,
                  CASE WHEN jobs.concurrency_key IS NOT NULL THEN {KEY_RUNNING} ELSE 0 END AS key_running,
                  jobs.type, {type_cap("$11")} AS type_cap,
                  CASE WHEN {type_cap("$11")} IS NOT NULL THEN {TYPE_RUNNING} ELSE 0 END AS type_running,
                  -- a completed parent's children may have become pending (trigger jp_on_parent_end)
                  EXISTS (SELECT 1 FROM job_dependencies d WHERE d.parent_id = jobs.id) AS has_children
    ), runs AS (
        UPDATE job_runs SET ended_at = now(), outcome = j.outcome FROM j WHERE job_runs.claim_token = j.token
    )
    SELECT id, token, owner_id, status, attempts, scheduled_at, priority, due_now, owner_cap, owner_running,
           concurrency_key, concurrency_limit, key_running, type, type_cap, type_running, has_children FROM j
"""
LAPSED = f"""
    SELECT id, claim_token, attempts, max_attempts, cancel_requested FROM jobs
    WHERE status = {RUNNING} AND lease_expires_at < now()
    ORDER BY lease_expires_at LIMIT $1 FOR UPDATE SKIP LOCKED
"""
# Cancel and requeue, for one job or a batch: a client's transition, applied only to the jobs still in
# the status the lifecycle decided from ($3); the service re-reads and decides again if one moved.
CANCEL = """
    UPDATE jobs SET status = $4, cancel_requested = true, updated_at = now(),
           error = coalesce($5, error), finished_at = CASE WHEN $6 THEN now() ELSE finished_at END
    WHERE id = ANY($1::uuid[]) AND owner_id = $2 AND status = $3
    RETURNING *
"""
REQUEUE = """
    UPDATE jobs SET status = $4, attempts = 0, error = NULL, result = NULL, result_file = NULL,
           progress = 0, cancel_requested = false, finished_at = NULL, started_at = NULL,
           scheduled_at = now(), updated_at = now()
    WHERE id = ANY($1::uuid[]) AND owner_id = $2 AND status = $3
    RETURNING *
"""
# Bulk actions walk the matching jobs a batch at a time along ix_jobs_owner_created (short statements).
NEXT_IDS = f"""
    SELECT id, created_at FROM jobs WHERE {FILTERED} AND (created_at, id) > ($11, $12)
    ORDER BY created_at, id LIMIT $13
"""
# The dashboard's failures page: failed jobs of the last days grouped by error (ix_jobs_terminal_finished).
FAILURE_GROUPS = f"""
    SELECT type, error, count(*) AS jobs, max(finished_at) AS last_seen FROM jobs
    WHERE ($1::uuid IS NULL OR owner_id = $1) AND status = '{JobStatus.FAILED.value}'
      AND finished_at > now() - make_interval(secs => $2)
    GROUP BY type, error ORDER BY jobs DESC, last_seen DESC LIMIT $3
"""
DUE_WAITING = f"""
    SELECT {DELIVERY_COLUMNS} FROM jobs
    WHERE status IN ({WAITING}) AND NOT cancel_requested
      AND updated_at < now() - make_interval(secs => $1)
      AND scheduled_at < now() + make_interval(secs => $3)
      AND ({owner_cap("$4")} = 0 OR {OWNER_RUNNING} < {owner_cap("$4")}) AND {NOT_PAUSED}
      AND (concurrency_key IS NULL OR {KEY_RUNNING} < concurrency_limit)
      AND ({type_cap("$5")} IS NULL OR {TYPE_RUNNING} < {type_cap("$5")})
    ORDER BY scheduled_at LIMIT $2
"""
# The next due jobs of a cap whose ended runs freed slots: the owner's, the owner's with one concurrency
# key (ix_jobs_concurrency_waiting), a type's (along ix_jobs_waiting_due).
DUE_NOW = f"status IN ({WAITING}) AND scheduled_at <= now() AND NOT cancel_requested AND {NOT_PAUSED}"
PROMOTE = f"""
    SELECT {DELIVERY_COLUMNS} FROM jobs WHERE owner_id = $1 AND {DUE_NOW}
    ORDER BY scheduled_at, id LIMIT $2
"""
PROMOTE_KEY = f"""
    SELECT {DELIVERY_COLUMNS} FROM jobs WHERE owner_id = $1 AND concurrency_key = $2 AND {DUE_NOW}
    ORDER BY scheduled_at, id LIMIT $3
"""
PROMOTE_TYPE = f"""
    SELECT {DELIVERY_COLUMNS} FROM jobs WHERE type = $1 AND {DUE_NOW}
    ORDER BY scheduled_at, id LIMIT $2
"""
# A resumed type's waiting jobs, a batch at a time along ix_jobs_waiting_due (within the queue horizon).
WAITING_OF_TYPE = f"""
    SELECT {DELIVERY_COLUMNS} FROM jobs
    WHERE type = $1 AND status IN ({WAITING}) AND NOT cancel_requested
      AND scheduled_at < now() + make_interval(secs => $2) AND (scheduled_at, id) > ($3, $4)
    ORDER BY scheduled_at, id LIMIT $5
"""
# Bounded: counting stops at the limit, so a key far past it costs no more than one at it. Blocked jobs
# count as waiting (each along its partial index): a chain of them is work the key has queued all the same.
USAGE = f"""
    SELECT (SELECT count(*) FROM (SELECT 1 FROM jobs WHERE owner_id = $1 AND status IN ({WAITING})
                                  LIMIT $2) w)
           + (SELECT count(*) FROM (SELECT 1 FROM jobs WHERE owner_id = $1 AND status = {BLOCKED}
                                    LIMIT $2) b) AS waiting,
           (SELECT coalesce(sum((result_file->>'size_bytes')::bigint), 0) FROM jobs
            WHERE owner_id = $1 AND result_file IS NOT NULL)::bigint AS result_bytes
"""
LIVE_COUNTS = f"""
    SELECT status, count(*) FROM jobs WHERE status IN ({WAITING}) GROUP BY status
    UNION ALL SELECT {RUNNING}, count(*) FROM jobs WHERE status = {RUNNING}
"""
OLDEST_DUE_WAIT = f"""
    SELECT coalesce(extract(epoch FROM now() - min(scheduled_at)), 0)::float8 FROM jobs
    WHERE status IN ({WAITING}) AND scheduled_at <= now()
"""
EXPIRED_TERMINAL = f"""
    SELECT id, result_file FROM jobs
    WHERE status IN ({TERMINAL}) AND finished_at < now() - make_interval(secs => $1)
    ORDER BY finished_at LIMIT $2
"""
# The condition is checked again at delete time: a job retried since it was selected stays.
DELETE_EXPIRED = f"""
    DELETE FROM jobs WHERE id = ANY($1::uuid[])
      AND status IN ({TERMINAL}) AND finished_at < now() - make_interval(secs => $2)
    RETURNING id
"""
EXISTING = "SELECT id FROM jobs WHERE id = ANY($1::uuid[])"
# What the database decides for a new job: the time of the insert, the due time (that time unless one was
# given), and finished_at for a job created already cancelled. The rest of a new row is what was sent, or
# a column's default (`new_job_view`).
NEW_JOB_STAMPS = ("id", "created_at", "scheduled_at", "updated_at", "finished_at")
# Many jobs in one statement (a batch, jobs with dependencies, or the plain submissions of any owners
# that arrived together), each with its own first status. The rows travel as one JSON array (`_rows_json`)
# rather than a parameter array per column: asyncpg checks every element of an array parameter against
# the collection ABCs, which for 16 columns of a 1,000-job batch was a fifth of the request (measured).
# Only what the database decides comes back (its clock, and finished_at for a job born cancelled): the
# rest of each record is what was sent, so nothing is read back, least of all the payload (decoding
# `RETURNING *` was a sixth of a batch request).
INSERT_MANY = f"""
    INSERT INTO jobs (id, owner_id, type, name, payload, max_attempts, scheduled_at, tags, priority,
                      concurrency_key, concurrency_limit, status, error, finished_at, batch_id, depends_on,
                      webhook_url, traceparent)
    SELECT r.id, r.owner_id, r.type, r.name, r.payload, r.max_attempts, coalesce(r.scheduled_at, now()),
           ARRAY(SELECT jsonb_array_elements_text(r.tags)), r.priority, r.concurrency_key,
           r.concurrency_limit, coalesce(r.status, '{JobStatus.PENDING.value}'), r.error,
           CASE WHEN r.status IN ({TERMINAL}) THEN now() END, $1,
           ARRAY(SELECT jsonb_array_elements_text(r.depends_on)::uuid), r.webhook_url, r.traceparent
    FROM jsonb_to_recordset($2::text::jsonb)
        AS r(id uuid, owner_id uuid, type text, name text, payload jsonb, max_attempts int,
             scheduled_at timestamptz, tags jsonb, priority int, concurrency_key text, concurrency_limit int,
             status text, error text, depends_on jsonb, webhook_url text, traceparent text)
    RETURNING {", ".join(NEW_JOB_STAMPS)}
"""
INSERT_DEPENDENCIES = """
    INSERT INTO job_dependencies (child_id, parent_id) SELECT * FROM unnest($1::uuid[], $2::uuid[])
"""
# The parents a submission names, locked against a status change until it commits: a parent cannot end
# between the read of its status and the commit of the child's dependency rows (which its end would miss).
# In id order, so two submissions (or a submission and a multi-row run end) take the locks in one order.
LOCK_PARENTS = (
    "SELECT id, status FROM jobs WHERE id = ANY($1::uuid[]) AND owner_id = $2 ORDER BY id FOR SHARE"
)
# Children that the end of these parents made pending (their delivery goes on the queue after commit).
PROMOTED_CHILDREN = f"""
    SELECT {DELIVERY_COLUMNS} FROM jobs
    WHERE id IN (SELECT child_id FROM job_dependencies WHERE parent_id = ANY($1::uuid[]))
      AND status = '{JobStatus.PENDING.value}' AND attempts = 0
"""
PARENTS_OF = """
    SELECT p.id, p.type, p.name, p.status, p.result, p.result_file FROM jobs c
    JOIN LATERAL unnest(c.depends_on) WITH ORDINALITY AS d(parent_id, n) ON true
    JOIN jobs p ON p.id = d.parent_id
    WHERE c.id = $1 ORDER BY d.n
"""
RUNS_OF = "SELECT * FROM job_runs WHERE job_id = $1 ORDER BY started_at, id"


def _insert_args(
    v: dict[str, Any], schedule_id: uuid.UUID | None, fire_at: datetime | None
) -> tuple[Any, ...]:
    """The values of `INSERT_FIRED`, in its column order."""
    job = (v["id"], v["owner_id"], v["type"], v["name"], v["payload"], v["max_attempts"])
    dispatch = (v.get("priority", 0), v.get("concurrency_key"), v.get("concurrency_limit"))
    fired = (schedule_id, fire_at)
    extra = (v.get("webhook_url"), v.get("traceparent"))
    return (*job, v.get("scheduled_at"), v.get("tags") or [], *dispatch, *fired, *extra)


def _rows_json(rows: Sequence[Mapping[str, Any]]) -> str:
    """`INSERT_MANY`'s rows as one JSON array, serialized as they are by pydantic-core (ids and times as
    text, the payload as the JSON it is; keys the statement does not name are ignored, and one it names
    that a row lacks is NULL there: pending, no error, no parents). A NaN would come out as `NaN`, which
    PostgreSQL refuses as JSON, as the pool's jsonb codec refuses it (validation lets none through)."""
    return to_json(rows).decode()


def _end_row(job_id: uuid.UUID, token: uuid.UUID, end: RunEnd) -> tuple[Any, ...]:
    """One run's values in the column order of `END_RUNS`."""
    status, refund, outcome = end.status.value, int(end.refund_attempt), end.outcome.value
    return job_id, token, status, refund, end.result, end.result_file, end.error, end.retry_in_s, outcome


def _type_caps(caps: Mapping[str, int] | None) -> dict[str, int] | None:
    """TYPE_CONCURRENCY as the statements' jsonb parameter (the pool's codec encodes it); None when no
    type is capped."""
    return dict(caps) if caps else None


def _ended(row: asyncpg.Record) -> EndedRun:
    """The run end, and which caps it was at (the statement's snapshot still counts it as running): each
    such cap has a slot that a job it held back may take now."""
    owner_full = row["owner_cap"] > 0 and row["owner_running"] >= row["owner_cap"]
    key_full = row["concurrency_key"] is not None and row["key_running"] >= row["concurrency_limit"]
    type_full = row["type_cap"] is not None and row["type_running"] >= row["type_cap"]
    return EndedRun(
        row["id"],
        JobStatus(row["status"]),
        row["attempts"],
        row["scheduled_at"],
        row["owner_id"],
        row["priority"],
        owner_full,
        row["concurrency_key"] if key_full else None,
        row["type"] if type_full else None,
        row["due_now"],
        row["token"],
        row["has_children"],
    )


class JobRepository:
    """The job SQL, on a pool (each statement on a borrowed connection) or on one connection."""

    def __init__(self, db: Executor) -> None:
        self.db = db

    # --- the API's reads and writes --------------------------------------------------------------

    async def insert_fired(
        self, values: dict[str, Any], schedule_id: uuid.UUID, fire_at: datetime
    ) -> JobRecord | None:
        """Insert the job of one fire of a schedule; None if that fire already made its job."""
        row = await self.db.fetchrow(INSERT_FIRED, *_insert_args(values, schedule_id, fire_at))
        return None if row is None else JobRecord.from_row(row)

    async def insert_many(
        self, rows: Sequence[Mapping[str, Any]], batch_id: uuid.UUID | None = None
    ) -> list[Mapping[str, Any]]:
        """Insert jobs with one statement (`new_job` values, plus `status` (as text: pydantic-core
        serializes an enum 10x slower than a str), `error` and `depends_on` where they are not a plain
        pending job's); what the database set for each (`NEW_JOB_STAMPS`), in the order of `rows`."""
        inserted = await self.db.fetch(INSERT_MANY, batch_id, _rows_json(rows))
        stamps: dict[uuid.UUID, Mapping[str, Any]] = {row["id"]: row for row in inserted}
        return [stamps[r["id"]] for r in rows]

    async def insert_dependencies(self, pairs: Sequence[tuple[uuid.UUID, uuid.UUID]]) -> None:
        """Record (child, parent) pairs."""
        if pairs:
            await self.db.execute(INSERT_DEPENDENCIES, [c for c, _ in pairs], [p for _, p in pairs])

    async def lock_parents(self, owner_id: uuid.UUID, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, JobStatus]:
        """The statuses of the owner's jobs among `ids`, share-locked until the transaction ends (needs
        one)."""
        rows = await self.db.fetch(LOCK_PARENTS, list(ids), owner_id)
        return {r["id"]: JobStatus(r["status"]) for r in rows}

    async def promoted_children(self, parent_ids: Sequence[uuid.UUID]) -> list[asyncpg.Record]:
        """Delivery rows of the never-run pending children of these parents."""
        rows: list[asyncpg.Record] = await self.db.fetch(PROMOTED_CHILDREN, list(parent_ids))
        return rows

    async def parents_of(self, job_id: uuid.UUID) -> list[asyncpg.Record]:
        """The job's parents in `depends_on` order: id, type, name, status, result, result_file."""
        rows: list[asyncpg.Record] = await self.db.fetch(PARENTS_OF, job_id)
        return rows

    async def get_owned(self, owner_id: uuid.UUID, job_id: uuid.UUID) -> JobRecord | None:
        """The job if it exists and belongs to the owner."""
        row = await self.db.fetchrow(GET_OWNED, job_id, owner_id)
        return None if row is None else JobRecord.from_row(row)

    async def get(self, job_id: uuid.UUID) -> JobRecord | None:
        """The job, whoever owns it (an admin's lookup)."""
        row = await self.db.fetchrow(GET, job_id)
        return None if row is None else JobRecord.from_row(row)

    async def get_many(self, ids: Sequence[uuid.UUID]) -> list[JobRecord]:
        """These jobs (whoever owns them; callers check), in no particular order."""
        return [JobRecord.from_row(r) for r in await self.db.fetch(GET_MANY, list(ids))]

    async def list_owned(
        self,
        owner_id: uuid.UUID | None,
        filters: JobFilters,
        limit: int,
        before: tuple[datetime, uuid.UUID] | None,
    ) -> list[JobRecord]:
        """A page of the owner's jobs (every owner's if None), newest first, strictly older than `before`."""
        created, job_id = before if before is not None else (None, None)
        statement = LIST if owner_id is not None else LIST_ANY_OWNER
        rows = await self.db.fetch(statement, *filters.params(owner_id), created, job_id, limit)
        return [JobRecord.from_row(r) for r in rows]

    async def count_owned(self, owner_id: uuid.UUID, filters: JobFilters) -> int:
        """How many of the owner's jobs match."""
        return int(await self.db.fetchval(COUNT, *filters.params(owner_id)))

    async def stream_owned(
        self, owner_id: uuid.UUID, filters: JobFilters, batch: int = 2000
    ) -> AsyncIterator[tuple[Any, ...]]:
        """Every matching job (export columns), oldest first, through a server-side cursor.

        Needs a connection (not the pool): the cursor lives in a transaction on it.
        """
        conn: asyncpg.Connection = self.db
        async with conn.transaction():
            async for row in conn.cursor(STREAM, *filters.params(owner_id), prefetch=batch):
                yield tuple(row.values())

    async def cancel(
        self,
        owner_id: uuid.UUID,
        ids: Sequence[uuid.UUID],
        status: JobStatus,
        target: JobStatus,
        error: str | None,
    ) -> list[JobRecord]:
        """Cancel the owner's jobs among `ids` that are still `status` (decided from it: `target`)."""
        args = (list(ids), owner_id, status.value, target.value, error, target.is_terminal)
        return [JobRecord.from_row(r) for r in await self.db.fetch(CANCEL, *args)]

    async def requeue(
        self, owner_id: uuid.UUID, ids: Sequence[uuid.UUID], status: JobStatus, target: JobStatus
    ) -> list[JobRecord]:
        """Run the owner's jobs among `ids` that are still `status` again, with fresh attempts."""
        args = (list(ids), owner_id, status.value, target.value)
        return [JobRecord.from_row(r) for r in await self.db.fetch(REQUEUE, *args)]

    async def next_matching(
        self, owner_id: uuid.UUID, filters: JobFilters, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[tuple[datetime, uuid.UUID]]:
        """The next `limit` matching jobs after `after`, oldest first, as (created_at, id)."""
        created, job_id = after if after is not None else KEYSET_START
        rows = await self.db.fetch(NEXT_IDS, *filters.params(owner_id), created, job_id, limit)
        return [(r["created_at"], r["id"]) for r in rows]

    async def failure_groups(
        self, owner_id: uuid.UUID | None, within_s: float, limit: int
    ) -> list[FailureGroup]:
        """Failed jobs that ended within `within_s` seconds, grouped by type and error, biggest first."""
        rows = await self.db.fetch(FAILURE_GROUPS, owner_id, float(within_s), limit)
        return [FailureGroup(**dict(r.items())) for r in rows]

    async def runs_of(self, job_id: uuid.UUID) -> list[RunRecord]:
        """Every claim of a job, in order."""
        return [RunRecord.from_row(r) for r in await self.db.fetch(RUNS_OF, job_id)]

    # --- the worker's run ------------------------------------------------------------------------

    async def claim(
        self,
        job_id: uuid.UUID,
        worker_id: str,
        lease_s: float,
        owner_cap: int,
        type_caps: Mapping[str, int] | None = None,
    ) -> Claim | None:
        """Take a waiting, due job for one run; None if another delivery or worker got it first, or a cap
        of it is full: its owner already runs as many jobs as its key's max_running, else `owner_cap` (0: no
        cap); as many of the owner's jobs with its concurrency key as its concurrency_limit; or as many jobs
        of its type as `type_caps` (TYPE_CONCURRENCY) allows."""
        token = uuid.uuid4()
        args = (job_id, token, worker_id, float(lease_s), owner_cap, _type_caps(type_caps))
        row = await self.db.fetchrow(CLAIM, *args)
        if row is None:
            return None
        attempt, max_attempts = row["attempts"], row["max_attempts"]
        job = (row["id"], token, attempt, max_attempts, row["type"], row["payload"], row["owner_id"])
        return Claim(*job, row["traceparent"])

    async def claim_group(
        self,
        job_ids: Sequence[uuid.UUID],
        worker_id: str,
        lease_s: float,
        owner_cap: int,
        type_caps: Mapping[str, int] | None = None,
    ) -> tuple[dict[uuid.UUID, Claim], list[uuid.UUID]]:
        """Claim several deliveries' jobs in one statement, as `claim` would each: (the claims by job id,
        the capped jobs whose cap lock another claim held: claim those with `claim`, which waits for it).
        A job neither claimed nor busy was not claimable (or another delivery in the group took it)."""
        tokens = [uuid.uuid4() for _ in job_ids]
        args = (list(job_ids), tokens, worker_id, float(lease_s), owner_cap, _type_caps(type_caps))
        claims: dict[uuid.UUID, Claim] = {}
        busy: list[uuid.UUID] = []
        for row in await self.db.fetch(CLAIM_GROUP, *args):
            if row["busy"]:
                busy.append(row["id"])
                continue
            job = (row["id"], row["claim_token"], row["attempts"], row["max_attempts"], row["type"])
            claims[row["id"]] = Claim(*job, row["payload"], row["owner_id"], row["traceparent"])
        return claims, busy

    async def heartbeats(self, beats: Sequence[tuple[Claim, float]], lease_s: float) -> dict[uuid.UUID, bool]:
        """Renew the leases of runs (claim, progress) and store their progress: cancel_requested by claim
        token, for the claims still live (a lost claim is absent)."""
        ids = [claim.job_id for claim, _ in beats]
        tokens = [claim.token for claim, _ in beats]
        progress = [float(p) for _, p in beats]
        rows = await self.db.fetch(HEARTBEATS, ids, tokens, progress, float(lease_s))
        return {row["token"]: bool(row["cancel_requested"]) for row in rows}

    async def end_runs(
        self,
        ends: Sequence[tuple[uuid.UUID, uuid.UUID, RunEnd]],
        owner_cap: int,
        type_caps: Mapping[str, int] | None = None,
    ) -> list[EndedRun]:
        """Record how runs ended, each `(job id, claim token, decision)`; only live claims are applied."""
        values = [_end_row(job_id, token, end) for job_id, token, end in ends]
        columns = [list(column) for column in zip(*values, strict=True)]
        rows = await self.db.fetch(END_RUNS, *columns, owner_cap, _type_caps(type_caps))
        return [_ended(r) for r in rows]

    # --- reconcile and purge ---------------------------------------------------------------------

    async def lock_lapsed(self, limit: int) -> list[asyncpg.Record]:
        """Running jobs whose lease lapsed, locked for this transaction (others skip them)."""
        rows: list[asyncpg.Record] = await self.db.fetch(LAPSED, limit)
        return rows

    async def due_waiting(
        self,
        older_than_s: float,
        limit: int,
        horizon_s: float,
        owner_cap: int,
        type_caps: Mapping[str, int] | None = None,
    ) -> list[asyncpg.Record]:
        """Waiting jobs untouched for a while, due within the horizon, every cap of which has room (owner,
        concurrency key, type): to enqueue if Redis lacks them. A job held by a full cap is left to the
        promotion when a run of that cap ends; enqueuing it here would only be refused again, every pass."""
        args = (float(older_than_s), limit, float(horizon_s), owner_cap, _type_caps(type_caps))
        rows: list[asyncpg.Record] = await self.db.fetch(DUE_WAITING, *args)
        return rows

    async def waiting_of_type(
        self, job_type: str, horizon_s: float, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[asyncpg.Record]:
        """The type's next `limit` waiting jobs after `after` (scheduled_at, id), due within the horizon."""
        due, job_id = after if after is not None else KEYSET_START
        rows: list[asyncpg.Record] = await self.db.fetch(
            WAITING_OF_TYPE, job_type, float(horizon_s), due, job_id, limit
        )
        return rows

    async def next_due_of(self, owner_id: uuid.UUID, count: int) -> list[asyncpg.Record]:
        """The owner's `count` longest-waiting due jobs."""
        rows: list[asyncpg.Record] = await self.db.fetch(PROMOTE, owner_id, count)
        return rows

    async def next_due_of_key(self, owner_id: uuid.UUID, key: str, count: int) -> list[asyncpg.Record]:
        """The `count` longest-waiting due jobs of the owner with this concurrency key."""
        rows: list[asyncpg.Record] = await self.db.fetch(PROMOTE_KEY, owner_id, key, count)
        return rows

    async def next_due_of_type(self, job_type: str, count: int) -> list[asyncpg.Record]:
        """The `count` longest-waiting due jobs of this type (any owner)."""
        rows: list[asyncpg.Record] = await self.db.fetch(PROMOTE_TYPE, job_type, count)
        return rows

    async def usage(self, owner_id: uuid.UUID, waiting_limit: int) -> tuple[int, int]:
        """(waiting jobs counted up to `waiting_limit`, bytes of result files kept) for one key."""
        row = await self.db.fetchrow(USAGE, owner_id, waiting_limit)
        return int(row["waiting"]), int(row["result_bytes"])

    async def live_counts(self) -> dict[str, int]:
        """How many jobs wait or run right now (the partial indexes keep this cheap on a large table)."""
        return {row[0]: int(row[1]) for row in await self.db.fetch(LIVE_COUNTS)}

    async def oldest_due_wait_seconds(self) -> float:
        """How long the longest-waiting due job has been waiting (0 when none waits)."""
        return float(await self.db.fetchval(OLDEST_DUE_WAIT))

    async def expired_terminal(self, retention_s: float, limit: int) -> list[asyncpg.Record]:
        """A batch of terminal jobs that finished before the retention window."""
        rows: list[asyncpg.Record] = await self.db.fetch(EXPIRED_TERMINAL, float(retention_s), limit)
        return rows

    async def delete_expired(self, ids: Sequence[uuid.UUID], retention_s: float) -> list[uuid.UUID]:
        """Delete these jobs if they are still terminal and expired; returns the ids that went."""
        rows = await self.db.fetch(DELETE_EXPIRED, list(ids), float(retention_s))
        return [r["id"] for r in rows]

    async def existing_ids(self, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """Which of these job ids still exist."""
        return {r["id"] for r in await self.db.fetch(EXISTING, list(ids))}
