"""Schedules: what clients send and get back, and the one rule of when a schedule fires next (pure).

Cron expressions are read by `cronsim` (five fields, Debian cron's semantics, DST-aware with zoneinfo);
`every_seconds` is a grid of fixed steps through the schedule's previous slot, in real (UTC) time.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import cache
from typing import Annotated, Any, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from cronsim import CronSim, CronSimError
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from backend.domain.jobs import JobCreate
from backend.domain.numbers import json_number
from backend.domain.records import ScheduleRecord

MAX_EVERY_SECONDS = 366 * 86400  # a year (and a day): past that, use a cron expression
CRON_FIELDS = 5
# cronsim looks a few years ahead at most; a slot that far away is "never" for a job platform.
CRON_SEARCH_SLOTS = 1000
# Error types of the rules JSON Schema does not state (which expressions parse; one timing of the two).
CRON_ERROR = "cron_invalid"
TIMING_ERROR = "schedule_timing"


def schedule_location(schedule_id: uuid.UUID) -> str:
    """The canonical URL path of a schedule."""
    return f"/schedules/{schedule_id}"


class Overlap(StrEnum):
    """What a fire does while the schedule's previous job has not ended."""

    ALLOW = "allow"  # fire anyway
    SKIP = "skip"  # skip this fire (the schedule still moves on to its next slot)


@cache
def time_zones() -> frozenset[str]:
    """Every IANA time zone name this system knows (tzdata), read once."""
    return frozenset(available_timezones())


