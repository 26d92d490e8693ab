"""Date-times clients send: RFC 3339 text with an offset, and an instant that exists in UTC.

pydantic alone also takes numbers (`0.5` as a Unix time) and shorter forms, and accepts offsets that
push the instant out of Python's range once converted to UTC (`0001-01-01T00:00:00+23:59`), which then
fails deep in the database driver. The very first and last instants Python has are refused too: asyncpg
stores them as PostgreSQL's -infinity and infinity and reads them back as naive datetimes.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BeforeValidator

FIRST_INSTANT = datetime.min.replace(tzinfo=UTC)
LAST_INSTANT = datetime.max.replace(tzinfo=UTC)
RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def rfc3339_text(value: Any) -> Any:
    """Let through RFC 3339 date-time text (and datetime objects from Python callers), nothing else."""
    if isinstance(value, datetime) or (isinstance(value, str) and RFC3339.fullmatch(value)):
        return value
    raise ValueError("must be an RFC 3339 date-time with an offset, e.g. 2026-01-31T09:30:00Z")


def in_utc_range(value: datetime) -> datetime:
    """The value unchanged if it has an offset and exists in UTC; ValueError otherwise."""
    if value.tzinfo is None:
        raise ValueError("must have a UTC offset")
    try:
        in_utc = value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range once converted to UTC") from None
    if in_utc in (FIRST_INSTANT, LAST_INSTANT):
        raise ValueError("is out of range (the first and last instants are reserved)")
    return value


# A date-time as clients send it (a field, a query parameter, a payload's filter).
Timestamp = Annotated[AwareDatetime, BeforeValidator(rfc3339_text), AfterValidator(in_utc_range)]
