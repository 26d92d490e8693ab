"""The queue adapter: everything that knows arq and Redis lives here, and nowhere else.

PostgreSQL is the truth; Redis only carries "run this job" messages. A failed enqueue is repaired by
reconcile, so enqueue and discard never raise. The queue's wire format (arq's key prefixes, message
encoding, in-progress markers) is used only by this module; arq is pinned to the tested range.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from arq import func
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import expires_extra_ms, in_progress_key_prefix, job_key_prefix, result_key_prefix

from backend.domain.records import Delivery

log = logging.getLogger(__name__)

RUN_JOB = "run_job"
# Queue messages are JSON, never pickle: whoever can write to Redis cannot make a worker run code.
SERIALIZER = "json"


def dump_message(data: dict[str, Any]) -> bytes:
    """arq's `job_serializer`: a queue message as JSON."""
    return json.dumps(data, separators=(",", ":")).encode()


def load_message(raw: bytes) -> dict[str, Any]:
    """arq's `job_deserializer`: only JSON objects are messages."""
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("a queue message must be a JSON object")
    return data


TIMEOUT_MARGIN_S = 60
HEALTH_CHECK_INTERVAL_S = 5

# Queue order. Every due delivery sits in arq's queue with a score in the past (so any idle worker takes
# it at once), and the score orders them: `VIRTUAL_BASE_MS + start - priority * PRIORITY_STEP`, where
# `start` is the owner's start tag in start-time fair queuing: max(the queue's virtual time, the owner's
# last finish tag), each delivery costing one unit. A key's backlog of 10,000 thus spreads over 10,000
# units, and another key's new job starts at the virtual time of the queue's head: right behind the jobs
# being served, not behind the backlog. A priority level is worth PRIORITY_STEP deliveries of other work;
# because the virtual time moves on as work is served, a low priority is passed by at most
# 20 * PRIORITY_STEP deliveries: delayed, never starved. Deliveries not yet due wait in a separate sorted
# set (by due time, with their owner and priority) and a mover (`promote_due`, every worker) places them
# in the queue by the same rule once due. All of it is one Lua script at a time, so it is atomic in Redis.
VIRTUAL_BASE_MS = 1_000_000_000_000  # 2001-09-09: every virtual score is long past, so always due
VIRTUAL_SPAN = 500_000_000_000  # a score above base + span is a wall-clock time, not ours
PRIORITY_STEP = 1000
SHARED_LANE = "-"  # the fair-share lane of deliveries with no owner (legacy ones, from before this order)

WAKE_TOKENS_MAX = 16  # idle workers one enqueue can wake
WAKE_GATE_MS = 10  # a stream of single enqueues wakes a worker at most this often

PLACE_LUA = f"""
-- The queue's virtual time, its head's score and the finish tags of the owners placed so far, read once
-- per script call and written back once by place_flush (not read and written for every delivery: a batch
-- of 1,000 is one call, and seven commands a delivery were a fifth of a core under POST /batches). Exact:
-- nothing else runs inside the call, and the head can only move to a delivery placed here.
local placing = {{loaded = false, tags = {{}}}}
local function place(queue, vfinish, vtime, member, owner, priority)
  local base, span, step = {VIRTUAL_BASE_MS}, {VIRTUAL_SPAN}, {PRIORITY_STEP}
  local p = placing
  if not p.loaded then
    p.v = tonumber(redis.call('GET', vtime) or '0')
    p.v0 = p.v
    local head = redis.call('ZRANGE', queue, 0, 0, 'WITHSCORES')
    p.head = head[2] and tonumber(head[2]) or nil
    p.loaded = true
  end
  if p.head then
    local h = p.head - base
    if h > p.v and h < span then p.v = h end
  end
  local tag = p.tags[owner]
  if tag == nil then tag = tonumber(redis.call('HGET', vfinish, owner) or '0') end
  local start = math.max(p.v, tag)
  p.tags[owner] = start + 1
  local score = base + start - priority * step
  redis.call('ZADD', queue, score, member)
  if p.head == nil or score < p.head then p.head = score end
end
local function place_flush(vfinish, vtime)
  local p = placing
  if not p.loaded then return end
  if p.v ~= p.v0 then redis.call('SET', vtime, p.v) end
  for owner, tag in pairs(p.tags) do redis.call('HSET', vfinish, owner, tag) end
end
-- Idle workers sleep in BLPOP on the queue's wake list: a token per delivery placed wakes one worker each,
-- up to {WAKE_TOKENS_MAX} (a burst wakes that many, one enqueue wakes one, not all of them). A stream of
-- single enqueues pushes at most one token per {WAKE_GATE_MS} ms, so each wake-up finds several deliveries.
-- KEYS: the gate key, the wake list.
local function wake(gate, list, n)
  if n > 1 or redis.call('SET', gate, '1', 'PX', {WAKE_GATE_MS}, 'NX') then
    for _ = 1, math.min(n, {WAKE_TOKENS_MAX}) do redis.call('LPUSH', list, '1') end
    redis.call('LTRIM', list, 0, {WAKE_TOKENS_MAX - 1})
  end
end
"""

