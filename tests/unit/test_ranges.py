"""Range and conditional-request rules (RFC 9110 §13.1.2, §14) as the download route applies them."""

from __future__ import annotations

import pytest

from backend.api.ranges import ByteRange, RangeNotSatisfiable, none_match, parse_range, strong_etag

SIZE = 1000


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-99", ByteRange(0, 99)),
        ("bytes=0-0", ByteRange(0, 0)),
        ("bytes=500-", ByteRange(500, 999)),
        ("bytes=990-5000", ByteRange(990, 999)),  # a last byte past the end is clamped
        ("bytes=999-999", ByteRange(999, 999)),
        ("bytes=-100", ByteRange(900, 999)),
        ("bytes=-5000", ByteRange(0, 999)),  # a suffix longer than the file is the whole file
        ("BYTES=1-2", ByteRange(1, 2)),  # the unit is case-insensitive
        (" bytes=1-2 ", ByteRange(1, 2)),
    ],
)
def test_satisfiable_ranges(header: str, expected: ByteRange) -> None:
    assert parse_range(header, SIZE) == expected


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "bytes=0-1,5-6",  # several ranges: a full 200 is a valid answer
        "items=0-5",  # unknown unit
        "bytes=5-3",  # last before first: invalid, so ignored
        "bytes=-",
        "bytes=abc",
        "bytes=1_0-20",  # int() would accept this; RFC digits would not
        "bytes=+1-2",
        "bytes=\u0661-2",  # a non-ASCII digit
        "bytes 0-5",
    ],
)
def test_ignored_headers_mean_whole_file(header: str | None) -> None:
    assert parse_range(header, SIZE) is None


@pytest.mark.parametrize(
    ("header", "size"),
    [("bytes=1000-", 1000), ("bytes=5000-6000", 1000), ("bytes=-0", 1000), ("bytes=0-", 0), ("bytes=-5", 0)],
)
def test_unsatisfiable_ranges(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, size)


HUGE = "9" * 5000  # int() refuses more than ~4,300 digits


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (f"bytes=0-{HUGE}", ByteRange(0, 999)),  # clamped like any last byte past the end
        (f"bytes=-{HUGE}", ByteRange(0, 999)),  # a suffix longer than the file
        (f"bytes={'0' * 5000}5-{'0' * 5000}9", ByteRange(5, 9)),  # leading zeros are just zeros
        (f"bytes={HUGE}-5", None),  # last before first: ignored
    ],
)
def test_positions_with_thousands_of_digits(header: str, expected: ByteRange | None) -> None:
    assert parse_range(header, SIZE) == expected


@pytest.mark.parametrize("header", [f"bytes={HUGE}-", f"bytes={HUGE}-{HUGE}"])
def test_a_start_with_thousands_of_digits_is_past_the_end(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, SIZE)


def test_byte_range_length() -> None:
    assert ByteRange(10, 19).length == 10


def test_strong_etag_is_the_quoted_hash() -> None:
    assert strong_etag("ab" * 32) == '"' + "ab" * 32 + '"'


@pytest.mark.parametrize(
    ("header", "matches"),
    [
        (None, False),
        ("", False),
        ('"abc"', True),
        ('W/"abc"', True),  # If-None-Match uses the weak comparison
        ('"x", "abc"', True),
        ('"x","y"', False),
        ("*", True),
        ('"abcd"', False),
        ("abc", False),  # unquoted is not an entity tag
    ],
)
def test_if_none_match(header: str | None, matches: bool) -> None:
    assert none_match(header, '"abc"') is matches
