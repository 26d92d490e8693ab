"""`jobs_export`: the caller's jobs streamed from PostgreSQL (server-side cursor) into a CSV file.

Cells are neutralised against spreadsheet formula injection as OWASP "CSV Injection" advises: a cell
that starts with = + - @ TAB or CR gets a leading apostrophe, so spreadsheets show it as text, and
every cell is quoted (inner quotes doubled), so a comma, semicolon or line break inside a cell cannot
start a new cell whose first character is a trigger, whatever separator the spreadsheet assumes.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

import anyio

from backend.domain.payloads import JobsExportPayload
from backend.repo.jobs import JobFilters, JobRepository
from worker.context import JobContext, Outcome
from worker.files import HashingWriter, publish, scratch_file

BATCH_ROWS = 2000
COLUMNS = ("id", "type", "name", "status", "attempts", "error", "created_at", "started_at", "finished_at")
CONTENT_TYPE = "text/csv; charset=utf-8"
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(cell: Any) -> str:
    """A cell value safe to open in a spreadsheet (every cell, not only the ones users type)."""
    if cell is None:
        return ""
    text = cell.isoformat() if hasattr(cell, "isoformat") else str(cell)
    return "'" + text if text.startswith(FORMULA_TRIGGERS) else text


def format_rows(rows: Sequence[Sequence[Any]]) -> bytes:
    """CSV text for a batch of rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL)
    writer.writerows([neutralise(c) for c in row] for row in rows)
    return buffer.getvalue().encode()


def _filters(payload: JobsExportPayload) -> JobFilters:
    return JobFilters(payload.status, payload.type, payload.created_after, payload.created_before)


async def _count(ctx: JobContext, filters: JobFilters) -> int:
    return await JobRepository(ctx.pool).count_owned(ctx.owner_id, filters)


async def _stream_into(ctx: JobContext, writer: HashingWriter, filters: JobFilters, total: int) -> int:
    written, batch = 0, []
    await anyio.to_thread.run_sync(writer.write, format_rows([COLUMNS]))
    async with ctx.pool.acquire() as conn:
        async for row in JobRepository(conn).stream_owned(ctx.owner_id, filters, BATCH_ROWS):
            batch.append(row)
            if len(batch) >= BATCH_ROWS:
                await anyio.to_thread.run_sync(writer.write, format_rows(batch))
                written += len(batch)
                batch = []
                ctx.progress.report(written / max(total, 1))
    if batch:
        await anyio.to_thread.run_sync(writer.write, format_rows(batch))
        written += len(batch)
    return written


async def handle(ctx: JobContext, payload: JobsExportPayload) -> Outcome:
    """Export the owner's matching jobs."""
    filters = _filters(payload)
    total = await _count(ctx, filters)
    filename = f"jobs-export-{ctx.job_id}.csv"
    async with scratch_file(ctx, filename) as writer:
        written = await _stream_into(ctx, writer, filters, total)
    info = await publish(ctx, writer, filename, CONTENT_TYPE)
    return Outcome(result={"rows": written}, file=info)