# The same keys arq's `enqueue_job` writes (the job key with the message `serialize_job` would make, and
# the queue entry) for any number of deliveries, in one atomic round trip, skipping those that exist. KEYS:
# queue, delayed, delayed meta, finish tags, virtual time, wake gate, wake list. ARGV: now ms, then one line
# per delivery, "<job id> <attempts> <due ms> <owner> <priority>": one argument, and the message built here,
# because building and packing six arguments a delivery was a quarter of a 1,000-job POST /batches.
# (The delivery id is "<job id>:<attempts>", and the job and result keys are named from it, as arq names
# them.)
ENQUEUE_LUA = (
    PLACE_LUA
    + f"""
local now, added, placed = tonumber(ARGV[1]), 0, 0
for job_id, attempts, due, owner, priority in string.gmatch(ARGV[2], '(%S+) (%S+) (%S+) (%S+) (%S+)') do
  local id, due = job_id .. ':' .. attempts, tonumber(due)
  local job = '{job_key_prefix}' .. id
  if redis.call('EXISTS', job, '{result_key_prefix}' .. id) == 0 then
    local message = '{{"t":null,"f":"{RUN_JOB}","a":["' .. job_id .. '"],"k":{{}},"et":' .. ARGV[1] .. '}}'
    redis.call('SET', job, message, 'PX', due - now + {expires_extra_ms})
    if due > now then
      redis.call('ZADD', KEYS[2], due, id)
      redis.call('HSET', KEYS[3], id, owner .. '|' .. priority)
    else
      place(KEYS[1], KEYS[4], KEYS[5], id, owner, tonumber(priority))
      placed = placed + 1
    end
    added = added + 1
  end
end
place_flush(KEYS[4], KEYS[5])
if placed > 0 then wake(KEYS[6], KEYS[7], placed) end
return added
"""
)
ENQUEUE_CHUNK = 1000  # deliveries per script call: a bounded time inside Redis

# Move deliveries that came due from the delayed set into the queue. KEYS: delayed, delayed meta,
# queue, finish tags, virtual time, wake gate, wake list. ARGV: now ms, most to move.
PROMOTE_DUE_LUA = (
    PLACE_LUA
    + f"""
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  local meta = redis.call('HGET', KEYS[2], member) or ''
  redis.call('ZREM', KEYS[1], member)
  redis.call('HDEL', KEYS[2], member)
  local owner, priority = string.match(meta, '^(.*)|(-?%d+)$')
  place(KEYS[3], KEYS[4], KEYS[5], member, owner or '{SHARED_LANE}', tonumber(priority or '0'))
end
-- Deliveries queued by a version before this order (wall-clock scores, above the virtual band) would sort
-- behind any backlog: place them in the band, in the shared lane.
local legacy = redis.call('ZRANGEBYSCORE', KEYS[3], '({VIRTUAL_BASE_MS + VIRTUAL_SPAN}', '+inf', 'LIMIT', 0,
                          tonumber(ARGV[2]))
for _, member in ipairs(legacy) do
  redis.call('ZREM', KEYS[3], member)
  place(KEYS[3], KEYS[4], KEYS[5], member, '{SHARED_LANE}', 0)
end
place_flush(KEYS[4], KEYS[5])
if #due + #legacy > 0 then wake(KEYS[6], KEYS[7], #due + #legacy) end
return #due + #legacy
"""
)
PROMOTE_BATCH = 1000


def delivery_id(job_id: uuid.UUID, attempts: int) -> str:
    """The arq job id for the next run of a job: unique per attempt, so a retry never collides."""
    return f"{job_id}:{attempts}"