def zone(name: str) -> ZoneInfo:
    """The time zone called `name`; ValueError naming the problem otherwise."""
    if name not in time_zones():
        raise ValueError(f"unknown time zone {name!r}; use an IANA name such as Europe/Paris or UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:  # listed but unreadable: treat as unknown
        raise ValueError(f"unknown time zone {name!r}") from exc


def parse_cron(expr: str) -> str:
    """The expression, normalised to single spaces, if it is a valid five-field cron expression."""
    fields = expr.split()
    if len(fields) != CRON_FIELDS:
        raise PydanticCustomError(
            CRON_ERROR, "must have five fields: minute hour day-of-month month day-of-week"
        )
    normalised = " ".join(fields)
    try:
        CronSim(normalised, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        raise PydanticCustomError(
            CRON_ERROR, "not a valid cron expression: {reason}", {"reason": str(exc)}
        ) from None
    return normalised


@dataclass(frozen=True, slots=True)
class Timing:
    """When a schedule fires: a cron expression in a time zone, or a fixed step in seconds."""

    cron: str | None
    every_seconds: int | None
    timezone: str = "UTC"

    def next_after(self, after: datetime, grid: datetime | None = None) -> datetime:
        """The first slot strictly after `after`.

        Every-N-seconds slots lie on the grid through `grid` (the previous slot; `after` when there is
        none), so a late fire does not shift the rhythm. Cron slots are local times in the zone:
        a fixed-time slot in a skipped hour (DST starts) fires at the end of the gap, one in a repeated
        hour fires once (its first occurrence); minute- or hour-stepped expressions follow real time.
        """
        if self.every_seconds is not None:
            step = timedelta(seconds=self.every_seconds)
            origin = grid or after
            return origin + ((after - origin) // step + 1) * step
        assert self.cron is not None
        return _next_cron(self.cron, zone(self.timezone), after)


def _next_cron(expr: str, tz: ZoneInfo, after: datetime) -> datetime:
    # cronsim works on wall-clock time for fixed-time expressions, so in a repeated hour it may give a slot
    # that was already passed (02:30 first pass while `after` is in the second): skip those.
    slots = CronSim(expr, after.astimezone(tz))
    for _ in range(CRON_SEARCH_SLOTS):
        slot = next(slots).astimezone(UTC)
        if slot > after:
            return slot
    raise ValueError(f"no slot after {after.isoformat()} for {expr!r}")


def _cron_text(value: Any) -> Any:
    return parse_cron(value) if isinstance(value, str) else value


def _zone_name(value: Any) -> Any:
    if isinstance(value, str):
        zone(value)
    return value


CronText = Annotated[
    str,
    Field(
        min_length=1,
        max_length=100,
        description="Five fields, minute hour day-of-month month day-of-week (e.g. `*/5 * * * *`), "
        "in `timezone`. Give this or `every_seconds`.",
        examples=["*/5 * * * *"],
    ),
    BeforeValidator(_cron_text),
]
EverySeconds = Annotated[
    int,
    Field(ge=1, le=MAX_EVERY_SECONDS, description="Fire every this many seconds. Give this or `cron`."),
    BeforeValidator(json_number),
]
TimeZoneName = Annotated[
    str,
    Field(
        description="IANA time zone the cron expression is read in (default UTC).",
        json_schema_extra={"enum": sorted(time_zones())},
    ),
    BeforeValidator(_zone_name),
]


def _optional_not_null(schema: dict[str, Any]) -> None:
    """JSON Schema of an optional field that may be left out but not sent as null (`X | None` in Python,
    so that errors name the field itself rather than a branch of a union)."""
    branches = [b for b in schema.pop("anyOf", []) if b.get("type") != "null"]
    if branches:
        schema.update(branches[0])


OMITTABLE = Field(default=None, json_schema_extra=_optional_not_null)

ScheduleName = Annotated[
    str,
    Field(min_length=1, max_length=200, pattern=r"^[^\x00]+$", description="A label for people."),
]


class ScheduleCreate(BaseModel):
    """Create a schedule: a job submission made again at every slot of `cron` or `every_seconds`
    (exactly one of the two)."""

    model_config = ConfigDict(extra="forbid")

    name: ScheduleName
    cron: CronText | None = None
    every_seconds: EverySeconds | None = Field(default=None, validate_default=True)
    timezone: TimeZoneName = "UTC"
    job: JobCreate = Field(description="The job each fire submits, exactly as `POST /jobs` takes it.")
    overlap: Overlap = Field(
        default=Overlap.ALLOW,
        description="`skip`: no fire while the schedule's previous job has not ended; `allow`: fire anyway.",
    )
    paused: bool = Field(default=False, strict=True, description="A paused schedule does not fire.")

    @field_validator("every_seconds")
    @classmethod
    def _exactly_one(cls, value: int | None, info: ValidationInfo) -> int | None:
        if "cron" not in info.data:  # the cron field is invalid: that error is enough
            return value
        if (value is None) == (info.data["cron"] is None):
            raise PydanticCustomError(TIMING_ERROR, "give exactly one of cron and every_seconds")
        return value

    def timing(self) -> Timing:
        """When it fires."""
        return Timing(self.cron, self.every_seconds, self.timezone)


class SchedulePatch(BaseModel):
    """Change a schedule: only the fields given. Giving `cron` drops `every_seconds` and the reverse."""

    model_config = ConfigDict(extra="forbid")

    name: ScheduleName | None = OMITTABLE
    cron: CronText | None = OMITTABLE
    every_seconds: EverySeconds | None = OMITTABLE
    timezone: TimeZoneName | None = OMITTABLE
    job: JobCreate | None = Field(
        default=None, description="Replaces the job in full.", json_schema_extra=_optional_not_null
    )
    overlap: Overlap | None = OMITTABLE
    paused: Annotated[bool, Field(strict=True)] | None = OMITTABLE

    @field_validator("name", "cron", "every_seconds", "timezone", "job", "overlap", "paused", mode="before")
    @classmethod
    def _not_null(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            raise ValueError(f"{info.field_name} may be left out but not null")
        return value

    @field_validator("every_seconds")
    @classmethod
    def _not_both(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and info.data.get("cron") is not None:
            raise PydanticCustomError(TIMING_ERROR, "give cron or every_seconds, not both")
        return value

    def timing(self, current: Timing) -> Timing:
        """When the schedule fires once this change applies."""
        if self.cron is not None:
            return Timing(self.cron, None, self.timezone or current.timezone)
        if self.every_seconds is not None:
            return Timing(None, self.every_seconds, self.timezone or current.timezone)
        return Timing(current.cron, current.every_seconds, self.timezone or current.timezone)

    def changes_timing(self) -> bool:
        """Whether the slots move (so the next one is computed afresh)."""
        return any(v is not None for v in (self.cron, self.every_seconds, self.timezone))


class SchedulePublic(BaseModel):
    """A schedule as returned by the API."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    owner_id: uuid.UUID | None = Field(
        default=None, description="Id of the API key that owns it: shown to admin keys only, else null."
    )
    name: str
    cron: str | None
    every_seconds: int | None
    timezone: str
    job: dict[str, Any] = Field(description="The job submission each fire makes.")
    overlap: Overlap
    paused: bool
    next_run_at: datetime | None = Field(description="The next slot; null while paused.")
    last_run_at: datetime | None = Field(description="The slot of the last fire that made a job.")
    last_job_id: uuid.UUID | None = Field(description="The job the last fire made.")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, record: ScheduleRecord, show_owner: bool = False) -> Self:
        """The API view of a schedule row; `owner_id` only for an admin's view."""
        view = cls.model_validate(record)
        update: dict[str, Any] = {} if show_owner else {"owner_id": None}
        if record.paused:
            update["next_run_at"] = None
        return view.model_copy(update=update) if update else view


class ScheduleList(BaseModel):
    """A page of schedules, oldest first; pass `next_cursor` as `cursor` for the next page."""

    items: list[SchedulePublic]
    next_cursor: str | None
