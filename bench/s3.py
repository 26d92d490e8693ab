"""An S3-compatible store for the bench: moto's standalone server (`python -m moto.server`) as a process
of the run, as tests/utils/s3.py runs it for the tests. It is a Python server holding objects in its own
memory: a stand-in for the S3 protocol, not for AWS's speed."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass

from aiobotocore.session import get_session

from backend.core.embedded import free_port
from bench.http import HOST, get_status
from bench.stack import BenchError, Proc, Processes, clean_env, wait_until

INSTALL_HINT = "moto's S3 server is not installed: pip install 'moto[s3]>=5' flask flask-cors (the dev extra)"
ACCESS_KEY, SECRET_KEY, REGION = "bench-key", "bench-secret", "us-east-1"


@dataclass
class MotoS3:
    """A running moto server on a loopback port."""

    proc: Proc
    port: int

    @classmethod
    async def start(cls, procs: Processes) -> MotoS3:
        """Start it (stopped with the run's other processes) and wait until it answers."""
        if not all(importlib.util.find_spec(m) for m in ("moto", "flask", "flask_cors")):
            raise BenchError(INSTALL_HINT)
        port = free_port()
        args = [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)]
        proc = procs.start("moto", args, clean_env())

        async def answers() -> bool:
            proc.check_alive()
            return await get_status(HOST, port, "/moto-api/") == 200

        await wait_until(answers, "moto's S3 server to answer")
        return cls(proc, port)

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    async def create_bucket(self, bucket: str) -> None:
        """Make the bucket (the platform never creates one)."""
        async with get_session().create_client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        ) as s3:
            await s3.create_bucket(Bucket=bucket)

    def settings(self, results_url: str) -> dict[str, str]:
        """The platform settings that put result files on this server under `results_url` (s3://…)."""
        return {
            "RESULTS_URL": results_url,
            "S3_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": REGION,
        }

    def stop(self) -> None:
        self.proc.stop()
