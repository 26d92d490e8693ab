"""Time-ordered UUIDv7 identifiers (RFC 9562), so new rows land at the right end of the index."""

from __future__ import annotations

import os
import threading
import time
import uuid

RANDOM_BITS = 74  # rand_a (12) and rand_b (62)
RANDOM_MASK = (1 << RANDOM_BITS) - 1
MAX_STEP = 1 << 32  # a repeat within one millisecond adds 1 to 2^32 to the last random part

_lock = threading.Lock()
_last = (0, 0)  # (milliseconds, random part) of the last id this process made


def _next(ms: int) -> tuple[int, int]:
    """A (milliseconds, random part) past the last one: random in a new millisecond, else the last random
    part plus a random step (RFC 9562 section 6.2, method 2), moving into the next millisecond if it would
    overflow. So ids made one after another in a process sort in the order they were made, even within a
    millisecond (a batch's jobs all share one created_at: their ids order them)."""
    global _last
    with _lock:
        last_ms, last_rand = _last
        if ms > last_ms:
            nxt = (ms, int.from_bytes(os.urandom(10), "big") & RANDOM_MASK)
        else:
            rand = last_rand + 1 + int.from_bytes(os.urandom(4), "big") % MAX_STEP
            nxt = (last_ms, rand) if rand <= RANDOM_MASK else (last_ms + 1, rand & RANDOM_MASK)
        _last = nxt
        return nxt


def uuid7() -> uuid.UUID:
    """A UUIDv7: 48-bit Unix milliseconds, version and variant bits, 74 bits random (monotonic within a
    process, see `_next`)."""
    ms, rand = _next(time.time_ns() // 1_000_000)
    value = (ms & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & 0x3FFF_FFFF_FFFF_FFFF
    return uuid.UUID(int=value)