def wake_list(queue_name: str) -> str:
    """The list whose tokens wake idle workers of this queue (one token, one worker)."""
    return f"{queue_name}:wake"


def in_progress_ttl_s(lease_seconds: float) -> float:
    """How long arq's in-progress marker of a picked-up delivery lives.

    arq would keep it for the longest function timeout + 10 s (an hour here), so a worker killed
    between pick-up and claim would strand the delivery that long. Our lease protects a claimed job
    instead, so the marker only has to cover pick-up → claim: after it lapses another worker re-picks
    the delivery, and the claim makes that a no-op if the job runs.
    """
    return max(2 * lease_seconds, 5.0)


async def connect(url: str) -> ArqRedis:
    """A Redis connection pool for the queue."""
    return await create_pool(RedisSettings.from_dsn(url))


class Queue:
    """Pushes, drops and inspects deliveries of one queue."""

    def __init__(self, redis: ArqRedis, name: str, horizon_s: float, lease_s: float) -> None:
        self.redis = redis
        self.name = name
        self.delayed = f"{name}:delayed"  # not yet due, by due time (ms)
        self.delayed_meta = f"{name}:delayed:meta"  # delivery id -> "owner|priority"
        self.finish_tags = f"{name}:fair:finish"  # owner -> its last virtual finish tag
        self.virtual_time = f"{name}:fair:vtime"
        self.wake_keys = [f"{name}:wake:gate", wake_list(name)]
        self.horizon_ms = int(horizon_s * 1000)
        self.in_progress_ms = int(in_progress_ttl_s(lease_s) * 1000)
        self._enqueue_script = redis.register_script(ENQUEUE_LUA)
        self._promote_script = redis.register_script(PROMOTE_DUE_LUA)

    async def enqueue(self, delivery: Delivery) -> bool:
        """Enqueue one delivery; False if Redis failed (reconcile will retry), it is already queued, or
        it is due beyond the horizon (reconcile enqueues it when it comes within the horizon).

        The horizon bounds what Redis holds: a job scheduled for the year 9999 costs a row, not a key
        that lives for millennia.
        """
        return await self.enqueue_many([delivery]) == 1

    async def enqueue_many(self, deliveries: Sequence[Delivery]) -> int:
        """Enqueue deliveries with one script call per ENQUEUE_CHUNK (one round trip for a batch of 1,000);
        returns how many were added."""
        now_ms = int(time.time() * 1000)
        owners: dict[uuid.UUID | None, str] = {}
        lines = [line for d in deliveries if (line := self._enqueue_line(d, now_ms, owners))]
        if not lines:
            return 0
        keys = [
            self.name,
            self.delayed,
            self.delayed_meta,
            self.finish_tags,
            self.virtual_time,
            *self.wake_keys,
        ]
        added = 0
        try:
            for start in range(0, len(lines), ENQUEUE_CHUNK):
                chunk = "\n".join(lines[start : start + ENQUEUE_CHUNK])
                added += int(await self._enqueue_script(keys=keys, args=[now_ms, chunk]))
        except Exception as exc:  # any Redis failure: the rows are safe, reconcile re-enqueues them
            log.warning("enqueue failed", extra={"deliveries": len(lines), "error": type(exc).__name__})
        return added

    def _enqueue_line(self, d: Delivery, now_ms: int, owners: dict[uuid.UUID | None, str]) -> str:
        """The script's line for one delivery; "" if it is due beyond the horizon."""
        due_ms = max(now_ms, int(d.run_at.timestamp() * 1000)) if d.run_at else now_ms
        if due_ms - now_ms > self.horizon_ms:
            return ""
        if (owner := owners.get(d.owner_id)) is None:
            owner = owners[d.owner_id] = str(d.owner_id) if d.owner_id else SHARED_LANE
        return f"{d.job_id} {d.attempts} {due_ms} {owner} {d.priority}"

    async def promote_due(self) -> int:
        """Move deliveries that came due into the queue, in fair-share and priority order (every worker
        calls this a few times a second; it is one cheap read when nothing is due)."""
        keys = [
            self.delayed,
            self.delayed_meta,
            self.name,
            self.finish_tags,
            self.virtual_time,
            *self.wake_keys,
        ]
        moved = 0
        while True:
            now_ms = int(time.time() * 1000)
            batch = int(await self._promote_script(keys=keys, args=[now_ms, PROMOTE_BATCH]))
            moved += batch
            if batch < PROMOTE_BATCH:
                return moved

    async def discard(self, deliveries: Sequence[tuple[uuid.UUID, int]]) -> None:
        """Drop queued deliveries (job id, attempts) that are no longer wanted (their jobs were cancelled)."""
        if not deliveries:
            return
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                for job_id, attempts in deliveries:
                    arq_id = delivery_id(job_id, attempts)
                    pipe.zrem(self.name, arq_id)
                    pipe.zrem(self.delayed, arq_id)
                    pipe.hdel(self.delayed_meta, arq_id)
                    pipe.delete(job_key_prefix + arq_id)
                await pipe.execute()
        except Exception as exc:  # harmless if they stay: the claim refuses a cancelled job
            log.warning("discard failed", extra={"deliveries": len(deliveries), "error": type(exc).__name__})

    async def held(self, deliveries: Sequence[tuple[uuid.UUID, int]]) -> list[bool]:
        """For each (job id, attempts): is that delivery queued or in progress in Redis?"""
        if not deliveries:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id, attempts in deliveries:
                arq_id = delivery_id(job_id, attempts)
                pipe.exists(job_key_prefix + arq_id, in_progress_key_prefix + arq_id)
            found = await pipe.execute()
        return [bool(n) for n in found]

    async def keep_in_progress(self, delivery: str) -> None:
        """Extend a running delivery's in-progress marker, so no worker picks it up again while it runs.

        arq leaves a running delivery in the queue; once its marker lapsed, a poll (even this
        process's own) would start it a second time, and arq's bookkeeping of the first run breaks.
        """
        try:
            await self.redis.pexpire(in_progress_key_prefix + delivery, self.in_progress_ms)
        except Exception as exc:  # the claim still makes a second pick-up a no-op
            log.warning(
                "in-progress refresh failed", extra={"delivery": delivery, "error": type(exc).__name__}
            )

    async def depth(self) -> int:
        """Deliveries in the queue (due or deferred)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcard(self.name)
            pipe.zcard(self.delayed)
            due, later = await pipe.execute()
        return int(due) + int(later)

    async def ping(self) -> None:
        """Raise unless Redis answers."""
        await self.redis.ping()


@dataclass(frozen=True)
class WorkerSetup:
    """What a platform worker runs, independent of the queue library."""

    queue_name: str
    redis_url: str
    run_job: Callable[[dict[str, Any], str], Awaitable[None]]
    max_job_seconds: float
    on_startup: Callable[[dict[str, Any]], Awaitable[None]]
    on_shutdown: Callable[[dict[str, Any]], Awaitable[None]]
    concurrency: int
    poll_delay_s: float
    shutdown_grace_s: int


def worker_kwargs(setup: WorkerSetup) -> dict[str, Any]:
    """Everything `arq.Worker` needs, tuned for throughput."""
    timeout = setup.max_job_seconds + TIMEOUT_MARGIN_S
    return {
        "functions": [func(setup.run_job, name=RUN_JOB, timeout=timeout, max_tries=1000)],
        "on_startup": setup.on_startup,
        "on_shutdown": setup.on_shutdown,
        "redis_settings": RedisSettings.from_dsn(setup.redis_url),
        "queue_name": setup.queue_name,
        "max_jobs": setup.concurrency,
        "poll_delay": setup.poll_delay_s,
        # Our own retry policy decides; arq must neither keep results (they would block re-enqueue
        # under the same id) nor retry on its own.
        "keep_result": 0,
        "retry_jobs": False,
        "job_completion_wait": setup.shutdown_grace_s,
        "health_check_interval": HEALTH_CHECK_INTERVAL_S,
        "handle_signals": True,
        "job_serializer": dump_message,
        "job_deserializer": load_message,
    }


def run_worker_process(setup: WorkerSetup, lease_seconds: float) -> None:
    """Run a worker in the foreground until SIGINT/SIGTERM: our consumer (`backend.adapters.consumer`) on
    uvloop. `worker_kwargs` still describes the same worker for arq's own `Worker` (the arq CLI, and the
    bench's tuned-arq baseline)."""
    import uvloop

    from backend.adapters.consumer import Consumer

    uvloop.run(Consumer(setup, in_progress_ttl_s(lease_seconds)).main())
