"""Result-file storage behind a small interface; the local folder is the default backend.

Handlers write into a scratch file, then `put` publishes it atomically under its key, so a file is
never visible half-written. The S3-compatible backend (`backend/adapters/s3.py`) implements the same
protocol; every backend reports its failures as `OSError`s.

A store may be shared by several deployments (each its own database). Every backend is made with this
deployment's id and marks what it writes with it, so `job_ids` (the orphan sweep's list) never names
another deployment's files: LocalStorage writes a marker file into each job folder; S3Storage keeps
keys under a deployment prefix.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO, Protocol

import anyio

CHUNK_SIZE = 1024 * 1024
PART_SUFFIX = ".part"
MARKER = ".deployment"  # in each job folder: the id of the deployment that made it

log = logging.getLogger(__name__)


class StorageError(OSError):
    """The result store failed (unreachable, refused, misconfigured)."""


class Storage(Protocol):
    """Where result files live."""

    def scratch_path(self, job_id: uuid.UUID, filename: str) -> Path:
        """A local path to write a new file into before `put` (blocking: call it in a thread)."""
        ...

    async def put(self, key: str, scratch: Path) -> None:
        """Publish a finished scratch file under `key`, replacing any previous one atomically."""
        ...

    async def stream(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Open `key` now (FileNotFoundError if it is gone) and return its bytes from `start` to `end`
        inclusive, in large chunks: a caller can still answer 404 before it sends any headers."""
        ...

    async def redirect_url(self, key: str, disposition: str, content_type: str) -> str | None:
        """A URL clients can fetch `key` from directly (a presigned GET), or None: stream it instead."""
        ...

    async def size(self, key: str) -> int | None:
        """The size of `key`, or None if it does not exist."""
        ...

    async def exists(self, key: str) -> bool:
        """Whether `key` exists."""
        ...

    async def delete(self, key: str) -> bool:
        """Remove `key`; False if it was not there."""
        ...

    async def delete_job_files(self, job_id: uuid.UUID) -> int:
        """Delete every file of a job (published or scratch); returns how many."""
        ...

    async def job_ids(self) -> list[uuid.UUID]:
        """Jobs this deployment stored anything for (for the orphan sweep): never another deployment's.

        An entry that cannot be read is logged and left out; it never fails the whole listing.
        """
        ...

    async def clear_scratch(self, job_id: uuid.UUID) -> None:
        """Remove leftovers of an earlier, interrupted run of the job."""
        ...

    async def prune(self, job_id: uuid.UUID, keep: str) -> int:
        """Delete every file of the job except `keep` (older runs' results); returns how many."""
        ...


def _replace_durably(scratch: Path, target: Path) -> None:
    """Rename, then fsync the folder so the new name survives a power cut."""
    os.replace(scratch, target)
    fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_key(job_id: uuid.UUID, filename: str) -> str:
    """The storage key of a job's file."""
    return f"{job_id}/{filename}"


