"""The Storage contract, run on every backend: the local folder and S3 (moto's server in its own process).

Publishing, replacing, ranged streaming in large chunks, a missing file failing before any byte, scratch
clean-up, pruning, the orphan sweep's list (never another deployment's files), constant memory both
ways, and the `bundle` handler reading its parents through the store.
"""

from __future__ import annotations

import hashlib
import json
import tracemalloc
import uuid
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest

from backend.adapters.s3 import S3Location, S3Options, open_s3_storage
from backend.adapters.storage import MARKER, LocalStorage, Storage, file_key
from backend.domain.payloads import BundlePayload
from backend.domain.records import StoredFile
from tests.utils.s3 import ACCESS_KEY, BUCKET, REGION, SECRET_KEY, S3Server
from worker.context import JobContext, Parent
from worker.tasks.bundle import handle

MiB = 1024 * 1024
PART = 5 * MiB  # S3's smallest part: a 64 MiB file is a 13-part upload


@dataclass
class Backend:
    """One kind of store, opened as often as a test needs (a new deployment id each time, or a given one)."""

    name: str
    tmp: Path
    server: S3Server | None = None
    prefix: str = field(default_factory=lambda: f"t-{uuid.uuid4().hex[:8]}")

    @asynccontextmanager
    async def open(
        self, deployment_id: uuid.UUID | None = None, prefix: str | None = None
    ) -> AsyncIterator[Storage]:
        deployment_id = deployment_id or uuid.uuid4()
        if self.server is None:
            yield LocalStorage(self.tmp / "results", deployment_id)
            return
        location = S3Location(BUCKET, self.prefix if prefix is None else prefix)
        options = S3Options(
            location,
            endpoint_url=self.server.endpoint,
            region=REGION,
            access_key_id=ACCESS_KEY,
            secret_access_key=SECRET_KEY,
            part_size=PART,
        )
        async with open_s3_storage(options, deployment_id, self.tmp / "scratch") as storage:
            yield storage

    async def published(self, storage: Storage, job_id: uuid.UUID) -> list[str]:
        """The names of the job's published files, as the store holds them (no scratch, no marker)."""
        if self.server is None:
            assert isinstance(storage, LocalStorage)
            folder = storage.root / str(job_id)
            return sorted(p.name for p in folder.iterdir() if p.name != MARKER) if folder.exists() else []
        prefix = f"{self.prefix}/{storage.deployment_id}/{job_id}/"  # type: ignore[attr-defined]
        return sorted(k.removeprefix(prefix) for k in await self.server.keys(prefix))


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    server = request.getfixturevalue("s3_server") if request.param == "s3" else None
    return Backend(request.param, tmp_path, server)


