"""HTTP conditional and range request rules for downloads (RFC 9110 §13, §14)."""

from __future__ import annotations

from dataclasses import dataclass


class RangeNotSatisfiable(Exception):
    """The Range header asks for bytes the file does not have."""


@dataclass(frozen=True)
class ByteRange:
    """An inclusive byte range."""

    start: int
    end: int

    @property
    def length(self) -> int:
        """Number of bytes in the range."""
        return self.end - self.start + 1


def strong_etag(sha256: str) -> str:
    """A strong entity tag derived from the content hash."""
    return f'"{sha256}"'


def none_match(if_none_match: str | None, etag: str) -> bool:
    """True when If-None-Match names this entity (weak comparison, as RFC 9110 requires here)."""
    if not if_none_match:
        return False
    tags = [t.strip() for t in if_none_match.split(",")]
    return "*" in tags or any(t.removeprefix("W/") == etag for t in tags)


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The single byte range asked for; None means "send the whole file".

    Multiple ranges and unknown units are ignored (a full 200 is a valid answer); a syntactically
    valid range that starts past the end raises RangeNotSatisfiable (416).
    """
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    try:
        if first == "":
            suffix = int(last)
            if suffix <= 0:
                raise RangeNotSatisfiable()
            return ByteRange(max(size - suffix, 0), size - 1) if size else _unsatisfiable()
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start < 0 or end < start:
        return None
    if start >= size:
        raise RangeNotSatisfiable()
    return ByteRange(start, min(end, size - 1))


def _unsatisfiable() -> ByteRange:
    raise RangeNotSatisfiable()
