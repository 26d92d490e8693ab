"""What every scenario gets: sizes, the running servers and platform, a database connection, the report."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from backend.core.config import Settings
from bench.http import build_request, run_load
from bench.report import Report
from bench.sizes import Sizes
from bench.stack import BenchError, CpuMeter, Platform, Proc, Processes, Servers, family


@dataclass
class Context:
    sizes: Sizes
    report: Report
    servers: Servers
    procs: Processes
    platform: Platform
    db: asyncpg.Connection
    run_dir: Path
    started: float = field(default_factory=time.monotonic)

    def on(self, platform: Platform) -> Context:
        """The same context aimed at another platform (e.g. API and workers on another storage backend),
        so every helper that takes a context serves it unchanged."""
        return dataclasses.replace(self, platform=platform)

    def log(self, text: str) -> None:
        """Progress on stderr (the table goes to stdout)."""
        print(f"[{time.monotonic() - self.started:6.1f}s] {text}", file=sys.stderr, flush=True)

    def meter(self, workers: Callable[[], list[Proc]] | None = None) -> CpuMeter:
        """CPU of every process in play: API, workers, PostgreSQL, Valkey and this client."""
        api = self.platform.api
        pick = workers or (lambda: self.platform.workers)
        return CpuMeter(
            {
                "API": lambda: [api.pid] if api and api.alive() else [],
                "workers": lambda: [pid for w in pick() for pid in family(w.pid)],
                "PostgreSQL": lambda: family(self.servers.pg_pid()),
                "Valkey": lambda: family(self.servers.valkey_pid()),
                "bench client": lambda: [os.getpid()],
            }
        )

    def setting(self, name: str) -> Any:
        """A platform setting as the bench's platform processes see it: the default unless `--set` changed
        it."""
        default = Settings.model_fields[name].default
        raw = self.platform.settings.get(name.upper())
        return default if raw is None else type(default)(raw)

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.platform.key}

    async def post_job(self, body: dict[str, Any]) -> dict[str, Any]:
        """Submit one job with the bootstrap key; returns the created job."""
        out: dict[str, Any] = {}

        def keep(_: int, status: int, data: bytes, __: float) -> None:
            out.update(json.loads(data), _status=status)

        request = build_request("POST", "/jobs", self.headers, body)
        await run_load(self.platform.port, 1, lambda _: request, count=1, on_response=keep)
        if out.pop("_status") != 201:
            raise BenchError(f"POST /jobs refused {body}: {out}")
        return out

    async def wait_job(self, job_id: str, within: float = 900.0) -> asyncpg.Record:
        """Poll the row until the job is terminal; fail unless it completed."""
        sql = (
            "SELECT status, error, result_file, extract(epoch FROM started_at) AS started, "
            "extract(epoch FROM finished_at) AS finished FROM jobs WHERE id = $1::uuid"
        )
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            row = await self.db.fetchrow(sql, job_id)
            if row is not None and row["status"] in ("completed", "failed", "cancelled"):
                if row["status"] != "completed":
                    raise BenchError(f"job {job_id} ended {row['status']}: {row['error']}")
                return row
            for worker in self.platform.workers:
                worker.check_alive()
            await asyncio.sleep(0.1)
        raise BenchError(f"job {job_id} not done after {within:g}s")