def write_file(path: Path, size: int) -> str:
    """`size` pseudo-random bytes written 1 MiB at a time; returns their sha256."""
    digest = hashlib.sha256()
    with path.open("wb") as out:
        for i in range(0, size, MiB):
            chunk = hashlib.sha256(str(i).encode()).digest() * (min(MiB, size - i) // 32)
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


async def publish(storage: Storage, job_id: uuid.UUID, name: str, content: bytes) -> str:
    scratch = await anyio.to_thread.run_sync(storage.scratch_path, job_id, name)
    await anyio.to_thread.run_sync(scratch.write_bytes, content)
    await storage.put(file_key(job_id, name), scratch)
    assert not scratch.exists()  # the scratch file became the published one, or was uploaded and removed
    return file_key(job_id, name)


async def read_all(storage: Storage, key: str, start: int = 0, end: int | None = None) -> list[bytes]:
    return [chunk async for chunk in await storage.stream(key, start, end)]


async def test_put_replaces_and_streams_ranges_in_large_chunks(backend: Backend) -> None:
    async with backend.open() as storage:
        job_id = uuid.uuid4()
        key = file_key(job_id, "out.bin")
        assert not await storage.exists(key) and await storage.size(key) is None
        for content in (b"first version", bytes(range(256)) * 10_000):
            await publish(storage, job_id, "out.bin", content)
        assert await storage.size(key) == 2_560_000
        assert await backend.published(storage, job_id) == ["out.bin"]
        whole = b"".join(await read_all(storage, key))
        assert whole == bytes(range(256)) * 10_000
        chunks = await read_all(storage, key, 1000, 2_000_999)
        assert [len(c) for c in chunks] == [MiB, 2_000_000 - MiB]  # large chunks, exactly the range
        assert b"".join(chunks) == whole[1000:2_001_000]
        assert b"".join(await read_all(storage, key, 2_559_990)) == whole[2_559_990:]
        assert await storage.delete(key) and not await storage.exists(key)
        assert not await storage.delete(key)


async def test_stream_of_a_missing_file_fails_before_any_byte(backend: Backend) -> None:
    async with backend.open() as storage:
        with pytest.raises(FileNotFoundError):
            await storage.stream(file_key(uuid.uuid4(), "gone.csv"))
        key = await publish(storage, uuid.uuid4(), "here.csv", b"x" * 100)
        stream = await storage.stream(key)  # opened: deleting it now cannot turn into a truncated body
        await storage.delete(key)
        assert b"".join([c async for c in stream]) == b"x" * 100


async def test_clears_scratch_prunes_and_deletes_job_files(backend: Backend) -> None:
    async with backend.open() as storage:
        job_id = uuid.uuid4()
        half = await anyio.to_thread.run_sync(storage.scratch_path, job_id, "a.csv")
        await anyio.to_thread.run_sync(half.write_bytes, b"half")
        await publish(storage, job_id, "run1-a.csv", b"done once")
        kept = await publish(storage, job_id, "run2-a.csv", b"done again")
        again = await anyio.to_thread.run_sync(storage.scratch_path, job_id, "a.csv")
        await anyio.to_thread.run_sync(again.write_bytes, b"half again")
        await storage.clear_scratch(job_id)
        assert not half.exists() and not again.exists()
        assert await backend.published(storage, job_id) == ["run1-a.csv", "run2-a.csv"]
        assert await storage.prune(job_id, keep=kept) == 1
        assert await backend.published(storage, job_id) == ["run2-a.csv"]
        assert await storage.job_ids() == [job_id]
        assert await storage.delete_job_files(job_id) == 1
        assert await storage.job_ids() == [] and await backend.published(storage, job_id) == []
        assert await storage.delete_job_files(job_id) == 0


async def test_job_ids_never_names_another_deployments_files(backend: Backend) -> None:
    ours, theirs = uuid.uuid4(), uuid.uuid4()
    async with backend.open(ours) as mine, backend.open(theirs) as other:
        mine_job, their_job = uuid.uuid4(), uuid.uuid4()
        await publish(mine, mine_job, "m.csv", b"m")
        await publish(other, their_job, "t.csv", b"t")
        assert await mine.job_ids() == [mine_job]
        assert await other.job_ids() == [their_job]
        await mine.delete_job_files(mine_job)
        assert await other.exists(file_key(their_job, "t.csv"))


async def traced(action: Callable[[], Awaitable[Any]]) -> tuple[Any, int]:
    """Run `action` under tracemalloc: (its result, the peak of Python allocations in bytes)."""
    tracemalloc.start()
    try:
        result = await action()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.slow
async def test_a_64_mib_file_goes_up_and_down_in_constant_memory(backend: Backend) -> None:
    size = 64 * MiB
    async with backend.open() as storage:
        job_id = uuid.uuid4()
        scratch = await anyio.to_thread.run_sync(storage.scratch_path, job_id, "big.bin")
        sha = await anyio.to_thread.run_sync(write_file, scratch, size)
        key = file_key(job_id, "big.bin")

        async def upload() -> None:
            await storage.put(key, scratch)

        async def download() -> str:
            digest = hashlib.sha256()
            async for chunk in await storage.stream(key):
                digest.update(chunk)
            return digest.hexdigest()

        _, up_peak = await traced(upload)
        got, down_peak = await traced(download)
        assert got == sha and await storage.size(key) == size
        # S3: a 5 MiB part in memory, plus the socket buffer's copy of what is not sent yet (measured about
        # 11 MiB); local: a rename. Downloads: a 1 MiB chunk and the HTTP buffers (about 3.5 MiB).
        assert up_peak < 3 * PART, f"upload peak {up_peak / MiB:.1f} MiB for a 64 MiB file"
        assert down_peak < 6 * MiB, f"download peak {down_peak / MiB:.1f} MiB for a 64 MiB file"


@dataclass(frozen=True)
class Context(JobContext):
    given: tuple[Parent, ...] = ()

    async def parents(self) -> list[Parent]:
        return list(self.given)


@pytest.mark.slow
async def test_bundle_streams_its_parents_from_the_store(backend: Backend, tmp_path: Path) -> None:
    async with backend.open() as storage:
        parents = []
        for name, size in (("big", 24 * MiB), ("small", 1000)):
            job_id = uuid.uuid4()
            scratch = await anyio.to_thread.run_sync(storage.scratch_path, job_id, f"{name}.csv")
            sha = await anyio.to_thread.run_sync(write_file, scratch, size)
            await storage.put(file_key(job_id, f"{name}.csv"), scratch)
            stored = StoredFile(file_key(job_id, f"{name}.csv"), f"{name}.csv", size, sha, "text/csv")
            parents.append(Parent(job_id, "csv_report", name, {"rows": size}, stored))
        ctx = Context(uuid.uuid4(), uuid.uuid4(), 1, storage, None, given=tuple(parents))  # type: ignore[arg-type]

        async def bundle() -> Any:
            return await handle(ctx, BundlePayload(filename="b.zip"))

        outcome, peak = await traced(bundle)
        assert peak < 3 * PART, f"bundling a 24 MiB parent peaked at {peak / MiB:.1f} MiB"
        assert outcome.file is not None and outcome.result == {"files": 2, "jobs": 2}
        path = tmp_path / "bundle.zip"
        with path.open("wb") as out:
            async for chunk in await storage.stream(outcome.file.key):
                out.write(chunk)
        assert (await anyio.to_thread.run_sync(path.stat)).st_size == outcome.file.size_bytes
        with zipfile.ZipFile(path) as archive:
            assert archive.testzip() is None
            for index, parent in enumerate(parents):
                assert parent.file is not None
                member = archive.read(f"{index:03d}-{parent.id}/{parent.file.filename}")
                assert hashlib.sha256(member).hexdigest() == parent.file.sha256
            assert len(json.loads(archive.read("results.json"))["jobs"]) == 2
