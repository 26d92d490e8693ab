"""GET/HEAD /jobs/{id}/download: headers, ranges, conditional requests, and the 404/409 cases."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from backend.services.purge import purge
from tests.utils import db
from tests.utils.stack import Stack, submit, wait_for


@dataclass
class Finished:
    """A completed csv_report, its owner's client and its bytes."""

    client: httpx.AsyncClient
    job: dict[str, Any]
    body: bytes

    @property
    def url(self) -> str:
        return f"/jobs/{self.job['id']}/download"

    @property
    def etag(self) -> str:
        return f'"{self.job["result_file"]["sha256"]}"'

    @property
    def size(self) -> int:
        return len(self.body)


@pytest.fixture(scope="module")
async def finished(stack: Stack) -> AsyncIterator[Finished]:
    async with await stack.client() as client:
        job = await submit(client, "csv_report", {"rows": 20_000, "seed": 5})
        done = await wait_for(client, job["id"], {"completed"})
        body = (await client.get(f"/jobs/{job['id']}/download")).content
        yield Finished(client, done, body)


async def completed_report(client: httpx.AsyncClient, rows: int = 10) -> dict[str, Any]:
    job = await submit(client, "csv_report", {"rows": rows})
    return await wait_for(client, job["id"], {"completed"})


async def test_full_download_headers_and_bytes(finished: Finished) -> None:
    response = await finished.client.get(finished.url)
    meta = finished.job["result_file"]
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == f'attachment; filename="{meta["filename"]}"'
    assert response.headers["content-length"] == str(meta["size_bytes"])
    assert response.headers["etag"] == finished.etag
    assert response.headers["accept-ranges"] == "bytes"
    assert "content-range" not in response.headers
    assert hashlib.sha256(response.content).hexdigest() == meta["sha256"]
    assert len(response.content) == meta["size_bytes"]


async def test_head_has_the_headers_and_no_body(finished: Finished) -> None:
    response = await finished.client.head(finished.url)
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-length"] == str(finished.size)
    assert response.headers["etag"] == finished.etag
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["content-disposition"].startswith("attachment; filename=")


@pytest.mark.parametrize(
    ("spec", "start", "stop"),
    [
        ("bytes=0-99", 0, 100),
        ("bytes=100-", 100, None),
        ("bytes=-100", -100, None),
        ("bytes=5000-5000", 5000, 5001),
        ("bytes=1000-99999999", 1000, None),
    ],
)
async def test_single_range_is_206(finished: Finished, spec: str, start: int, stop: int | None) -> None:
    response = await finished.client.get(finished.url, headers={"Range": spec})
    expected = finished.body[start:stop]
    first = start % finished.size
    assert response.status_code == 206
    assert response.content == expected
    assert response.headers["content-length"] == str(len(expected))
    assert response.headers["content-range"] == f"bytes {first}-{first + len(expected) - 1}/{finished.size}"
    assert response.headers["etag"] == finished.etag


async def test_head_with_range(finished: Finished) -> None:
    response = await finished.client.head(finished.url, headers={"Range": "bytes=10-19"})
    assert response.status_code == 206 and response.content == b""
    assert response.headers["content-length"] == "10"
    assert response.headers["content-range"] == f"bytes 10-19/{finished.size}"


@pytest.mark.parametrize("spec", ["bytes={size}-", "bytes={size}-{size}", "bytes=-0"])
async def test_unsatisfiable_range_is_416(finished: Finished, spec: str) -> None:
    response = await finished.client.get(finished.url, headers={"Range": spec.format(size=finished.size)})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{finished.size}"


async def test_ranges_with_thousands_of_digits_are_not_errors(finished: Finished) -> None:
    huge = "9" * 5000  # int() refuses more than ~4,300 digits
    past_the_end = await finished.client.get(finished.url, headers={"Range": f"bytes={huge}-"})
    assert past_the_end.status_code == 416
    clamped = await finished.client.get(finished.url, headers={"Range": f"bytes=0-{huge}"})
    assert clamped.status_code == 206 and clamped.content == finished.body


