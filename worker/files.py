"""Writing a result file: scratch file, running sha256 and size, then an atomic publish.

A handler writes into `scratch_file(...)`; only a run that finishes writing gets a closed, fsynced
scratch file, and only `publish` makes it visible under its final key (one rename). A run that fails,
is cancelled or times out deletes its scratch file; one that is killed leaves it behind, and the next
run of the job sweeps it away before it starts, so a re-run leaves exactly one complete file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import BinaryIO

import anyio

from backend.adapters.storage import file_key
from backend.domain.records import StoredFile
from worker.context import JobContext

WRITE_BUFFER = 1024 * 1024


class HashingWriter:
    """Writes bytes to a scratch file, hashing and counting as it goes (used from one thread)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sha256 = hashlib.sha256()
        self.size = 0
        self._file: BinaryIO = path.open("wb", buffering=WRITE_BUFFER)

    def write(self, data: bytes) -> None:
        """Append a chunk."""
        self.sha256.update(data)
        self.size += len(data)
        self._file.write(data)

    def finish(self) -> None:
        """Flush, fsync and close: the bytes are on disk before anyone can rename the file into view."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()

    def discard(self) -> None:
        """Close and delete the unfinished file."""
        with contextlib.suppress(OSError):  # a failed flush (disk full) must not stop the delete
            self._file.close()
        self.path.unlink(missing_ok=True)


@asynccontextmanager
async def scratch_file(ctx: JobContext, filename: str) -> AsyncIterator[HashingWriter]:
    """A writer on a fresh scratch file for this job; finished on success, deleted on any error.

    Leftovers of an earlier run that was killed are removed first: the claim guarantees this is the
    only live run of the job.
    """
    await ctx.storage.clear_scratch(ctx.job_id)
    path = await anyio.to_thread.run_sync(ctx.storage.scratch_path, ctx.job_id, filename)  # mkdir, marker
    writer = await anyio.to_thread.run_sync(HashingWriter, path)
    try:
        yield writer
        await anyio.to_thread.run_sync(writer.finish)
    except BaseException:
        await anyio.to_thread.run_sync(writer.discard)  # not abandoned on cancel: the thread finishes
        raise


async def publish(ctx: JobContext, writer: HashingWriter, filename: str, content_type: str) -> StoredFile:
    """Move a finished scratch file to this run's own key; the fenced completion picks the run that counts."""
    key = file_key(ctx.job_id, f"{ctx.run_id}-{filename}")
    await ctx.storage.put(key, writer.path)
    return StoredFile(key, filename, writer.size, writer.sha256.hexdigest(), content_type)
