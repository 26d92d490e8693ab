"""Job schemas: what clients send (`JobCreate`) and what they get back (`JobPublic` and views)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Discriminator, Field, field_validator

from backend.domain.enums import JobStatus, JobType
from backend.domain.payloads import CsvReportPayload, JobsExportPayload, NumbersPayload, SleepPayload


class JobCreateBase(BaseModel):
    """Fields every job submission may carry besides its type and payload."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=200, description="Optional label for people.")
    max_attempts: int | None = Field(default=None, ge=1, le=20, description="Attempts before `failed`.")
    scheduled_at: AwareDatetime | None = Field(default=None, description="Do not start before this time.")

    @field_validator("name")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        if value is not None and "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value


class CsvReportCreate(JobCreateBase):
    """Submit a `csv_report` job."""

    type: Literal["csv_report"]
    payload: CsvReportPayload


class JobsExportCreate(JobCreateBase):
    """Submit a `jobs_export` job."""

    type: Literal["jobs_export"]
    payload: JobsExportPayload = Field(default_factory=JobsExportPayload)


class SquareSumCreate(JobCreateBase):
    """Submit a `square_sum` job."""

    type: Literal["square_sum"]
    payload: NumbersPayload


class CubeSumCreate(JobCreateBase):
    """Submit a `cube_sum` job."""

    type: Literal["cube_sum"]
    payload: NumbersPayload


class SleepCreate(JobCreateBase):
    """Submit a `sleep` job."""

    type: Literal["sleep"]
    payload: SleepPayload


JobCreate = Annotated[
    CsvReportCreate | JobsExportCreate | SquareSumCreate | CubeSumCreate | SleepCreate,
    Discriminator("type"),
]


class ResultFile(BaseModel):
    """A file a job produced, as clients see it."""

    filename: str
    size_bytes: int
    sha256: str
    content_type: str
    url: str


class JobPublic(BaseModel):
    """A job as returned by the API."""

    id: uuid.UUID
    type: JobType
    name: str | None
    payload: dict[str, Any]
    status: JobStatus
    progress: float
    attempts: int
    max_attempts: int
    result: Any | None
    error: str | None
    result_file: ResultFile | None
    created_at: datetime
    scheduled_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime


class JobStatusView(BaseModel):
    """The cheap polling view of a job."""

    id: uuid.UUID
    status: JobStatus
    progress: float


class JobResultView(BaseModel):
    """What a job produced; `result` is null until it completes."""

    id: uuid.UUID
    status: JobStatus
    result: Any | None
    result_file: ResultFile | None


class JobList(BaseModel):
    """A page of jobs, newest first; pass `next_cursor` as `cursor` for the next page."""

    items: list[JobPublic]
    next_cursor: str | None
