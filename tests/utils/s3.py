"""A real S3-compatible server for the tests: moto's standalone server in its own process.

Not an in-process mock: the platform's S3 client talks HTTP to another process, which the tests can stop
and start again (a store that goes down). A missing moto fails the tests with the install command; they
are never skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aiobotocore.session import get_session

from backend.core.embedded import free_port
from backend.launcher import ChildProcess

if TYPE_CHECKING:
    from types_aiobotocore_s3.client import S3Client

INSTALL_HINT = (
    "moto's S3 server is not installed: pip install 'moto[s3]>=5' flask flask-cors "
    "(or the project's dev extra: pip install -e '.[dev]')"
)
ACCESS_KEY, SECRET_KEY, REGION = "testing-key", "testing-secret", "us-east-1"
BUCKET = "results"


def require_moto() -> None:
    """Fail (never skip) with the install command when moto's server cannot run here."""
    if not all(importlib.util.find_spec(m) for m in ("moto", "flask", "flask_cors")):
        pytest.fail(INSTALL_HINT, pytrace=False)


@dataclass
class S3Server:
    """`python -m moto.server` on a loopback port; `stop()` and `start()` again (its objects are lost)."""

    log_path: Path
    port: int = field(default_factory=free_port)
    env: Mapping[str, str] = field(default_factory=dict)
    process: ChildProcess | None = None

    @property
    def endpoint(self) -> str:
        """The server's base URL (S3_ENDPOINT_URL)."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> S3Server:
        """Start the process and wait until it answers (blocking: a fixture's or a thread's job)."""
        require_moto()
        args = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        self.process = ChildProcess(args, env=env, log_path=self.log_path).start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.alive(), self.log_path.read_text(errors="replace")
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1).close()
                return self
            time.sleep(0.1)
        raise AssertionError(f"moto server did not start: {self.log_path.read_text(errors='replace')}")

    def stop(self) -> None:
        """SIGKILL: the store vanishes mid-request, as a crashed or unreachable one does."""
        if self.process is not None:
            self.process.kill()

    def overrides(self, prefix: str | None = None, bucket: str = BUCKET, **extra: Any) -> dict[str, Any]:
        """Settings that put a stack's results on this server (under a fresh prefix unless given)."""
        prefix = prefix if prefix is not None else f"t-{uuid.uuid4().hex[:8]}"
        return {
            "results_url": f"s3://{bucket}/{prefix}".rstrip("/"),
            "s3_endpoint_url": self.endpoint,
            "aws_access_key_id": ACCESS_KEY,
            "aws_secret_access_key": SECRET_KEY,
            "aws_region": REGION,
            **extra,
        }

    @contextlib.asynccontextmanager
    async def client(
        self, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY
    ) -> AsyncIterator[S3Client]:
        """An S3 client on this server, for the tests' own look at the bucket."""
        async with get_session().create_client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
        ) as client:
            yield client

    async def create_bucket(self, bucket: str = BUCKET) -> None:
        """Make the bucket (the platform never creates one)."""
        async with self.client() as s3:
            with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
                await s3.create_bucket(Bucket=bucket)

    async def keys(self, prefix: str = "", bucket: str = BUCKET) -> list[str]:
        """Every object key under `prefix`."""
        async with self.client() as s3:
            pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            return [item["Key"] async for page in pages for item in page.get("Contents", [])]

    async def uploads(self, prefix: str = "", bucket: str = BUCKET) -> list[str]:
        """Keys of multipart uploads started and neither completed nor aborted."""
        async with self.client() as s3:
            page = await s3.list_multipart_uploads(Bucket=bucket, Prefix=prefix)
            return [u["Key"] for u in page.get("Uploads", [])]


@contextlib.asynccontextmanager
async def running_s3(log_path: Path, **env: str) -> AsyncIterator[S3Server]:
    """A private moto server (for tests that stop it or turn its authentication on), with the bucket."""
    server = await asyncio.to_thread(S3Server(log_path, env=env).start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


def object_prefix(settings_url: str, deployment_id: uuid.UUID) -> str:
    """Where a deployment's objects live in the bucket, for `RESULTS_URL=s3://bucket/<prefix>`."""
    prefix = settings_url.removeprefix("s3://").partition("/")[2].strip("/")
    return f"{prefix}/{deployment_id}/" if prefix else f"{deployment_id}/"
