"""`python -m bench`: stand everything up, run the scenarios, print the table, write bench/RESULTS.md."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench.context import Context
from bench.report import Report, machine_info, scenario_order
from bench.scenarios import (
    api_load,
    batches,
    csv_gen,
    dispatch,
    download,
    queueing,
    recovery,
    s3_store,
    stats,
    webhooks,
)
from bench.sizes import DEFAULT, TINY
from bench.stack import Platform, Processes, Servers, pg_connect

HERE = Path(__file__).resolve().parent

# Run order: scenario 3 late, so no worker drains the jobs it piles up (8, 10 and 11, which run workers, go
# before it), 9 (no worker either; it deletes its jobs afterwards) beside it, and 7 after them, so its
# million rows weigh on no other scenario; the table is sorted by number.
SCENARIOS: dict[str, Callable[[Context], Awaitable[None]]] = {
    "1,2": queueing.run,
    "4": csv_gen.run,
    "5": download.run,
    "6": recovery.run,
    "8": dispatch.run,
    "10": webhooks.run,
    "11": s3_store.run,
    "9": batches.run,
    "3": api_load.run,
    "7": stats.run,
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: seconds, for the smoke test")
    parser.add_argument("--no-write", action="store_true", help="do not write bench/RESULTS.md")
    parser.add_argument(
        "--profile",
        action=argparse.BooleanOptionalAction,
        help="after measuring, py-spy issue 15's workloads and those of missed targets "
        "(default: on, off with --tiny)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a platform setting for every API and worker process, e.g. --set MAX_RUNNING_JOBS_PER_KEY=0",
    )
    parser.add_argument("--only", default="", help="comma-separated scenario numbers, e.g. 3,5")
    parser.add_argument("--work-dir", type=Path, default=HERE / ".work", help="servers' data and logs")
    parser.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    return parser.parse_args(argv)


def selected(only: str) -> dict[str, Callable[[Context], Awaitable[None]]]:
    wanted = {s.strip() for s in only.split(",") if s.strip()}
    if not wanted:
        return SCENARIOS
    return {k: v for k, v in SCENARIOS.items() if wanted & set(k.split(","))}


async def run(args: argparse.Namespace, report: Report) -> None:
    sizes = TINY if args.tiny else DEFAULT
    work = args.work_dir.resolve()
    run_dir = work / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    (run_dir / "logs").mkdir(parents=True)
    procs = Processes(run_dir / "logs")
    servers = Servers(work)
    started = time.monotonic()
    try:
        await servers.start()
        platform = Platform(
            servers, procs, run_dir / "results", settings=dict(s.split("=", 1) for s in args.set)
        )
        await platform.start_api()
        db = await pg_connect(servers)
        ctx = Context(sizes, report, servers, procs, platform, db, run_dir, started=started)
        ctx.log(f"servers up: PostgreSQL, Valkey, API on port {platform.port}; logs in {run_dir / 'logs'}")
        report.info["postgresql"] = str(await db.fetchval("SHOW server_version"))
        report.info["valkey"] = await _valkey_version(servers)
        for name, scenario in selected(args.only).items():
            try:
                await scenario(ctx)
            except Exception as exc:
                traceback.print_exc()
                report.failures.append(f"scenario {name}: {type(exc).__name__}: {exc}")
            finally:
                platform.stop_workers()
        if args.profile if args.profile is not None else not args.tiny:
            from bench.profile_runs import profile_workloads

            await profile_workloads(ctx)
        await db.close()
    finally:
        procs.stop_all()
        servers.stop()
        report.wall_seconds = time.monotonic() - started
        report.info["load average at end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())


async def _valkey_version(servers: Servers) -> str:
    redis = servers.redis()
    try:
        return str((await redis.info("server")).get("valkey_version") or "?")
    finally:
        await redis.aclose()


def main(argv: list[str] | None = None) -> int:
    import uvloop

    args = parse_args(argv)
    report = Report(size="tiny" if args.tiny else "default", info=machine_info())
    try:
        uvloop.run(run(args, report))
    except Exception as exc:
        traceback.print_exc()
        report.failures.append(f"run: {type(exc).__name__}: {exc}")
    report.rows.sort(key=lambda r: scenario_order(r.scenario))
    if any(r.goal for r in report.rows):
        print(report.issue_table())
        print()
    print(report.table())
    print()
    print("\n".join(report.targets_summary()))
    print("\n" + "\n".join(report.details()))
    if report.profiles:
        print("\n" + "\n".join(report.profiles))
    for failure in report.failures:
        print(f"FAILED {failure}", file=sys.stderr)
    if not args.no_write:
        args.results.write_text(report.markdown())
        print(f"\nwritten to {args.results}")
    return 1 if report.failures else 0
