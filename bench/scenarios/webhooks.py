"""Scenario 10: webhook deliveries/s from a full outbox, against plain httpx POSTs to the same receiver.

The receiver (`bench/webhook_receiver.py`) is a separate process that answers 204 at once and records
each POST. The outbox is filled first, with delivery held back: one worker runs `webhook_jobs` no-op jobs
whose `webhook_url` points at the receiver, started with `WEBHOOK_POLL_SECONDS=3600` (its sender looks
once, at start, when nothing is due, then sleeps for an hour), so every job ends and its delivery waits
`pending` in `webhook_deliveries`; that worker is stopped. Then a fresh worker with the default settings
starts and sends them. The rate is counted at the receiver, from the first receipt to the last, so neither
the worker's start nor its first poll is in it: it is the sending rate alone. Every receipt is checked
off the clock: the three Standard Webhooks headers, the signature (with the key's secret, by the
`standardwebhooks` reference library, never by the code under test), one delivery per job, duplicates.

Baseline: `bench/baselines/webhook_poster.py`, one process POSTing a recorded delivery (same body, same
headers) with an httpx client configured like the sender's, `SEND_CONCURRENCY` requests in flight (as
many as a sender keeps), timed the same way at the receiver.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from standardwebhooks import Webhook

from backend.core.embedded import free_port
from backend.services.auth import create_key
from backend.services.webhooks import SEND_CONCURRENCY
from bench.context import Context
from bench.http import Connection, build_request, run_load
from bench.report import Row, median
from bench.stack import BenchError, CpuMeter, Proc, clean_env, family, wait_until
from bench.systems import NOOP, PlatformSystem

TARGET_SHARE = 0.5
HELD = {"WEBHOOK_POLL_SECONDS": "3600"}  # the sender looks once at start (nothing is due), then sleeps
DONE_TIMEOUT_S = 600.0
HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
TIMESTAMP_TOLERANCE_S = 300  # Standard Webhooks' default
FAILED_ATTEMPTS = """
    SELECT count(*) FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id
    WHERE d.owner_id = $1 AND (a.status_code IS NULL OR a.status_code NOT BETWEEN 200 AND 299)
"""
DELIVERIES = f"""
    SELECT count(*) FILTER (WHERE status = 'delivered') AS delivered,
           count(*) FILTER (WHERE status = 'failed') AS failed,
           ({FAILED_ATTEMPTS}) AS failed_attempts,
           extract(epoch FROM max(delivered_at)) AS last
    FROM webhook_deliveries WHERE owner_id = $1
"""
# Every delivery of the key not due for an hour (held back while a profiler attaches).
HOLD_ALL = "UPDATE webhook_deliveries SET next_attempt_at = now() + interval '1 hour' WHERE owner_id = $1"
# Every delivery due again, as `POST /jobs/{id}/webhooks/redeliver` makes one (same id, same message).
REDELIVER_ALL = """
    UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = now(), delivered_at = NULL,
           give_up_at = now() + interval '24 hours'
    WHERE owner_id = $1
