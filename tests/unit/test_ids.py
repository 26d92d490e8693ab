"""UUIDv7 ids: version and variant bits, time first, and monotonic within a process."""

from __future__ import annotations

import time
import uuid

from backend.core.ids import uuid7


def test_version_variant_and_time() -> None:
    before = time.time_ns() // 1_000_000
    value = uuid7()
    after = time.time_ns() // 1_000_000
    assert value.version == 7 and value.variant == uuid.RFC_4122
    assert before <= value.int >> 80 <= after + 1


def test_ids_made_in_a_row_sort_in_order_even_within_a_millisecond() -> None:
    ids = [uuid7() for _ in range(50_000)]  # many per millisecond
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert len({i.int >> 80 for i in ids}) < len(ids)  # some did share a millisecond
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in ids)
