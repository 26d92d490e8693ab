"""Job types, declared once: the enum, submission models, OpenAPI and the worker registry derive from here.

Adding a type: its payload model (`payloads.py`), one `JobTypeSpec` line below, and its handler module
`worker/tasks/<name>.py` with `async def handle(ctx, payload) -> Outcome`. `tests/unit/test_job_types.py`
fails if any part is missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from backend.domain.payloads import (
    BundlePayload,
    CsvReportPayload,
    JobsExportPayload,
    NumbersPayload,
    Payload,
    SleepPayload,
)


@dataclass(frozen=True)
class JobTypeSpec:
    """Everything the platform knows about one job type, besides its handler (in `worker/tasks/`)."""

    name: str
    payload: type[Payload]
    timeout_s: float  # one attempt; `TASK_TIMEOUTS` may override it per type
    summary: str
    diagnostic: bool = False  # for demos and benchmarks; refused unless ENABLE_DIAGNOSTIC_JOBS
    needs_parents: bool = False  # a submission without `depends_on` is refused

    @property
    def model_name(self) -> str:
        """The submission model's name in OpenAPI, e.g. `CsvReportCreate`."""
        return "".join(part.title() for part in self.name.split("_")) + "Create"

    @property
    def payload_optional(self) -> bool:
        """True when every payload field has a default, so `payload` may be left out."""
        return not any(f.is_required() for f in self.payload.model_fields.values())


JOB_TYPES: tuple[JobTypeSpec, ...] = (
    JobTypeSpec("csv_report", CsvReportPayload, 3600, "A CSV report of synthetic orders (a file)."),
    JobTypeSpec("jobs_export", JobsExportPayload, 3600, "A CSV of your own jobs (a file)."),
    JobTypeSpec("square_sum", NumbersPayload, 60, "The sum of the squares of `data`."),
    JobTypeSpec("cube_sum", NumbersPayload, 60, "The sum of the cubes of `data`."),
    JobTypeSpec(
        "bundle",
        BundlePayload,
        3600,
        "A ZIP of the files and results of the jobs in `depends_on` (a file).",
        needs_parents=True,
    ),
    JobTypeSpec(
        "sleep", SleepPayload, 3600 + 60, "Diagnostic: waits, optionally failing first.", diagnostic=True
    ),
)

SPECS: dict[str, JobTypeSpec] = {spec.name: spec for spec in JOB_TYPES}
MAX_TIMEOUT_S = max(spec.timeout_s for spec in JOB_TYPES)

if TYPE_CHECKING:
    JobType = str
else:
    JobType = StrEnum("JobType", {spec.name.upper(): spec.name for spec in JOB_TYPES})
    JobType.__doc__ = "The kinds of work the platform runs."
    JobsExportPayload.model_rebuild(_types_namespace={"JobType": JobType})


class TypeState(BaseModel):
    """A job type as admins see it: paused or not."""

    type: str
    paused: bool = Field(description="Waiting jobs of a paused type are not started until it is resumed.")
    paused_at: datetime | None
