"""Watching jobs: one poll per API process serves every Server-Sent Events stream it holds.

Cost does not grow with watchers: each interval, one query reads every watched job. Streams per API key
are capped, and each stream ends after a maximum lifetime (the client reconnects with `Last-Event-ID`),
so neither a flood of streams nor a job scheduled for the year 9999 holds resources forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from backend.domain.errors import TooManyStreams
from backend.domain.records import JobRecord
from backend.repo.jobs import JobRepository

log = logging.getLogger(__name__)


def visible_state(job: JobRecord) -> tuple[object, ...]:
    """What a watcher is told about: a change of any of these is an event, of anything else is not."""
    return (job.status, job.progress, job.attempts, job.error)


def event_id(job: JobRecord) -> str:
    """The SSE event id of a job's state: its `updated_at` in microseconds (every write moves it)."""
    return str(int(job.updated_at.timestamp() * 1_000_000))


@dataclass(eq=False)
class Subscription:
    """One stream's view of one job: the latest record the poll saw, and a signal when it changes."""

    owner_id: uuid.UUID
    job_id: uuid.UUID
    latest: JobRecord | None = None
    gone: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, job: JobRecord | None) -> None:
        """Take the poll's reading (None: the job no longer exists for this owner)."""
        if job is None or job.owner_id != self.owner_id:
            self.gone = True
        elif self.latest is not None and event_id(self.latest) == event_id(job):
            return
        else:
            self.latest = job
        self.changed.set()


@dataclass(eq=False)
class Watch:
    """A stream that follows several jobs (the dashboard's job list): one signal when any changes."""

    viewer_id: uuid.UUID
    subs: list[Subscription] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False

    def settled(self) -> bool:
        """True once every followed job is known to be terminal or gone."""
        return all(s.gone or (s.latest is not None and s.latest.status.is_terminal) for s in self.subs)

    def changes(self, seen: dict[uuid.UUID, tuple[object, ...]]) -> list[JobRecord]:
        """The followed jobs whose status, progress, attempts or error moved since `seen` (updated)."""
        moved = []
        for sub in self.subs:
            job = sub.latest
            if sub.gone or job is None:
                continue
            snapshot = visible_state(job)
            if seen.get(job.id) != snapshot:
                seen[job.id] = snapshot
                moved.append(job)
        return moved


class JobWatcher:
    """The process-wide poller behind every job event stream."""

    def __init__(self, jobs: JobRepository, interval_s: float, max_streams_per_key: int) -> None:
        self.jobs = jobs
        self.interval_s = interval_s
        self.max_streams_per_key = max_streams_per_key
        self._subs: dict[uuid.UUID, set[Subscription]] = defaultdict(set)
        self._per_key: dict[uuid.UUID, int] = defaultdict(int)
        self._task: asyncio.Task[None] | None = None
        self.polls = 0  # queries made so far, whatever the number of streams (tests and metrics read it)

    def subscribe(self, owner_id: uuid.UUID, job_id: uuid.UUID) -> Subscription:
        """Start watching one job (`unsubscribe` when done); TooManyStreams past the per-key cap."""
        if self._per_key[owner_id] >= self.max_streams_per_key:
            raise TooManyStreams()
        sub = Subscription(owner_id, job_id)
        self._per_key[owner_id] += 1
        self._subs[job_id].add(sub)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._poll(), name="job-watcher")
        return sub

    def open_watch(self, viewer_id: uuid.UUID) -> Watch:
        """A stream following a changing set of jobs (`add_to_watch`): one against `viewer_id`'s cap,
        one signal for all its jobs. `close_watch` when done."""
        if self._per_key[viewer_id] >= self.max_streams_per_key:
            raise TooManyStreams()
        self._per_key[viewer_id] += 1
        return Watch(viewer_id)

    def add_to_watch(self, watch: Watch, owner_id: uuid.UUID, job_id: uuid.UUID) -> None:
        """Follow one more job in the watch."""
        sub = Subscription(owner_id, job_id, changed=watch.changed)
        watch.subs.append(sub)
        self._subs[job_id].add(sub)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._poll(), name="job-watcher")

    def close_watch(self, watch: Watch) -> None:
        """Stop following the watch's jobs and give back its place under the cap (idempotent)."""
        for sub in watch.subs:
            self._drop(sub)
        watch.subs.clear()
        if not watch.closed:
            watch.closed = True
            self._release(watch.viewer_id)

    def _drop(self, sub: Subscription) -> None:
        watchers = self._subs.get(sub.job_id)
        if watchers is not None:
            watchers.discard(sub)
            if not watchers:
                del self._subs[sub.job_id]

    def _release(self, key_id: uuid.UUID) -> None:
        self._per_key[key_id] -= 1
        if not self._per_key[key_id]:
            del self._per_key[key_id]

    def unsubscribe(self, sub: Subscription) -> None:
        """Stop watching (idempotent per subscription)."""
        if sub not in self._subs.get(sub.job_id, ()):
            return
        self._drop(sub)
        self._release(sub.owner_id)

    async def _poll(self) -> None:
        """Read every watched job in one query per interval, until nobody watches."""
        while self._subs:
            self.polls += 1
            try:
                found = {job.id: job for job in await self.jobs.get_many(list(self._subs))}
            except Exception as exc:  # a failed poll is retried next interval; streams just wait
                log.warning("job watch poll failed", extra={"error": type(exc).__name__})
            else:
                for job_id, subs in list(self._subs.items()):
                    for sub in list(subs):
                        sub.offer(found.get(job_id))
            await asyncio.sleep(self.interval_s)

    async def close(self) -> None:
        """Stop the poller (at shutdown)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def job_updates(
    sub: Subscription, max_seconds: float, last_event_id: str | None
) -> AsyncIterator[JobRecord]:
    """The job each time its status, progress, attempts or error change, until it is terminal, gone, or
    the stream's lifetime is over; a state the client already saw (`Last-Event-ID`) is not sent again."""
    deadline = time.monotonic() + max_seconds
    last: tuple[object, ...] | None = None
    while (remaining := deadline - time.monotonic()) > 0:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(sub.changed.wait(), remaining)
        sub.changed.clear()
        job = sub.latest
        if sub.gone or job is None:
            return
        snapshot = visible_state(job)
        if snapshot != last and event_id(job) != last_event_id:
            yield job
        last = snapshot
        if job.status.is_terminal:
            return
