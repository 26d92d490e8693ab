"""Per-type payload schemas: validated at the door so handlers only see good input."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from backend.domain.datetimes import Timestamp
from backend.domain.enums import JobStatus
from backend.domain.numbers import JsonFloat, JsonInt, json_number

if TYPE_CHECKING:
    from backend.domain.job_types import JobType

MAX_CSV_ROWS = 10_000_000
MAX_NUMBERS = 100_000
# Sums of squares and cubes of 100,000 such numbers stay far from any storage limit. Floats are bounded
# too: PostgreSQL's jsonb keeps 1e200 as a 201-digit integer, which is what a worker reads back.
MAX_MAGNITUDE = 10**18


class Payload(BaseModel):
    """Base of every payload: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


class CsvReportPayload(Payload):
    """A CSV of synthetic orders, deterministic for a given seed."""

    rows: JsonInt = Field(ge=1, le=MAX_CSV_ROWS, description="Number of data rows (header excluded).")
    seed: JsonInt = Field(default=0, description="Same seed, same file, byte for byte.")


class JobsExportPayload(Payload):
    """A CSV of the caller's own jobs, optionally filtered."""

    status: list[JobStatus] | None = Field(default=None, max_length=len(JobStatus))
    # Completed by `job_types` once every type is declared (the export can filter by any type).
    type: list[JobType] | None = Field(default=None, max_length=100)
    created_after: Timestamp | None = None
    created_before: Timestamp | None = None


BOUND = Field(ge=-MAX_MAGNITUDE, le=MAX_MAGNITUDE)


def _within_bound(value: Any) -> Any:
    """Checked on the value as sent: past the bound, an integer must not round into it as a float."""
    if isinstance(value, int | float) and not isinstance(value, bool) and abs(value) > MAX_MAGNITUDE:
        raise ValueError("numbers must be between -1e18 and 1e18")
    return value


# A finite float or an exact integer within ±1e18 (the arithmetic job types keep integers exact).
BoundedNumber = Annotated[
    Annotated[float, Field(allow_inf_nan=False), BOUND] | Annotated[int, BOUND],
    BeforeValidator(_within_bound),
    BeforeValidator(json_number),
]


class NumbersPayload(Payload):
    """A list of numbers for the arithmetic job types."""

    data: list[BoundedNumber] = Field(max_length=MAX_NUMBERS)


class SleepPayload(Payload):
    """A diagnostic job: sleep, optionally failing the first attempts."""

    seconds: JsonFloat = Field(ge=0, le=3600)
    fail_first: JsonInt = Field(
        default=0, ge=0, le=20, description="Fail this many attempts before succeeding."
    )


class BundlePayload(Payload):
    """A ZIP of the result files of the jobs this one depends on, plus `results.json` with their results."""

    filename: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="The ZIP's file name (default `bundle-<job id>.zip`).",
    )
