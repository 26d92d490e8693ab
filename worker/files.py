"""Writing a result file: scratch file, running sha256 and size, then an atomic publish."""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from backend.services.storage import Storage, file_key
from worker.context import FileInfo, JobContext

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

    def close(self) -> None:
        """Flush and close the file."""
        self._file.close()

    def __enter__(self) -> HashingWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
        if exc_type is not None:
            self.path.unlink(missing_ok=True)


async def publish(ctx: JobContext, writer: HashingWriter, filename: str, content_type: str) -> FileInfo:
    """Move a finished scratch file to its final key and describe it."""
    key = file_key(ctx.job_id, filename)
    await ctx.storage.put(key, writer.path)
    return FileInfo(key, filename, writer.size, writer.sha256.hexdigest(), content_type)


def scratch_writer(storage: Storage, ctx: JobContext, filename: str) -> HashingWriter:
    """A writer on a fresh scratch file for this job."""
    return HashingWriter(storage.scratch_path(ctx.job_id, filename))
