"""Date-times clients send: RFC 3339 text with an offset, representable in UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import TypeAdapter, ValidationError

from backend.domain.datetimes import Timestamp, in_utc_range

TIMESTAMP: TypeAdapter[datetime] = TypeAdapter(Timestamp)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-31T09:30:00Z", datetime(2026, 1, 31, 9, 30, tzinfo=UTC)),
        ("2026-01-31t09:30:00z", datetime(2026, 1, 31, 9, 30, tzinfo=UTC)),  # RFC 3339 §5.6: any case
        ("2026-01-31 09:30:00+02:00", datetime(2026, 1, 31, 7, 30, tzinfo=UTC)),
        ("2026-01-31T09:30:00.250-05:30", datetime(2026, 1, 31, 15, 0, 0, 250_000, tzinfo=UTC)),
        ("0001-01-01T00:00:00.000001Z", datetime(1, 1, 1, 0, 0, 0, 1, tzinfo=UTC)),
        ("9999-12-31T23:59:59+00:00", datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)),
    ],
)
def test_rfc3339_date_times_are_accepted(text: str, expected: datetime) -> None:
    assert TIMESTAMP.validate_python(text) == expected
    assert TIMESTAMP.validate_json(f'"{text}"') == expected


@pytest.mark.parametrize(
    "value",
    [
        0.5,
        1_700_000_000,
        "0.5",
        "1700000000",
        "2026-01-31",
        "2026-01-31T09:30",
        "2026-01-31T09:30:00",  # no offset
        "2026-01-31T09:30:00+0200",
        "20260131T093000Z",
        " 2026-01-31T09:30:00Z",
        True,
        None,
    ],
)
def test_anything_else_is_refused(value: object) -> None:
    with pytest.raises(ValidationError, match="RFC 3339"):
        TIMESTAMP.validate_python(value)


@pytest.mark.parametrize("text", ["0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59-23:59"])
def test_instants_outside_utc_are_refused(text: str) -> None:
    with pytest.raises(ValidationError, match="out of range once converted to UTC"):
        TIMESTAMP.validate_python(text)


@pytest.mark.parametrize(
    "text", ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z", "0001-01-01T01:00:00+01:00"]
)
def test_the_instants_asyncpg_reads_as_infinity_are_refused(text: str) -> None:
    with pytest.raises(ValidationError, match="first and last instants"):
        TIMESTAMP.validate_python(text)


def test_the_value_keeps_its_offset() -> None:
    value = TIMESTAMP.validate_python("2026-01-31T09:30:00+02:00")
    assert value.utcoffset() == timedelta(hours=2)


def test_in_utc_range() -> None:
    aware = datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=3)))
    assert in_utc_range(aware) is aware
    with pytest.raises(ValueError, match="offset"):
        in_utc_range(datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="UTC"):
        in_utc_range(datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=23, minutes=59))))