@pytest.mark.parametrize("spec", ["bytes=0-1,5-6", "bytes=9-3", "lines=1-2", "bytes=x-"])
async def test_unusable_range_gets_the_whole_file(finished: Finished, spec: str) -> None:
    response = await finished.client.get(finished.url, headers={"Range": spec})
    assert response.status_code == 200 and response.content == finished.body


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("tag", ["{etag}", "W/{etag}", '"other", {etag}', "*"])
async def test_if_none_match_is_304(finished: Finished, method: str, tag: str) -> None:
    headers = {"If-None-Match": tag.format(etag=finished.etag)}
    response = await finished.client.request(method, finished.url, headers=headers)
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == finished.etag


async def test_if_none_match_with_another_tag_is_200(finished: Finished) -> None:
    response = await finished.client.get(finished.url, headers={"If-None-Match": '"stale"'})
    assert response.status_code == 200 and response.content == finished.body


async def test_if_range_resumes_only_the_same_file(finished: Finished) -> None:
    same = {"Range": "bytes=10-", "If-Range": finished.etag}
    resumed = await finished.client.get(finished.url, headers=same)
    assert resumed.status_code == 206 and resumed.content == finished.body[10:]
    changed = {"Range": "bytes=10-", "If-Range": '"an-older-file"'}
    restarted = await finished.client.get(finished.url, headers=changed)
    assert restarted.status_code == 200 and restarted.content == finished.body


async def test_not_finished_is_409(client: httpx.AsyncClient) -> None:
    later = await submit(client, "sleep", {"seconds": 1}, scheduled_at="2999-01-01T00:00:00Z")
    running = await submit(client, "sleep", {"seconds": 3})
    await wait_for(client, running["id"], {"running"})
    for job in (later, running):
        for method in ("GET", "HEAD"):
            response = await client.request(method, f"/jobs/{job['id']}/download")
            assert response.status_code == 409, response.text
        await client.post(f"/jobs/{job['id']}/cancel")
    response = await client.get(f"/jobs/{later['id']}/download")
    assert response.status_code == 409
    assert response.json() == {"detail": "Job is cancelled; no file to download"}


async def test_completed_job_without_a_file_is_409(client: httpx.AsyncClient) -> None:
    job = await submit(client, "square_sum", {"data": [1]})
    await wait_for(client, job["id"], {"completed"})
    assert (await client.get(f"/jobs/{job['id']}/download")).status_code == 409


async def test_another_keys_job_is_404(finished: Finished, client: httpx.AsyncClient) -> None:
    for method in ("GET", "HEAD"):
        response = await client.request(method, finished.url)
        assert response.status_code == 404
    response = await client.get(finished.url)
    assert response.json() == {"detail": "Job not found"}
    unknown = await client.get("/jobs/0190a000-0000-7000-8000-000000000000/download")
    assert unknown.status_code == 404


async def test_missing_or_replaced_file_is_404(client: httpx.AsyncClient, stack: Stack) -> None:
    for damage in ("delete", "replace"):
        done = await completed_report(client)
        (path,) = (stack.settings.resolved_results_dir / done["id"]).glob("[!.]*")
        if damage == "delete":
            path.unlink()
        else:
            path.write_bytes(b"not the bytes the row describes")
        response = await client.get(f"/jobs/{done['id']}/download")
        assert response.status_code == 404
        assert response.json() == {"detail": "Result file not found (purged or missing)"}
        assert (await client.head(f"/jobs/{done['id']}/download")).status_code == 404


async def test_purged_job_is_404(client: httpx.AsyncClient, stack: Stack) -> None:
    done = await completed_report(client)
    long_ago = datetime.now(UTC) - timedelta(days=stack.settings.job_retention_days + 1)
    sql = "UPDATE jobs SET finished_at = $1 WHERE id = $2"
    await db.execute(stack.settings, sql, long_ago, uuid.UUID(done["id"]))
    async with db.resources(stack.settings) as res:
        for _ in range(50):  # a worker's own purge cron may hold the lock for a moment
            if (await purge(res)).jobs:
                break
            await asyncio.sleep(0.1)
    assert not (stack.settings.resolved_results_dir / done["id"]).exists()
    assert (await client.get(f"/jobs/{done['id']}/download")).status_code == 404
