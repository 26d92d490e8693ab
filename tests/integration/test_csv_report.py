"""csv_report end to end: real workers write the file, the API serves it; crashes and re-runs."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import httpx

from backend.adapters.storage import MARKER
from tests.utils.stack import Stack, submit, wait_for
from worker.context import Progress
from worker.files import HashingWriter
from worker.tasks.csv_report import HEADER, write_report

BIG_ROWS = 2_000_000  # ~100 MB, a second or two of writing: long enough to catch mid-run


def job_folder(stack: Stack, job_id: str) -> Path:
    return stack.settings.resolved_results_dir / job_id


def folder_names(stack: Stack, job_id: str) -> list[str]:
    folder = job_folder(stack, job_id)
    return sorted(p.name for p in folder.iterdir() if p.name != MARKER) if folder.exists() else []


def published(stack: Stack, job_id: str, filename: str) -> Path:
    """The job's one published file (named per run: `<run>-<filename>`); fails on leftovers or extras."""
    names = folder_names(stack, job_id)
    assert len(names) == 1 and names[0].endswith("-" + filename), names
    return job_folder(stack, job_id) / names[0]


def expected_report(tmp: Path, rows: int, seed: int) -> bytes:
    """The report generated in this process, to compare with what the worker wrote."""
    writer = HashingWriter(tmp / f"expected-{rows}-{seed}.csv")
    write_report(writer, rows, seed, Progress(), threading.Event())
    writer.finish()
    return writer.path.read_bytes()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


async def wait_progressing(client: httpx.AsyncClient, job_id: str, within_s: float = 20) -> float:
    """Wait until the job is running and has reported some progress; return that progress."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        status = (await client.get(f"/jobs/{job_id}/status")).json()
        assert status["status"] in {"pending", "running"}, status
        if status["status"] == "running" and 0 < status["progress"] < 1:
            return float(status["progress"])
        await asyncio.sleep(0.02)
    raise AssertionError(f"job {job_id} never showed progress")


async def test_report_rows_header_and_determinism(client: httpx.AsyncClient, tmp_path: Path) -> None:
    jobs = [await submit(client, "csv_report", {"rows": 1500, "seed": seed}) for seed in (9, 9, 10)]
    done = [await wait_for(client, job["id"], {"completed", "failed"}) for job in jobs]
    assert [d["status"] for d in done] == ["completed"] * 3, done
    first = done[0]
    assert first["result"] == {"rows": 1500, "seed": 9}
    meta = first["result_file"]
    assert meta["filename"] == f"report-{first['id']}.csv"
    assert meta["content_type"] == "text/csv; charset=utf-8"
    assert meta["url"] == f"/jobs/{first['id']}/download"

    body = (await client.get(meta["url"])).content
    rows = list(csv.reader(io.StringIO(body.decode(), newline="")))
    assert rows[0] == HEADER.strip().split(",")
    assert len(rows) == 1501
    assert [int(r[0]) for r in rows[1:]] == list(range(1, 1501))
    assert body == expected_report(tmp_path, 1500, 9)  # the worker writes what the seed says

    shas = [d["result_file"]["sha256"] for d in done]
    assert shas[0] == shas[1] != shas[2]


async def test_download_matches_recorded_size_and_sha256(client: httpx.AsyncClient, stack: Stack) -> None:
    job = await submit(client, "csv_report", {"rows": 60_000, "seed": 3})
    done = await wait_for(client, job["id"], {"completed"})
    meta = done["result_file"]
    response = await client.get(meta["url"])
    assert response.status_code == 200
    assert len(response.content) == meta["size_bytes"] == int(response.headers["content-length"])
    assert hashlib.sha256(response.content).hexdigest() == meta["sha256"]
    assert response.headers["etag"] == f'"{meta["sha256"]}"'
    published(stack, job["id"], meta["filename"])  # one file, no scratch left


async def test_progress_is_written_and_file_is_hidden_while_writing(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    job = await submit(client, "csv_report", {"rows": BIG_ROWS, "seed": 1})
    seen = {await wait_progressing(client, job["id"])}
    # Mid-run: nothing to download, and only a scratch file on disk.
    assert (await client.get(f"/jobs/{job['id']}/download")).status_code == 409
    assert (await client.head(f"/jobs/{job['id']}/download")).status_code == 409
    names = folder_names(stack, job["id"])
    assert len(names) == 1 and names[0].endswith(".part"), names
    while (status := (await client.get(f"/jobs/{job['id']}/status")).json())["status"] == "running":
        seen.add(status["progress"])
        await asyncio.sleep(0.02)
    assert status == {"id": job["id"], "status": "completed", "progress": 1.0}
    assert len([p for p in seen if 0 < p < 1]) >= 2, seen  # written to the row several times

    done = (await client.get(f"/jobs/{job['id']}")).json()
    meta = done["result_file"]
    path = published(stack, job["id"], meta["filename"])
    assert path.stat().st_size == meta["size_bytes"]
    assert await anyio.to_thread.run_sync(file_sha256, path) == meta["sha256"]


async def test_cancel_mid_report_cleans_up_and_retry_leaves_one_file(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    job = await submit(client, "csv_report", {"rows": BIG_ROWS, "seed": 2})
    await wait_progressing(client, job["id"])
    assert (await client.post(f"/jobs/{job['id']}/cancel")).status_code == 202
    cancelled = await wait_for(client, job["id"], {"cancelled", "completed"})
    assert cancelled["status"] == "cancelled" and cancelled["result_file"] is None
    assert folder_names(stack, job["id"]) == []  # the scratch file went with the run
    assert (await client.get(f"/jobs/{job['id']}/download")).status_code == 409

    assert (await client.post(f"/jobs/{job['id']}/retry")).status_code == 202
    done = await wait_for(client, job["id"], {"completed", "failed"}, timeout=60)
    assert done["status"] == "completed", done
    published(stack, job["id"], done["result_file"]["filename"])


async def test_report_killed_mid_write_is_rerun_into_exactly_one_file(isolated: Any) -> None:
    async with isolated(workers=1) as stack, await stack.client() as client:
        job = await submit(client, "csv_report", {"rows": BIG_ROWS, "seed": 4})
        await wait_progressing(client, job["id"])
        stack.workers[0].kill()  # SIGKILL: no cleanup at all
        leftovers = folder_names(stack, job["id"])
        assert len(leftovers) == 1 and leftovers[0].endswith(".part"), leftovers
        stack.spawn_worker()  # reconcile on this one sees the lapsed lease and re-runs the job

        done = await wait_for(client, job["id"], {"completed", "failed"}, timeout=60)
        assert done["status"] == "completed" and done["attempts"] == 2, done
        meta = done["result_file"]
        path = published(stack, job["id"], meta["filename"])
        head = await client.head(meta["url"])
        assert head.status_code == 200 and int(head.headers["content-length"]) == meta["size_bytes"]
        assert await anyio.to_thread.run_sync(file_sha256, path) == meta["sha256"]
