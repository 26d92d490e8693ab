"""`jobplatform dev` (= `make run`): everything on one machine, embedded servers when no URLs are set."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from backend.core.config import Settings
from backend.core.embedded import EmbeddedPostgres, EmbeddedValkey, create_database, database_url
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


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "backend.cli", *args], env=env)


def run_dev(settings: Settings) -> None:
    """Start servers, migrate, run API + worker until Ctrl-C, then stop everything."""
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    env_file = data_dir / "dev.env"
    pg = EmbeddedPostgres(data_dir / "postgres") if not settings.database_url else None
    valkey = EmbeddedValkey(data_dir / "valkey") if not settings.redis_url else None
    children: list[subprocess.Popen[bytes]] = []
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
        }
        _write_env(env_file, values)
        env = {**os.environ, **values}
        subprocess.run([sys.executable, "-m", "backend.cli", "migrate"], env=env, check=True)
        children.append(_spawn(["api"], env))
        children.append(_spawn(["worker"], env))
        base = f"http://{settings.host}:{settings.port}"
        print(
            f"\n  Async Job Platform is starting\n"
            f"  Swagger UI : {base}/docs\n"
            f"  API key    : {key}\n"
            f"  Env file   : {env_file}  (source it in another shell to add workers)\n"
            f"  Ctrl-C stops everything.\n",
            flush=True,
        )
        _wait(children)
    finally:
        _stop(children)
        if valkey is not None:
            valkey.stop()
        if pg is not None:
            pg.stop()


def _wait(children: list[subprocess.Popen[bytes]]) -> None:
    stop = False

    def _on_signal(signum: int, _: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    while not stop and all(c.poll() is None for c in children):
        time.sleep(0.2)


def _stop(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children:
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            child.kill()