"""


class Receiver:
    """The receiver process and the bench's side of its control routes."""

    def __init__(self, ctx: Context) -> None:
        self.port = free_port()
        cmd = [sys.executable, "-m", "bench.webhook_receiver", str(self.port)]
        self.proc: Proc = ctx.procs.start("webhook-receiver", cmd, clean_env())
        self.url = f"http://127.0.0.1:{self.port}/hook"

    async def _get(self, method: str, path: str) -> bytes:
        conn = Connection(self.port)
        try:
            status, body = await conn.request(build_request(method, path))
        finally:
            await conn.close()
        if status not in (200, 204):
            raise BenchError(f"the webhook receiver answered {status} to {method} {path}")
        return body

    async def ready(self) -> None:
        async def answers() -> bool:
            self.proc.check_alive()
            try:
                await self.count()
            except OSError:
                return False
            return True

        await wait_until(answers, "the webhook receiver to listen")

    async def count(self) -> int:
        return int(await self._get("GET", "/_count"))

    async def records(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = json.loads(await self._get("GET", "/_records"))
        return rows

    async def reset(self) -> None:
        await self._get("POST", "/_reset")

    def stop(self) -> None:
        self.proc.stop()


@dataclass
class Phase:
    """What the receiver saw during one sending phase."""

    records: list[dict[str, Any]]
    cpu: str = ""
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def arrivals(self) -> list[float]:
        return sorted(r["at"] for r in self.records)

    @property
    def span(self) -> float:
        at = self.arrivals
        return at[-1] - at[0] if len(at) > 1 else float("nan")

    @property
    def rate(self) -> float:
        """Receipts per second, first receipt to last."""
        return (len(self.records) - 1) / self.span


@dataclass
class Checks:
    """What the receipts of one phase were worth."""

    receipts: int = 0
    unique: int = 0
    missing_headers: int = 0
    bad_signatures: int = 0
    jobs_without_delivery: int = 0
    foreign: int = 0  # a receipt for no job of this scenario

    @property
    def duplicates(self) -> int:
        return self.receipts - self.unique

    @property
    def ok(self) -> bool:
        return not (self.missing_headers or self.bad_signatures or self.jobs_without_delivery or self.foreign)

    def text(self) -> str:
        return (
            f"{self.receipts} receipts, {self.unique} distinct webhook-ids, {self.duplicates} duplicates, "
            f"{self.missing_headers} without all three webhook-* headers, {self.bad_signatures} with a bad "
            f"signature or timestamp, {self.jobs_without_delivery} jobs without a delivery, "
            f"{self.foreign} for other jobs"
        )


def check(records: list[dict[str, Any]], secret: str, job_ids: set[str]) -> Checks:
    """Headers present, signatures valid (reference library), one delivery per job, duplicates counted.

    The library's `verify` also refuses a timestamp more than 5 minutes from now, and these are checked
    after the run: so the signature is recomputed with its `sign`, and the timestamp is held to the same
    5 minutes around the receipt."""
    out = Checks(receipts=len(records), unique=len({r["id"] for r in records}))
    signer = Webhook(secret)
    seen: set[str] = set()
    for r in records:
        if not (r["id"] and r["timestamp"] and r["signature"]):
            out.missing_headers += 1
            continue
        timestamp = int(r["timestamp"])
        expected = signer.sign(r["id"], datetime.fromtimestamp(timestamp, UTC), r["body"])
        if abs(timestamp - r["at"]) > TIMESTAMP_TOLERANCE_S or not any(
            hmac.compare_digest(expected, given) for given in r["signature"].split(" ")
        ):
            out.bad_signatures += 1
            continue
        job_id = str(json.loads(r["body"])["data"]["id"])
        if job_id in job_ids:
            seen.add(job_id)
        else:
            out.foreign += 1
    out.jobs_without_delivery = len(job_ids - seen)
    return out


async def _fill_outbox(ctx: Context, key: str, owner: uuid.UUID, n: int, url: str) -> None:
    """`n` jobs with a webhook_url, run to completion by a worker whose sender is held back."""
    system = PlatformSystem(ctx.platform, ctx.db)
    system.owners["webhooks"] = owner
    await ctx.platform.spawn_worker(**HELD)
    try:
        request = build_request("POST", "/jobs", {"X-API-Key": key}, {**NOOP, "webhook_url": url})
        result = await run_load(ctx.platform.port, ctx.sizes.clients, lambda _: request, count=n)
        result.require(201)
        await system.wait_done("webhooks", n)
    finally:
        ctx.platform.stop_workers()
    pending = await ctx.db.fetchval(
        "SELECT count(*) FROM webhook_deliveries WHERE owner_id = $1 AND status = 'pending' AND attempts = 0",
        owner,
    )
    if pending != n:
        raise BenchError(f"the outbox holds {pending} untried deliveries, {n} expected")


def _pids(proc: Proc) -> Callable[[], list[int]]:
    return lambda: family(proc.pid) if proc.alive() else []


def _meter(ctx: Context, groups: dict[str, Proc]) -> CpuMeter:
    meters = {name: _pids(proc) for name, proc in groups.items()}
    meters["PostgreSQL"] = lambda: family(ctx.servers.pg_pid())
    return CpuMeter(meters)


async def wait_delivered(ctx: Context, owner: uuid.UUID, n: int, worker: Proc) -> float:
    """Wait until the key's `n` deliveries are marked delivered; the last one's delivered_at (epoch s)."""
    deadline = time.monotonic() + DONE_TIMEOUT_S
    while True:
        row = await ctx.db.fetchrow(DELIVERIES, owner)
        if row["delivered"] >= n:
            return float(row["last"])
        if row["failed"] or row["failed_attempts"]:
            raise BenchError(f"{row['failed_attempts']} webhook attempts failed ({row['failed']} for good)")
        if time.monotonic() > deadline:
            raise BenchError(f"{row['delivered']} of {n} webhooks delivered after {DONE_TIMEOUT_S:g} s")
        worker.check_alive()
        await asyncio.sleep(0.05)


async def _send(ctx: Context, receiver: Receiver, owner: uuid.UUID, n: int, env: dict[str, str]) -> Phase:
    """A fresh worker (with `env`) sends the outbox; returns once every delivery is marked delivered."""
    await receiver.reset()
    spawned = time.time()
    worker = await ctx.platform.spawn_worker(**env)
    meter = _meter(ctx, {"worker": worker, "receiver": receiver.proc})
    meter.start()
    last = await wait_delivered(ctx, owner, n, worker)
    cpu = meter.describe(meter.stop())
    ctx.platform.stop_workers()
    phase = Phase(await receiver.records(), cpu)
    phase.extra["spawn_to_last_s"] = last - spawned
    return phase


async def _baseline(ctx: Context, receiver: Receiver, sample: dict[str, Any], n: int) -> Phase:
    """Plain httpx from one process, SEND_CONCURRENCY in flight, the same body and headers as `sample`."""
    request_file = ctx.run_dir / "webhook-request.json"
    headers = {"webhook-id": sample["id"], "webhook-timestamp": sample["timestamp"]}
    headers["webhook-signature"] = sample["signature"]
    request_file.write_text(json.dumps({"headers": headers, "body": sample["body"]}))
    await receiver.reset()
    module = "bench.baselines.webhook_poster"
    cmd = [sys.executable, "-m", module, receiver.url, str(n), str(SEND_CONCURRENCY)]
    poster = ctx.procs.start("webhook-poster", [*cmd, str(request_file)], clean_env())
    meter = _meter(ctx, {"poster": poster, "receiver": receiver.proc})
    meter.start()
    code = await asyncio.to_thread(poster.wait, DONE_TIMEOUT_S)
    cpu = meter.describe(meter.stop())
    assert poster.log_path is not None
    output = poster.log_path.read_text().strip().splitlines()
    if code != 0 or not output:
        raise BenchError(f"the webhook baseline exited with {code}: {output[-5:]}")
    summary = json.loads(output[-1])
    if summary["errors"]:
        raise BenchError(f"the webhook baseline saw {summary['errors']} non-2xx answers")
    phase = Phase(await receiver.records(), cpu)
    phase.extra["poster_seconds"] = float(summary["seconds"])
    phase.extra["poster_cpu"] = float(summary["cpu_seconds"]) / float(summary["seconds"])
    return phase


async def held_outbox(ctx: Context, receiver: Receiver, n: int) -> tuple[uuid.UUID, str]:
    """A fresh key with `n` ended jobs whose deliveries to `receiver` all wait in the outbox, never tried;
    returns the key's id and signing secret."""
    key = f"jp_bench_webhooks_{uuid.uuid4().hex}"
    _, owner = await create_key(ctx.db, "bench-webhooks", key)
    secret = await _secret(ctx, key)  # made now, not on the first delivery
    await _fill_outbox(ctx, key, owner, n, receiver.url)
    if await receiver.count():
        raise BenchError("webhooks were delivered while the sender was held back")
    return owner, secret


async def _receiver_ceiling(ctx: Context, receiver: Receiver, sample: dict[str, Any], n: int) -> float:
    """POSTs/s the receiver takes from the bench's lean client (no httpx), SEND_CONCURRENCY connections."""
    headers = {h: sample[k] for h, k in zip(HEADERS, ("id", "timestamp", "signature"), strict=True)}
    raw = build_request("POST", "/hook", headers)[:-2]
    body = sample["body"].encode()
    request = raw + f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
    await receiver.reset()
    result = await run_load(receiver.port, SEND_CONCURRENCY, lambda _: request, count=n)
    result.require(204)
    await receiver.reset()
    return result.rate


async def run(ctx: Context) -> None:
    """Fill the outbox with delivery held back, send it with the default settings, then the baseline;
    check every receipt."""
    ctx.platform.stop_workers()
    n = ctx.sizes.webhook_jobs
    receiver = Receiver(ctx)
    try:
        await receiver.ready()
        owner, secret = await held_outbox(ctx, receiver, n)
        ctx.log(f"webhooks: {n} deliveries pending in the outbox")
        job_ids = {str(r[0]) for r in await ctx.db.fetch("SELECT id FROM jobs WHERE owner_id = $1", owner)}

        ours = await _send(ctx, receiver, owner, n, {})
        ours_checks = check(ours.records, secret, job_ids)
        ctx.log(f"webhooks, default settings: {ours.rate:.0f} deliveries/s; {ours_checks.text()}")

        base = await _baseline(ctx, receiver, ours.records[0], n)
        ctx.log(f"webhooks, plain httpx ({SEND_CONCURRENCY} in flight): {base.rate:.0f} POSTs/s")
        base.extra["ceiling"] = await _receiver_ceiling(ctx, receiver, ours.records[0], n)
        failed_attempts = int(await ctx.db.fetchval(FAILED_ATTEMPTS, owner))
    finally:
        ctx.platform.stop_workers()
        receiver.stop()
    _report(ctx, n, ours, ours_checks, base, failed_attempts)


async def _secret(ctx: Context, key: str) -> str:
    """The key's signing secret, through the API (`GET /webhooks/secret`)."""
    out: dict[str, Any] = {}

    def keep(_: int, status: int, body: bytes, __: float) -> None:
        out.update(json.loads(body), _status=status)

    request = build_request("GET", "/webhooks/secret", {"X-API-Key": key})
    await run_load(ctx.platform.port, 1, lambda _: request, count=1, on_response=keep)
    if out.get("_status") != 200:
        raise BenchError(f"GET /webhooks/secret answered {out}")
    secret = str(out["secret"])
    base64.b64decode(secret.removeprefix("whsec_"))  # a well-formed secret, or this raises
    return secret


def _report(
    ctx: Context,
    n: int,
    ours: Phase,
    ours_checks: Checks,
    base: Phase,
    failed_attempts: int,
) -> None:
    share = ours.rate / base.rate
    baseline = f"plain httpx, one process, {SEND_CONCURRENCY} in flight, same body: {base.rate:.0f} POSTs/s"
    ctx.report.add(
        Row(
            "10",
            f"webhook deliveries/s, {n:,} due in the outbox, 1 worker process",
            f"{ours.rate:.0f} deliveries/s, {ours_checks.duplicates} duplicates",
            baseline,
            share,
            f"≥ {TARGET_SHARE:g}x",
            share >= TARGET_SHARE,
            key="webhooks",
        )
    )
    if not ours_checks.ok:
        ctx.report.failures.append(f"scenario 10: {ours_checks.text()}")
    if failed_attempts:
        ctx.report.failures.append(f"scenario 10: {failed_attempts} webhook attempts were not answered 2xx")

    title = "10 Webhook deliveries"
    note = ctx.report.note
    body_bytes = median([float(len(r["body"].encode())) for r in ours.records])
    note(
        title,
        f"{n:,} no-op jobs with a webhook_url to a local receiver process (answers 204), run by a worker "
        "with WEBHOOK_POLL_SECONDS=3600 (the sender held back), then stopped: the outbox holds every "
        "delivery, pending. Timed at the receiver, first receipt to last: the sending rate alone, without "
        f"the worker's start and first poll. Bodies about {body_bytes:.0f} bytes.",
    )
    note(
        title,
        f"{ours.span:.2f} s first to last receipt; from the worker's spawn to the last delivered_at "
        f"{ours.extra['spawn_to_last_s']:.2f} s; the sender keeps up to {SEND_CONCURRENCY} deliveries in "
        "flight and claims more as each ends (its claim returns the job; an attempt's log row and outcome "
        "are one statement; a key's secrets are opened at most once a second)",
    )
    note(
        title,
        f"baseline: {n:,} POSTs of a recorded delivery (same body and headers), {base.span:.2f} s first to "
        f"last receipt ({base.extra['poster_seconds']:.2f} s in the poster, which kept "
        f"{base.extra['poster_cpu']:.0%} of a core busy); the "
        f"receiver alone takes {base.extra['ceiling']:.0f} POSTs/s from the bench's lean client over "
        f"{SEND_CONCURRENCY} connections, so it limits neither side",
    )
    note(title, f"checks: {ours_checks.text()}")
    note(title, f"attempts not answered 2xx: {failed_attempts}")
    note(title, f"CPU, ours: {ours.cpu}")
    note(title, f"CPU, baseline: {base.cpu}")
