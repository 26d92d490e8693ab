"""`jobplatform submit`: submit a job over HTTP, optionally wait with a progress bar and download the file."""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from backend.domain.enums import TERMINAL_STATUSES, JobStatus

TERMINAL = {status.value for status in TERMINAL_STATUSES}
BAR_WIDTH = 30


def _bar(job: dict[str, Any]) -> str:
    filled = int(job["progress"] * BAR_WIDTH)
    return f"\r[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {job['progress'] * 100:5.1f}% {job['status']:<10}"


def _wait(client: httpx.Client, job_id: str, poll_s: float) -> dict[str, Any]:
    while True:
        job: dict[str, Any] = client.get(f"/jobs/{job_id}").raise_for_status().json()
        sys.stderr.write(_bar(job))
        sys.stderr.flush()
        if job["status"] in TERMINAL:
            sys.stderr.write("\n")
            return job
        time.sleep(poll_s)


def _download(client: httpx.Client, job_id: str, target: Path) -> None:
    with client.stream("GET", f"/jobs/{job_id}/download") as response, target.open("wb") as out:
        response.raise_for_status()
        for chunk in response.iter_bytes(1024 * 1024):
            out.write(chunk)


def submit(
    base_url: str,
    api_key: str,
    job_type: str,
    payload: str,
    *,
    wait: bool,
    download: Path | None,
    idempotency_key: str | None = None,
    poll_s: float = 0.5,
) -> int:
    """Run the command; returns the process exit code (0 when the job completed or was only submitted)."""
    headers = {"X-API-Key": api_key, "Idempotency-Key": idempotency_key or str(uuid.uuid4())}
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as client:
        response = client.post("/jobs", json={"type": job_type, "payload": json.loads(payload)})
        if response.status_code != 201:
            print(f"error {response.status_code}: {response.text}", file=sys.stderr)
            return 1
        job = response.json()
        print(job["id"])
        if not (wait or download):
            return 0
        job = _wait(client, job["id"], poll_s)
        if job["status"] != JobStatus.COMPLETED:
            print(f"job {job['status']}: {job['error']}", file=sys.stderr)
            return 1
        print(json.dumps(job["result"]))
        if download is not None:
            _download(client, job["id"], download)
            print(f"downloaded {download} ({job['result_file']['size_bytes']} bytes)", file=sys.stderr)
    return 0
