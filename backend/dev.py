"""`jobplatform dev` (= `make run`): everything on one machine, embedded servers when no URLs are set."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
from pathlib import Path
from types import FrameType

from backend.core.config import Settings
from backend.core.embedded import EmbeddedPostgres, EmbeddedValkey, create_database, database_url
from backend.launcher import ChildProcess, Supervisor, platform_command
from backend.services.auth import generate_key

DEV_DATABASE = "jobplatform"


def _previous_key(env_file: Path) -> str | None:
    """The key a previous `make run` generated, so restarts keep working credentials."""
    if not env_file.exists():
        return None
    for line in env_file.read_text().splitlines():
        if line.startswith("export BOOTSTRAP_API_KEY="):
            return line.split("=", 1)[1].strip("'\"")
    return None


def _write_env(env_file: Path, values: dict[str, str]) -> None:
    env_file.write_text("".join(f"export {k}='{v}'\n" for k, v in values.items()))
    env_file.chmod(0o600)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM during start-up acts like Ctrl-C: `run_dev`'s `finally` still stops what was started."""
    raise KeyboardInterrupt


def run_dev(settings: Settings) -> None:
    """Start servers, migrate, keep API + worker running (restarted if they die) until Ctrl-C or SIGTERM."""
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    env_file = data_dir / "dev.env"
    pg = EmbeddedPostgres(data_dir / "postgres") if not settings.database_url else None
    valkey = EmbeddedValkey(data_dir / "valkey") if not settings.redis_url else None
    supervisor: Supervisor | None = None
    previous_sigterm = signal.signal(signal.SIGTERM, _interrupt)
    try:
        db_url = settings.database_url
        if pg is not None:
            admin = pg.start()
            asyncio.run(create_database(admin, DEV_DATABASE))
            db_url = database_url(admin, DEV_DATABASE)
        redis_url = valkey.start() if valkey is not None else settings.redis_url
        assert db_url and redis_url
        key = settings.bootstrap_api_key or _previous_key(env_file) or generate_key()
        values = {
            "DATABASE_URL": db_url,
            "REDIS_URL": redis_url,
            "RESULTS_DIR": str(settings.resolved_results_dir),
            "BOOTSTRAP_API_KEY": key,
            "PROMETHEUS_MULTIPROC_DIR": str(_metrics_dir(settings)),
        }
        # An S3 store is named too (its credentials stay in the caller's environment, not in the file).
        store = {"RESULTS_URL": settings.results_url, "S3_ENDPOINT_URL": settings.s3_endpoint_url}
        values.update({name: value for name, value in store.items() if value})
        _write_env(env_file, values)
        env = {**os.environ, **values}
        subprocess.run(platform_command("migrate"), env=env, check=True)
        supervisor = _platform(env)
        supervisor.start()
        _print_banner(settings, key, env_file)
        supervisor.run()
    finally:
        signal.signal(
            signal.SIGTERM, signal.SIG_IGN
        )  # already stopping: a second SIGTERM must not cut it short
        _stop(supervisor, valkey, pg)
        signal.signal(signal.SIGTERM, previous_sigterm)


def _metrics_dir(settings: Settings) -> Path:
    """The folder where the API and the workers (those of a second terminal too) add up their Prometheus
    counts: the configured one, else `$DATA_DIR/metrics`, emptied first (each `make run` counts from 0)."""
    if settings.prometheus_multiproc_dir is not None:
        folder = settings.prometheus_multiproc_dir
    else:
        folder = settings.data_dir / "metrics"
        shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    return folder.resolve()


def _stop(supervisor: Supervisor | None, valkey: EmbeddedValkey | None, pg: EmbeddedPostgres | None) -> None:
    """Stop the children first, then Valkey, then PostgreSQL (whatever of them was started)."""
    if supervisor is not None:
        supervisor.stop()
    if valkey is not None:
        valkey.stop()
    if pg is not None:
        pg.stop()


def _platform(env: dict[str, str]) -> Supervisor:
    """The API and one worker, each restarted with back-off whenever it exits."""
    children = {
        role: ChildProcess(platform_command(role), env=env, own_group=True) for role in ("api", "worker")
    }
    return Supervisor(children)


def _print_banner(settings: Settings, key: str, env_file: Path) -> None:
    """Where to find the API and how to reach it from another shell."""
    base = f"http://{settings.host}:{settings.port}"
    print(
        f"\n  Async Job Platform is starting\n"
        f"  Swagger UI : {base}/docs\n"
        f"  Dashboard  : {base}/ui  (sign in with the API key below)\n"
        f"  API key    : {key}\n"
        f"  Env file   : {env_file}  (source it in another shell to add workers)\n"
        f"  Ctrl-C stops everything.\n",
        flush=True,
    )
