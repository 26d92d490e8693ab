"""`jobplatform` command line: api, worker, migrate, dev, purge, keys, schedules, submit."""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, cast

from backend.core.config import Settings, get_settings
from backend.core.logging import configure_logging

if TYPE_CHECKING:
    import asyncpg

    from backend.repo.api_keys import ApiKeyRepository

ROOT = Path(__file__).resolve().parent.parent


def migrations_root() -> Path:
    """The folder holding alembic.ini: the source tree (editable install), else the working directory."""
    for candidate in (Path(os.environ.get("MIGRATIONS_DIR", ROOT)), ROOT, Path.cwd()):
        if (candidate / "alembic.ini").exists():
            return candidate
    raise SystemExit("alembic.ini not found: run from the project folder or set MIGRATIONS_DIR")


def alembic_config(database_url: str | None = None) -> object:
    """Alembic's config pointing at this project's migrations."""
    from alembic.config import Config

    root = migrations_root()
    cfg = Config(str(root / "alembic.ini"))
    cfg.set_main_option("script_location", str(root / "alembic"))
    if database_url:
        cfg.attributes["database_url"] = database_url
    return cfg


def migrate(database_url: str | None = None) -> None:
    """`alembic upgrade head`."""
    from alembic import command

    command.upgrade(alembic_config(database_url), "head")  # type: ignore[arg-type]


def run_api(settings: Settings, workers: int) -> None:
    """Serve the API with uvicorn, request heads bounded in size and time, connections in number."""
    from backend.launcher import metrics_dir

    # `--workers N` processes must add up their counts in one folder (uvicorn's children inherit it); it
    # is named before anything imports prometheus-client.
    with metrics_dir(settings.prometheus_multiproc_dir, needed=workers > 1):
        _serve(settings, workers)


def _serve(settings: Settings, workers: int) -> None:
    import uvicorn

    from backend.api.protocol import BoundedHttpToolsProtocol, HeadLimits

    limits = HeadLimits(settings.http_max_header_bytes, settings.http_header_timeout_seconds)
    # A partial, not a class built here: uvicorn pickles its config for `--workers N`.
    protocol = functools.partial(BoundedHttpToolsProtocol, limits=limits)
    uvicorn.run(
        "backend.main:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=workers,
        log_level=settings.log_level.lower(),
        access_log=False,
        http=cast("type[asyncio.Protocol]", protocol),
        # uvicorn counts the connection that is asking too: N connections are served, the next gets 503.
        limit_concurrency=settings.http_max_connections + 1,
    )


def serve_metrics(settings: Settings, port: int) -> None:
    """`jobplatform metrics`: serve this host's process metrics (its PROMETHEUS_MULTIPROC_DIR) on `port`
    until SIGINT/SIGTERM; for a host that runs workers and no API process."""
    import signal

    from backend.launcher import export_metrics_dir

    if settings.prometheus_multiproc_dir is None:
        raise SystemExit("PROMETHEUS_MULTIPROC_DIR is not set: name the folder this host's workers count in")
    export_metrics_dir(settings.prometheus_multiproc_dir)
    from prometheus_client import start_http_server

    from backend.core.metrics import process_registry

    stop = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)  # first: the server's thread inherits the mask
    server, _ = start_http_server(port, addr=settings.host, registry=process_registry())
    try:
        signal.sigwait(stop)
    finally:
        server.shutdown()


async def _purge(dry_run: bool) -> None:
    from backend.resources import open_resources
    from backend.services.purge import purge

    async with open_resources(get_settings(), pool_size=2) as res:
        report = await purge(res, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    print(
        f"purge {verb}: {report.jobs} jobs, {report.files} files, "
        f"{report.idempotency_keys} idempotency keys, {report.orphan_files} orphan files"
    )


def _rate_limit(text: str) -> str:
    """argparse type: a rate limit like 100/minute."""
    from backend.adapters.ratelimit import RateLimit

    try:
        RateLimit.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).replace("RATE_LIMIT", "--rate-limit")) from None
    return text


