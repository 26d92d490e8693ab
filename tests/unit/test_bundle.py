"""The bundle handler streams: a parent file far larger than the memory it uses, and a valid ZIP64 archive."""

from __future__ import annotations

import hashlib
import json
import tracemalloc
import uuid
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.adapters.storage import LocalStorage
from backend.domain.payloads import BundlePayload
from backend.domain.records import StoredFile
from worker.context import JobContext, Parent
from worker.tasks.bundle import handle

CHUNK = 1024 * 1024
BIG_MIB = 96


class GeneratedStorage(LocalStorage):
    """Local storage whose parent files are generated chunk by chunk, never held whole."""

    async def stream(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        async def chunks() -> AsyncIterator[bytes]:
            for i in range(BIG_MIB if key == "big" else 1):
                yield hashlib.sha256(str(i).encode()).digest() * (CHUNK // 32)

        return chunks()


@dataclass(frozen=True)
class Context(JobContext):
    given: tuple[Parent, ...] = ()

    async def parents(self) -> list[Parent]:
        return list(self.given)


def parent(key: str, size: int, result: Any) -> Parent:
    return Parent(
        uuid.uuid4(), "csv_report", None, result, StoredFile(key, f"{key}.csv", size, "x", "text/csv")
    )


async def test_a_large_parent_is_zipped_in_constant_memory(tmp_path: Path) -> None:
    parents = (parent("big", BIG_MIB * CHUNK, {"rows": 1}), parent("small", CHUNK, {"rows": 2}))
    square = Parent(uuid.uuid4(), "square_sum", "sq", {"value": 4}, None)
    storage = GeneratedStorage(tmp_path / "files", uuid.uuid4())
    ctx = Context(uuid.uuid4(), uuid.uuid4(), 1, storage, None, given=(*parents, square))  # type: ignore[arg-type]
    tracemalloc.start()
    try:
        outcome = await handle(ctx, BundlePayload(filename="b.zip"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * CHUNK, f"peak {peak / CHUNK:.1f} MiB for a {BIG_MIB} MiB member"
    assert outcome.result == {"files": 2, "jobs": 3} and outcome.file is not None
    path = tmp_path / "files" / outcome.file.key
    data = path.read_bytes()
    assert outcome.file.size_bytes == len(data) and outcome.file.sha256 == hashlib.sha256(data).hexdigest()
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
        names = archive.namelist()
        assert names == [f"000-{parents[0].id}/big.csv", f"001-{parents[1].id}/small.csv", "results.json"]
        assert archive.getinfo(names[0]).file_size == BIG_MIB * CHUNK
        results = json.loads(archive.read("results.json"))["jobs"]
    assert [r["result"] for r in results] == [{"rows": 1}, {"rows": 2}, {"value": 4}]
    assert results[2] == {
        "id": str(square.id),
        "type": "square_sum",
        "name": "sq",
        "result": {"value": 4},
        "file": None,
    }
