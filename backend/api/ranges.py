"""HTTP conditional and range request rules for downloads (RFC 9110 §13, §14)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_BYTE_RANGE = re.compile(r"bytes[ \t]*=[ \t]*([0-9]*)-([0-9]*)", re.IGNORECASE | re.ASCII)
# int() refuses numbers of more than ~4,300 digits, and no file needs more than 19: a longer position
# stands for "past the end of any file".
MAX_DIGITS = 19
BEYOND_ANY_FILE = 10**MAX_DIGITS


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


def _position(digits: str) -> int:
    """A byte position from RFC digits, saturated at BEYOND_ANY_FILE."""
    significant = digits.lstrip("0")
    return int(significant or "0") if len(significant) <= MAX_DIGITS else BEYOND_ANY_FILE


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The single byte range asked for; None means "send the whole file".

    A header that is malformed, names another unit or asks for several ranges is ignored (a full 200
    is a valid answer, RFC 9110 §14.2); a well-formed range that no byte of the file satisfies raises
    RangeNotSatisfiable (416).
    """
    if not header:
        return None
    match = _BYTE_RANGE.fullmatch(header.strip())
    if match is None:
        return None
    first, last = match.group(1), match.group(2)
    if first:
        start = _position(first)
        if last and _position(last) < start:
            return None  # invalid, so ignored
        if start >= size:
            raise RangeNotSatisfiable()
        return ByteRange(start, min(_position(last), size - 1) if last else size - 1)
    if not last:
        return None  # "bytes=-" is not a range
    suffix = _position(last)
    if suffix == 0 or size == 0:
        raise RangeNotSatisfiable()
    return ByteRange(max(size - suffix, 0), size - 1)
