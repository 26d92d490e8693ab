"""The worker side of the queue: take several due deliveries per Redis call, run each as a task, finish
them in groups, wake up when something is enqueued.

The wire format is arq's (the job key holding the message, the queue's sorted set, the in-progress marker
that keeps a picked delivery from being picked again, for as long as the run renews it), so deliveries
written by arq's own `enqueue_job` run here too. The loop is not arq's `Worker`: that one spends about six
round trips on every delivery (read the queue, watch and mark, read the message, count a try, then watch
and delete) and polls on a timer. Here one script call takes up to every free slot's delivery and marks it,
one call finishes every delivery that ended meanwhile, and an idle worker sleeps in BLPOP on the queue's
wake list, where the enqueue script pushes a token per delivery placed (so one enqueue wakes one worker,
not all of them: with a broadcast, every worker fetched on every enqueue and split a stream of jobs into
groups of one). It still looks at the queue every IDLE_POLL_S (a delivery written by arq's own
`enqueue_job`, or a token lost, waits at most that): an idle poll costs half a millisecond of CPU, and
50 a second were 3 % of a core per idle worker.

A delivery whose run raised is still finished (our retry policy lives in PostgreSQL, and reconcile finds
any job left waiting). A delivery cancelled by shutdown is released instead (its marker deleted), so
another worker takes it at once: the run handed its job back with the same delivery id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Sequence
from typing import Any

from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import in_progress_key_prefix, job_key_prefix

from backend.adapters.queue import (
    RUN_JOB,
    TIMEOUT_MARGIN_S,
    WAKE_GATE_MS,
    WorkerSetup,
    load_message,
    wake_list,
)
from backend.core.batching import GroupCommit

log = logging.getLogger(__name__)

BUSY_LINGER_S = 0.002  # how long a worker with most slots taken waits for more to free before fetching
IDLE_POLL_S = 0.5  # how often an idle worker looks at the queue with no wake-up token
STREAM_POLL_S = WAKE_GATE_MS / 1000  # the same, right after it took work
FETCH_SCAN_MAX = 5000  # queue entries one fetch looks at, at most (running deliveries stay in the queue)

# Take up to ARGV[2] due deliveries that no worker holds, marking each in progress for ARGV[3] ms: the
# delivery ids and messages, alternating. KEYS: queue, wake list. ARGV: now ms, how many, marker ttl ms.
# An entry whose message expired is dropped. Running deliveries stay in the queue (so that a killed worker's
# delivery is picked again once its marker lapses): the scan steps over them.
FETCH_LUA = f"""
local want, ttl = tonumber(ARGV[2]), ARGV[3]
local out, offset, step = {{}}, 0, want + 64
while #out < 2 * want and offset < {FETCH_SCAN_MAX} do
  local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', offset, step)
  for _, id in ipairs(ids) do
    if redis.call('EXISTS', '{in_progress_key_prefix}' .. id) == 0 then
      local message = redis.call('GET', '{job_key_prefix}' .. id)
      if message then
        redis.call('SET', '{in_progress_key_prefix}' .. id, '1', 'PX', ttl)
        out[#out + 1] = id
        out[#out + 1] = message
        if #out >= 2 * want then break end
      else
        redis.call('ZREM', KEYS[1], id)
      end
    end
  end
  if #ids < step then break end
  offset = offset + step
end
-- Took all it could: more may be due, so wake another idle worker (it finds nothing at worst).
if #out >= 2 * want then redis.call('LPUSH', KEYS[2], '1'); redis.call('LTRIM', KEYS[2], 0, 0) end
return out
"""

# Finish deliveries: delete marker, message and queue entry. KEYS: queue. ARGV: delivery ids.
FINISH_LUA = f"""
for _, id in ipairs(ARGV) do
  redis.call('DEL', '{in_progress_key_prefix}' .. id, '{job_key_prefix}' .. id)
  redis.call('ZREM', KEYS[1], id)
end
return #ARGV
"""


class Consumer:
    """One worker process's loop: up to `setup.concurrency` deliveries running at once."""

    def __init__(self, setup: WorkerSetup, in_progress_s: float) -> None:
        self.setup = setup
        self.in_progress_ms = int(in_progress_s * 1000)
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.ctx: dict[str, Any] = {}
        self._stopping = asyncio.Event()
        self._room = asyncio.Event()  # a slot came free (or we stop)
        self._finish = GroupCommit(self._finish_group)
        self._redis: ArqRedis | None = None
        self._stop_waiting: asyncio.Task[Any] | None = None
        self._wake_key = wake_list(setup.queue_name)

    async def main(self) -> None:
        """Start up, run deliveries until SIGINT/SIGTERM, hand back what still runs after the grace, shut
        down."""
        redis = self._redis = await create_pool(RedisSettings.from_dsn(self.setup.redis_url))
        self._fetch_script = redis.register_script(FETCH_LUA)
        self._finish_script = redis.register_script(FINISH_LUA)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stopping.set)
        self.ctx["redis"] = redis
        try:
            await self.setup.on_startup(self.ctx)
            await self._serve()
            await self._drain()
            await self.setup.on_shutdown(self.ctx)
        finally:
            await redis.aclose(close_connection_pool=True)

    async def _serve(self) -> None:
        stop = self._stop_waiting = asyncio.create_task(self._stopping.wait())
        stop.add_done_callback(lambda _: self._room.set())
        while not self._stopping.is_set():
            free = self.setup.concurrency - len(self.tasks)
            if free <= 0:
                self._room.clear()
                await self._room.wait()
                continue
            if free < self.setup.concurrency / 2:
                # Busy: let a few more runs end, so that one fetch (and one claim statement) serves several
                # slots rather than each slot costing its own round trips as it frees.
                await asyncio.sleep(BUSY_LINGER_S)
                free = self.setup.concurrency - len(self.tasks)
            batch = await self._fetch(free)
            for delivery, message in batch:
                self.tasks[delivery] = asyncio.create_task(self._run(delivery, message))
            if len(batch) < free:
                # Nothing more is due: sleep until a wake-up token. Right after taking work (deliveries
                # arriving in a stream, whose enqueues push a token only every WAKE_GATE_MS), look again
                # after that long anyway; otherwise every IDLE_POLL_S (a lost token, arq's own enqueue).
                await self._idle(STREAM_POLL_S if batch else IDLE_POLL_S)

    async def _idle(self, timeout_s: float) -> None:
        """BLPOP a wake-up token for up to `timeout_s`, or until the stop signal."""
        assert self._redis is not None and self._stop_waiting is not None
        pop = asyncio.ensure_future(self._redis.blpop([self._wake_key], timeout=timeout_s))
        done, _ = await asyncio.wait({pop, self._stop_waiting}, return_when=asyncio.FIRST_COMPLETED)
        if pop not in done:
            pop.cancel()
            await asyncio.gather(pop, return_exceptions=True)
            return
        if (exc := pop.exception()) is not None:  # Redis down: poll at POLL_DELAY_SECONDS meanwhile
            log.warning("waiting for wake-ups failed", extra={"error": type(exc).__name__})
            await asyncio.sleep(self.setup.poll_delay_s)

    async def _drain(self) -> None:
        """After a stop signal: let the runs finish for the grace period, then cancel (hand back) the rest."""
        running = set(self.tasks.values())
        if running:
            log.info("worker stopping: waiting for runs", extra={"running": len(running)})
            _, pending = await asyncio.wait(running, timeout=self.setup.shutdown_grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _fetch(self, n: int) -> list[tuple[str, bytes]]:
        """Up to n due deliveries, marked in progress (none if Redis failed: the next poll tries again)."""
        now_ms = int(time.time() * 1000)
        try:
            keys = [self.setup.queue_name, self._wake_key]
            flat = await self._fetch_script(keys=keys, args=[now_ms, n, self.in_progress_ms])
        except Exception as exc:  # Redis down: the poll delay, then again
            log.warning("fetching deliveries failed", extra={"error": type(exc).__name__})
            await asyncio.sleep(self.setup.poll_delay_s)
            return []
        return [(flat[i].decode(), flat[i + 1]) for i in range(0, len(flat), 2)]

    async def _run(self, delivery: str, message: bytes) -> None:
        # A run that outlives every job type's timeout is stuck (a database that never answers): cancelled,
        # it hands its job back. A timer, not asyncio.timeout: a tenth of the cost, on every delivery.
        task = asyncio.current_task()
        limit = self.setup.max_job_seconds + TIMEOUT_MARGIN_S
        guard = asyncio.get_running_loop().call_later(limit, task.cancel) if task else None
        try:
            job_id = _job_of(delivery, message)
            if job_id is not None:
                await self.setup.run_job({**self.ctx, "job_id": delivery}, job_id)
        except asyncio.CancelledError:  # shutdown: the run handed its job back; the delivery is free
            await self._release(delivery)
            raise
        except Exception:  # the run's own failures are recorded in PostgreSQL; this is a bug or an outage
            log.exception("delivery failed", extra={"delivery": delivery})
        finally:
            if guard is not None:
                guard.cancel()
            self.tasks.pop(delivery, None)
            self._room.set()
        await self._finish.submit(delivery)

    async def _finish_group(self, deliveries: Sequence[str]) -> list[None]:
        try:
            await self._finish_script(keys=[self.setup.queue_name], args=list(deliveries))
        except Exception as exc:  # left in the queue: picked again once the marker lapses, claimed as a no-op
            log.warning(
                "finishing deliveries failed",
                extra={"deliveries": len(deliveries), "error": type(exc).__name__},
            )
        return [None] * len(deliveries)

    async def _release(self, delivery: str) -> None:
        if self._redis is None:
            return
        with contextlib.suppress(Exception):  # else the marker lapses on its own
            await self._redis.delete(in_progress_key_prefix + delivery)


def _job_of(delivery: str, message: bytes) -> str | None:
    """The job id a message asks to run; None (logged) if it is not one of ours."""
    try:
        data = load_message(message)
        function, args = data.get("f"), data.get("a")
        if function == RUN_JOB and isinstance(args, list) and len(args) == 1 and isinstance(args[0], str):
            return args[0]
    except ValueError:
        pass
    log.warning("not a platform delivery: dropped", extra={"delivery": delivery})
    return None
