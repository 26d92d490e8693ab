"""`bundle`: one ZIP of the parents' result files plus `results.json` with every parent's `result`.

Streamed with constant memory: the standard library's `zipfile` writes to a non-seekable sink (local
headers followed by data descriptors, ZIP64 forced for every member so a member past 4 GiB needs no
seek back), and each parent's file is read in 1 MiB chunks and deflated chunk by chunk. The sink is the
usual `HashingWriter`, so the ZIP gets its sha256 and size like every result file. No dependency needed:
`zipfile` already streams this way (`stream-zip`/`zipstream-ng` solve streaming to an HTTP response,
which a result file, written once to storage, does not need).
"""

from __future__ import annotations

import json
import zipfile
from typing import IO, Any

import anyio

from backend.domain.payloads import BundlePayload
from worker.context import JobContext, Outcome, Parent
from worker.files import HashingWriter, publish, scratch_file

CONTENT_TYPE = "application/zip"
RESULTS = "results.json"


class _Sink:
    """The file-like object `zipfile` writes to: no `tell`/`seek`, so it streams (data descriptors)."""

    def __init__(self, writer: HashingWriter) -> None:
        self.writer = writer

    def write(self, data: bytes) -> int:
        self.writer.write(data)
        return len(data)

    def flush(self) -> None:
        """Nothing to do: `HashingWriter.finish` flushes and fsyncs once the ZIP is complete."""

    def close(self) -> None:
        """Nothing to do: `scratch_file` finishes or discards the writer."""


def member_name(index: int, parent: Parent) -> str:
    """A parent's file inside the ZIP: its position and id keep names unique whatever the file names."""
    assert parent.file is not None
    return f"{index:03d}-{parent.id}/{parent.file.filename}"


def results_document(parents: list[Parent]) -> bytes:
    """`results.json`: every parent's id, type, name, result, and where its file is in the ZIP."""
    entries: list[dict[str, Any]] = [
        {
            "id": str(p.id),
            "type": p.type,
            "name": p.name,
            "result": p.result,
            "file": member_name(i, p) if p.file else None,
        }
        for i, p in enumerate(parents)
    ]
    return json.dumps({"jobs": entries}, indent=2, ensure_ascii=False).encode()


async def _add_file(ctx: JobContext, archive: zipfile.ZipFile, name: str, key: str) -> None:
    info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    member: IO[bytes] = await anyio.to_thread.run_sync(lambda: archive.open(info, "w", force_zip64=True))
    async for chunk in await ctx.storage.stream(key):
        await anyio.to_thread.run_sync(member.write, chunk)
    await anyio.to_thread.run_sync(member.close)


async def handle(ctx: JobContext, payload: BundlePayload) -> Outcome:
    """ZIP the parents' files and results."""
    parents = await ctx.parents()
    filename = payload.filename or f"bundle-{ctx.job_id}.zip"
    with_files = [(i, p) for i, p in enumerate(parents) if p.file is not None]
    async with scratch_file(ctx, filename) as writer:
        archive = zipfile.ZipFile(_Sink(writer), "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True)
        for done, (i, parent) in enumerate(with_files, start=1):
            assert parent.file is not None
            await _add_file(ctx, archive, member_name(i, parent), parent.file.key)
            ctx.progress.report(done / (len(with_files) + 1))
        document = results_document(parents)
        await anyio.to_thread.run_sync(archive.writestr, RESULTS, document)
        await anyio.to_thread.run_sync(archive.close)
    info = await publish(ctx, writer, filename, CONTENT_TYPE)
    return Outcome(result={"files": len(with_files), "jobs": len(parents)}, file=info)