def uuid_or_none(name: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(name)
    except ValueError:
        return None


class LocalStorage:
    """Files under one folder: `<root>/<job_id>/<filename>`; rename within the folder is atomic.

    Each job folder also holds `.deployment`, the id of the deployment that made it.
    """

    def __init__(self, root: Path, deployment_id: uuid.UUID) -> None:
        self.root = root
        self.deployment_id = deployment_id
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError("storage key escapes the root")
        return path

    def scratch_path(self, job_id: uuid.UUID, filename: str) -> Path:
        """`<root>/<job_id>/.<filename>.<random>.part`, on the same filesystem as the final file.

        Makes the job's folder and marks it as this deployment's.
        """
        folder = self.root / str(job_id)
        folder.mkdir(parents=True, exist_ok=True)
        self._mark(folder)
        return folder / f".{filename}.{uuid.uuid4().hex[:12]}{PART_SUFFIX}"

    def _mark(self, folder: Path) -> None:
        """Write this deployment's marker into the folder, atomically (a torn marker would leak files)."""
        with contextlib.suppress(FileNotFoundError):
            if self._owner(folder) == self.deployment_id:
                return
        scratch = folder / f"{MARKER}.{uuid.uuid4().hex[:12]}{PART_SUFFIX}"
        scratch.write_text(str(self.deployment_id))
        os.replace(scratch, folder / MARKER)

    @staticmethod
    def _owner(folder: Path) -> uuid.UUID | None:
        """The deployment named by the folder's marker (FileNotFoundError without one)."""
        with (folder / MARKER).open(errors="replace") as marker:
            return uuid_or_none(marker.read(64).strip())

    async def put(self, key: str, scratch: Path) -> None:
        """Atomic rename over any previous version (readers see the old file or the new, never a mix)."""
        target = self._path(key)
        await anyio.to_thread.run_sync(_replace_durably, scratch, target)

    async def stream(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Open the file now; read it in 1 MiB chunks, each in a thread so the event loop never blocks."""
        handle: BinaryIO = await anyio.to_thread.run_sync(self._path(key).open, "rb")
        return self._chunks(handle, start, end)

    async def _chunks(self, handle: BinaryIO, start: int, end: int | None) -> AsyncIterator[bytes]:
        try:
            await anyio.to_thread.run_sync(handle.seek, start)
            remaining = None if end is None else end - start + 1
            while remaining is None or remaining > 0:
                size = CHUNK_SIZE if remaining is None else min(CHUNK_SIZE, remaining)
                data = await anyio.to_thread.run_sync(handle.read, size)
                if not data:
                    break
                if remaining is not None:
                    remaining -= len(data)
                yield data
        finally:
            await anyio.to_thread.run_sync(handle.close)

    async def redirect_url(self, key: str, disposition: str, content_type: str) -> str | None:
        """None: a local file is always streamed through the API."""
        return None

    async def size(self, key: str) -> int | None:
        """File size, or None when missing."""
        try:
            stat = await anyio.to_thread.run_sync(os.stat, self._path(key))
        except FileNotFoundError:
            return None
        return stat.st_size

    async def exists(self, key: str) -> bool:
        """Whether the file is there."""
        return await self.size(key) is not None

    async def delete(self, key: str) -> bool:
        """Unlink the file; False when it was already gone."""
        path = self._path(key)
        try:
            await anyio.to_thread.run_sync(path.unlink)
        except FileNotFoundError:
            return False
        return True

    async def delete_job_files(self, job_id: uuid.UUID) -> int:
        """Remove the job's folder."""
        folder = self.root / str(job_id)

        def _rm() -> int:
            if not folder.exists():
                return 0
            count = sum(1 for p in folder.iterdir() if p.is_file() and p.name != MARKER)
            shutil.rmtree(folder, ignore_errors=True)
            return count

        return await anyio.to_thread.run_sync(_rm)

    async def job_ids(self) -> list[uuid.UUID]:
        """Folders named like job ids that carry this deployment's marker; anything else is not ours."""

        def _scan() -> list[uuid.UUID]:
            with os.scandir(self.root) as entries:
                return [job_id for entry in entries if (job_id := self._ours(entry)) is not None]

        return await anyio.to_thread.run_sync(_scan)

    def _ours(self, entry: os.DirEntry[str]) -> uuid.UUID | None:
        """The job id of a folder this deployment made, else None (errors are logged, never raised)."""
        job_id = uuid_or_none(entry.name)
        if job_id is None:
            return None
        try:
            if not entry.is_dir(follow_symlinks=False):
                return None
            return job_id if self._owner(Path(entry.path)) == self.deployment_id else None
        except FileNotFoundError:  # no marker: another deployment's folder, or one being made right now
            return None
        except Exception as exc:  # one odd entry (unreadable, a garbled marker) must not stop the sweep
            log.warning("results entry skipped", extra={"path": entry.path, "error": repr(exc)})
            return None

    async def clear_scratch(self, job_id: uuid.UUID) -> None:
        """Delete `.part` files a killed run left behind."""
        folder = self.root / str(job_id)

        def _clear() -> None:
            if folder.exists():
                for p in folder.glob(f"*{PART_SUFFIX}"):
                    p.unlink(missing_ok=True)

        await anyio.to_thread.run_sync(_clear)

    async def prune(self, job_id: uuid.UUID, keep: str) -> int:
        """Delete the job's other files: results of earlier or stale runs."""
        folder, kept = self.root / str(job_id), self._path(keep)

        def _prune() -> int:
            if not folder.exists():
                return 0
            others = [p for p in folder.iterdir() if p.is_file() and p.name != MARKER and p.resolve() != kept]
            for p in others:
                p.unlink(missing_ok=True)
            return len(others)

        return await anyio.to_thread.run_sync(_prune)