def _positive(text: str) -> int:
    """argparse type: an integer ≥ 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, not {text!r}")
    return int(text)


async def _keys(args: argparse.Namespace) -> int:
    """Keys are shown and revoked by id: no part of a secret is ever printed after `create`."""
    from backend.db.pool import create_pool
    from backend.domain.enums import KeyRole
    from backend.repo.api_keys import ApiKeyRepository
    from backend.services.auth import add_key

    action, arg = args.action, args.name
    pool = await create_pool(get_settings().require_database_url(), 1)
    try:
        repo = ApiKeyRepository(pool)
        if action == "create":
            role = KeyRole(args.role)
            raw, key = await add_key(pool, arg or "cli", None, role, args.max_running, args.rate_limit)
            print(f"{raw}\nid {key.id}")
        elif action == "list":
            for k in await repo.all():
                state = "revoked" if k.revoked_at else "active"
                limits = f"  max_running {k.max_running}" if k.max_running else ""
                limits += f"  rate_limit {k.rate_limit}" if k.rate_limit else ""
                created = f"created {k.created_at:%Y-%m-%d %H:%M}"
                print(f"{k.id}  {k.name:20}  {state:8}  {k.role:6}  {created}{limits}")
        else:
            return await _revoke(repo, arg)
        return 0
    finally:
        await pool.close()


async def _revoke(repo: ApiKeyRepository, arg: str | None) -> int:
    """Revoke exactly one key, by id; exit status 2 for something that is not an id, 1 for an unknown one."""
    try:
        key_id = uuid.UUID(arg or "")
    except ValueError:
        print(f"not a key id: {arg!r} (`jobplatform keys list` shows the ids)", file=sys.stderr)
        return 2
    revoked = await repo.revoke(key_id)
    if revoked is None:
        print(f"no API key with id {key_id}", file=sys.stderr)
        return 1
    print(f"revoked key {revoked.id} ({revoked.name})")
    return 0


async def _schedules(args: argparse.Namespace, settings: Settings) -> int:
    """Like `keys`, on the database directly: an operator's tool (the API is the tenants' way)."""
    from backend.db.pool import create_pool

    pool = await create_pool(settings.require_database_url(), 1)
    try:
        if args.action == "create":
            return await _create_schedule(pool, args, settings)
        if args.action == "delete":
            return await _delete_schedule(pool, settings, args.schedule_id)
        return await _list_schedules(pool, settings, args.owner)
    finally:
        await pool.close()


async def _schedule_owner(
    pool: asyncpg.Pool, args: argparse.Namespace, settings: Settings
) -> uuid.UUID | None:
    """`--owner`, else the active key given as `--api-key` (default $JOBPLATFORM_API_KEY, else
    $BOOTSTRAP_API_KEY, as `submit` has it)."""
    from backend.repo.api_keys import ApiKeyRepository
    from backend.services.auth import hash_key

    if args.owner:
        return uuid.UUID(args.owner)
    raw = args.api_key or os.environ.get("JOBPLATFORM_API_KEY") or settings.bootstrap_api_key
    key = await ApiKeyRepository(pool).active_by_hash(hash_key(raw)) if raw else None
    return key.id if key else None


async def _create_schedule(pool: asyncpg.Pool, args: argparse.Namespace, settings: Settings) -> int:
    import json

    from pydantic import ValidationError

    from backend.domain.errors import FieldError
    from backend.domain.schedules import ScheduleCreate
    from backend.services.schedules import ScheduleService

    owner = await _schedule_owner(pool, args, settings)
    if owner is None:
        print(
            "no owner: pass --owner KEY_ID, or an active key as --api-key / JOBPLATFORM_API_KEY",
            file=sys.stderr,
        )
        return 2
    body = {"name": args.name, "timezone": args.timezone, "overlap": args.overlap, "paused": args.paused}
    timing = {"cron": args.cron} if args.cron is not None else {"every_seconds": args.every_seconds}
    try:
        job = {"type": args.type, "payload": json.loads(args.payload)}
        schedule = await ScheduleService(settings, pool).create(
            owner, ScheduleCreate.model_validate({**body, **timing, "job": job})
        )
    except ValidationError as exc:
        for error in exc.errors():
            print(f"{'.'.join(map(str, error['loc']))}: {error['msg']}", file=sys.stderr)
        return 2
    except (FieldError, json.JSONDecodeError) as exc:
        print(str(exc), file=sys.stderr)
        return 2
    print(f"{schedule.id}\nnext run {schedule.next_run_at.isoformat()}")
    return 0


async def _list_schedules(pool: asyncpg.Pool, settings: Settings, owner: str | None) -> int:
    from backend.services.schedules import ScheduleService

    rows, cursor = [], None
    while True:
        page, cursor = await ScheduleService(settings, pool).list(
            uuid.UUID(owner) if owner else None, 100, cursor
        )
        rows += page
        if cursor is None:
            break
    for s in rows:
        timing = f"cron {s.cron!r} {s.timezone}" if s.cron else f"every {s.every_seconds}s"
        state = "paused" if s.paused else f"next {s.next_run_at:%Y-%m-%d %H:%M:%S}Z"
        print(f"{s.id}  {s.name:20}  {timing:30}  {state:27}  {s.job['type']:12}  owner {s.owner_id}")
    return 0


async def _delete_schedule(pool: asyncpg.Pool, settings: Settings, schedule_id: str | None) -> int:
    from backend.domain.errors import ScheduleNotFound
    from backend.services.schedules import ScheduleService

    try:
        target = uuid.UUID(schedule_id or "")
    except ValueError:
        print(
            f"not a schedule id: {schedule_id!r} (`jobplatform schedules list` shows the ids)",
            file=sys.stderr,
        )
        return 2
    service = ScheduleService(settings, pool)
    try:
        await service.delete(await service.get(None, target))
    except ScheduleNotFound:
        print(f"no schedule with id {target}", file=sys.stderr)
        return 1
    print(f"deleted schedule {target}")
    return 0


def _add_schedule_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    schedules = sub.add_parser("schedules", help="list, create or delete schedules (on the database)")
    schedules.add_argument("action", choices=["list", "create", "delete"])
    schedules.add_argument("schedule_id", nargs="?", help="delete: the schedule's id, as list shows it")
    schedules.add_argument("--owner", type=_key_id, help="list: only this key's; create: the owner key's id")
    schedules.add_argument("--api-key", help="create: the owner, by its secret (default: as `submit`)")
    schedules.add_argument("--name", default="cli", help="create: the schedule's name")
    timing = schedules.add_mutually_exclusive_group()
    timing.add_argument("--cron", help='create: e.g. "*/5 * * * *" (in --timezone)')
    timing.add_argument("--every-seconds", type=_positive, help="create: fire every N seconds")
    schedules.add_argument("--timezone", default="UTC", help="create: IANA time zone (default UTC)")
    schedules.add_argument("--type", help="create: the job type, e.g. csv_report")
    schedules.add_argument("--payload", default="{}", help="create: the job's payload JSON")
    schedules.add_argument("--overlap", choices=["allow", "skip"], default="allow")
    schedules.add_argument("--paused", action="store_true", help="create: paused (no fires until resumed)")


def _key_id(text: str) -> str:
    """argparse type: a key id."""
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a key id: {text!r}") from None


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `jobplatform` console script."""
    parser = argparse.ArgumentParser(prog="jobplatform", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    api = sub.add_parser("api", help="serve the HTTP API (uvicorn)")
    api.add_argument("--workers", type=int, default=1)
    sub.add_parser("worker", help="run an arq worker")
    sub.add_parser("migrate", help="alembic upgrade head")
    metrics = sub.add_parser("metrics", help="serve this host's process metrics (a host without an API)")
    metrics.add_argument("--port", type=_positive, default=9464)
    sub.add_parser("dev", help="embedded servers + migrations + API + worker (make run)")
    purge = sub.add_parser("purge", help="delete old jobs, files and idempotency keys now")
    purge.add_argument("--dry-run", action="store_true")
    keys = sub.add_parser("keys", help="manage API keys")
    keys.add_argument("action", choices=["create", "list", "revoke"])
    keys.add_argument("name", nargs="?", help="name (create) or key id, as list shows it (revoke)")
    keys.add_argument("--role", choices=["client", "admin"], default="client", help="create: the key's role")
    keys.add_argument("--max-running", type=_positive, help="create: jobs running at once (its own cap)")
    keys.add_argument("--rate-limit", type=_rate_limit, help="create: e.g. 100/minute (its own limit)")
    _add_schedule_parser(sub)
    sub_job = sub.add_parser("submit", help="submit a job over HTTP (optionally wait and download)")
    sub_job.add_argument("type", help="job type, e.g. csv_report")
    sub_job.add_argument("--payload", default="{}", help="payload JSON")
    sub_job.add_argument("--wait", action="store_true", help="wait for the job with a progress bar")
    sub_job.add_argument("--download", type=Path, help="save the result file here (implies --wait)")
    sub_job.add_argument("--url", help="API base URL (default http://HOST:PORT)")
    sub_job.add_argument("--api-key", help="API key (default: $JOBPLATFORM_API_KEY or $BOOTSTRAP_API_KEY)")
    sub_job.add_argument("--idempotency-key", help="reuse a key to make a retried submit safe")
    args = parser.parse_args(argv)

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    if args.command == "api":
        run_api(settings, args.workers)
    elif args.command == "worker":
        # The worker package builds on backend, never the reverse: become `python -m worker` (same pid).
        os.execv(sys.executable, [sys.executable, "-m", "worker"])
    elif args.command == "migrate":
        migrate()
    elif args.command == "metrics":
        serve_metrics(settings, args.port)
    elif args.command == "dev":
        from backend.dev import run_dev

        run_dev(settings)
    elif args.command == "purge":
        asyncio.run(_purge(args.dry_run))
    elif args.command == "keys":
        raise SystemExit(asyncio.run(_keys(args)))
    elif args.command == "schedules":
        raise SystemExit(asyncio.run(_schedules(args, settings)))
    elif args.command == "submit":
        raise SystemExit(_submit(args, settings))


def _submit(args: argparse.Namespace, settings: Settings) -> int:
    from backend.submit import submit

    key = args.api_key or os.environ.get("JOBPLATFORM_API_KEY") or settings.bootstrap_api_key
    if not key:
        print("no API key: pass --api-key or set JOBPLATFORM_API_KEY", file=sys.stderr)
        return 2
    url = args.url or f"http://{settings.host}:{settings.port}"
    return submit(
        url,
        key,
        args.type,
        args.payload,
        wait=args.wait,
        download=args.download,
        idempotency_key=args.idempotency_key,
    )


if __name__ == "__main__":
    main()
