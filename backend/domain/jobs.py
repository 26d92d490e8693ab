"""Job schemas: what clients send (`JobCreate`) and what they get back (`JobPublic` and views)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self, Union
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    ValidationInfo,
    create_model,
    field_validator,
)
from pydantic_core import PydanticCustomError

from backend.domain.datetimes import Timestamp
from backend.domain.enums import JobStatus, RunOutcome
from backend.domain.job_types import JOB_TYPES, JobType, JobTypeSpec
from backend.domain.numbers import json_number
from backend.domain.payloads import Payload
from backend.domain.records import JobRecord, StoredFile


def job_location(job_id: uuid.UUID) -> str:
    """The canonical URL path of a job."""
    return f"/jobs/{job_id}"


MAX_TAGS = 20
MAX_ERROR_CHARS = 2000  # a job's `error` is cut to this length
Tag = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f]+$")]
SearchText = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f]+$")]
ConcurrencyKey = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f]+$")]
MIN_PRIORITY, MAX_PRIORITY = -10, 10
MAX_PARENTS = 1000  # a batch's worth: one bundle of a full batch's reports
# A job id, or (inside a batch) "#i": the batch's job at index i.
DependencyRef = Annotated[
    str,
    Field(
        pattern=r"^(#[0-9]{1,4}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$",
        description="A job id of yours, or inside a batch `#i`: the batch's job at index i.",
    ),
]
# The `depends_on` rules JSON Schema cannot state (their 422 `type`s): the ids must be jobs of yours; `#i`
# only inside a batch and only backwards; a `bundle` needs parents; a schedule's job has none.
UNKNOWN_JOB, NOT_IN_BATCH, FORWARD_REFERENCE = "unknown_job", "not_in_batch", "forward_reference"
DUPLICATE_DEPENDENCY, DEPENDENCIES_REQUIRED, DEPENDENCIES_NOT_ALLOWED = (
    "duplicate_dependency",
    "dependencies_required",
    "dependencies_not_allowed",
)
DEPENDENCY_RULES = frozenset(
    {
        UNKNOWN_JOB,
        NOT_IN_BATCH,
        FORWARD_REFERENCE,
        DUPLICATE_DEPENDENCY,
        DEPENDENCIES_REQUIRED,
        DEPENDENCIES_NOT_ALLOWED,
    }
)
LIMIT_WITHOUT_KEY = "concurrency_limit_without_key"  # the one rule between fields JSON Schema does not state
MAX_WEBHOOK_URL_CHARS = 2000
WEBHOOK_URL_INVALID = "webhook_url_invalid"


def _webhook_url(value: str) -> str:
    """An absolute http(s) URL with a host and no credentials (whether http is allowed is a setting: the
    service checks it)."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise PydanticCustomError(WEBHOOK_URL_INVALID, "Not a valid URL") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PydanticCustomError(WEBHOOK_URL_INVALID, "Must be an absolute https URL")
    if parts.username is not None or parts.password is not None or any(not 32 < ord(c) < 127 for c in value):
        raise PydanticCustomError(
            WEBHOOK_URL_INVALID, "Must not contain credentials, spaces, controls or non-ASCII characters"
        )
    return value


WebhookUrl = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_WEBHOOK_URL_CHARS,
        # ASCII only (punycode the host, percent-encode the rest), so JSON Schema's regex and Python's agree
        # on every character (their \s do not: U+0085 is space to one and not the other).
        pattern=r'^https?://[!"$-.0-9:->A-~]+([/?#][!-~]*)?$',  # no / @ ? # in the host part
    ),
    AfterValidator(_webhook_url),
]


class JobCreateBase(BaseModel):
    """Fields every job submission may carry besides its type and payload."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(
        default=None,
        max_length=200,
        description="Optional label for people.",
        json_schema_extra={"pattern": "^[^\\u0000]*$"},  # the NUL check below, stated in the schema
    )
    max_attempts: Annotated[int, Field(ge=1, le=20), BeforeValidator(json_number)] | None = Field(
        default=None, description="Attempts before `failed`."
    )
    scheduled_at: Timestamp | None = Field(default=None, description="Do not start before this time.")
    tags: list[Tag] = Field(
        default_factory=list, max_length=MAX_TAGS, description="Labels to find the job by (`GET /jobs?tag=`)."
    )
    priority: Annotated[int, Field(ge=MIN_PRIORITY, le=MAX_PRIORITY), BeforeValidator(json_number)] = Field(
        default=0,
        description="Among due jobs a higher priority starts first; a waiting job ages, so a low priority "
        "is delayed, never starved.",
    )
    concurrency_key: ConcurrencyKey | None = Field(
        default=None,
        description="At most `concurrency_limit` of your jobs with this key run at once (all workers).",
    )
    concurrency_limit: Annotated[int, Field(ge=1, le=1000), BeforeValidator(json_number)] | None = Field(
        default=None,
        description="How many of your jobs with `concurrency_key` may run at once (default 1); needs a "
        "`concurrency_key`.",
    )

    webhook_url: WebhookUrl | None = Field(
        default=None,
        description="https URL told (a signed POST, see Webhooks) when the job ends; plain http only where "
        "WEBHOOK_ALLOW_PRIVATE=true.",
    )

    depends_on: list[DependencyRef] = Field(
        default_factory=list,
        max_length=MAX_PARENTS,
        json_schema_extra={"uniqueItems": True},
        description="Jobs (yours) that must complete first: until then this job is `blocked`; if one ends "
        "`failed` or `cancelled`, this one is cancelled with an error naming it. Inside a batch, `#i` names "
        "the batch's job at index i (an earlier one).",
    )

    @field_validator("depends_on")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("must not name a job twice")
        return value

    @field_validator("concurrency_limit")
    @classmethod
    def _limit_needs_key(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and info.data.get("concurrency_key") is None:
            raise PydanticCustomError(LIMIT_WITHOUT_KEY, "Needs a concurrency_key")
        return value

    @field_validator("name")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        if value is not None and "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value


class JobSubmission(JobCreateBase):
    """The shape of every per-type submission (`type` narrowed to one literal, `payload` to its model)."""

    type: str
    payload: Payload


def _submission_model(spec: JobTypeSpec) -> type[JobSubmission]:
    payload_field: Any = Field(default_factory=spec.payload) if spec.payload_optional else ...
    return create_model(
        spec.model_name,
        __base__=JobSubmission,
        __doc__=f"Submit a `{spec.name}` job: {spec.summary}",
        type=(Literal[spec.name], ...),  # type: ignore[arg-type]
        payload=(spec.payload, payload_field),
    )


SUBMISSION_MODELS: dict[str, type[JobSubmission]] = {spec.name: _submission_model(spec) for spec in JOB_TYPES}

if TYPE_CHECKING:
    JobCreate = JobSubmission
else:
    JobCreate = Annotated[Union[tuple(SUBMISSION_MODELS.values())], Discriminator("type")]  # noqa: UP007


class ResultFile(BaseModel):
    """A file a job produced, as clients see it."""

    filename: str
    size_bytes: int
    sha256: str
    content_type: str
    url: str


class JobPublic(BaseModel):
    """A job as returned by the API (validated from a `JobRecord`)."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    owner_id: uuid.UUID | None = Field(
        default=None, description="Id of the API key that owns the job: shown to admin keys only, else null."
    )
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
    tags: list[str]
    priority: int
    concurrency_key: str | None
    concurrency_limit: int | None
    schedule_id: uuid.UUID | None = Field(
        default=None, description="The schedule whose fire made this job (read-only); null otherwise."
    )
    webhook_url: str | None = Field(default=None, description="Told when the job ends (see Webhooks).")
    batch_id: uuid.UUID | None = Field(
        default=None, description="The batch it was submitted in (read-only); null otherwise."
    )
    depends_on: list[uuid.UUID] = Field(default_factory=list, description="The jobs it waits for.")
    created_at: datetime
    scheduled_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime

    @field_validator("result_file", mode="before")
    @classmethod
    def _public_file(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, StoredFile):
            return value
        url = f"{job_location(info.data['id'])}/download"
        return ResultFile(
            filename=value.filename,
            size_bytes=value.size_bytes,
            sha256=value.sha256,
            content_type=value.content_type,
            url=url,
        )

    @classmethod
    def of(cls, job: JobRecord, show_owner: bool = False) -> Self:
        """The API view of a job record; `owner_id` only for an admin's view (`show_owner`)."""
        view = cls.model_validate(job)
        if not show_owner:
            view.owner_id = None  # a fresh model of our own: no copy needed
        return view


def new_job_view(
    values: Mapping[str, Any],
    stamps: Mapping[str, Any],
    batch_id: uuid.UUID | None = None,
    show_owner: bool = False,
) -> dict[str, Any]:
    """`JobPublic` of a job just inserted, as a plain dict for `pydantic_core.to_json`, straight from the
    values it was inserted with (`new_job`'s, plus `status`, `error` and `depends_on` where given) and
    what the database set (`repo.jobs.NEW_JOB_STAMPS`): the same keys in the same order, with values it
    serializes exactly as the model does (a unit test holds the two equal). No record is built and no
    model validated: for a 1,000-job batch those were a quarter of the request (measured)."""
    return {
        "id": values["id"],
        "owner_id": values["owner_id"] if show_owner else None,
        "type": values["type"],
        "name": values["name"],
        "payload": values["payload"],
        # str() of a StrEnum is its value: pydantic-core serializes an enum 10x slower than a str, and
        # `.value` is a Python-level property
        "status": str(values.get("status", JobStatus.PENDING)),
        "progress": 0.0,
        "attempts": 0,
        "max_attempts": values["max_attempts"],
        "result": None,
        "error": values.get("error"),
        "result_file": None,
        "tags": values.get("tags") or [],
        "priority": values.get("priority", 0),
        "concurrency_key": values.get("concurrency_key"),
        "concurrency_limit": values.get("concurrency_limit"),
        "schedule_id": None,
        "webhook_url": values.get("webhook_url"),
        "batch_id": batch_id,
        "depends_on": values.get("depends_on") or [],
        "created_at": stamps["created_at"],
        "scheduled_at": stamps["scheduled_at"],
        "started_at": None,
        "finished_at": stamps["finished_at"],
        "updated_at": stamps["updated_at"],
    }


class RunView(BaseModel):
    """One claim of a job by a worker (`outcome` is null while it runs)."""

    model_config = ConfigDict(from_attributes=True)

    attempt: int
    worker_id: str
    started_at: datetime
    ended_at: datetime | None
    outcome: RunOutcome | None


class JobInclude(StrEnum):
    """What `GET /jobs/{id}?include=` may add to the job."""

    RUNS = "runs"


class JobDetail(JobPublic):
    """One job, with what `include` asked for (a field not asked for is left out)."""

    runs: list[RunView] | None = Field(default=None, description="With `include=runs`: one entry per claim.")


class JobStatusView(BaseModel):
    """The cheap polling view of a job."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    status: JobStatus
    progress: float


class JobResultView(BaseModel):
    """What a job produced; `result` is null until it completes."""

    id: uuid.UUID
    status: JobStatus
    result: Any | None
    result_file: ResultFile | None

    @classmethod
    def of(cls, job: JobRecord) -> JobResultView:
        """The result view: empty until the job completes."""
        public = JobPublic.of(job)
        done = public.status == JobStatus.COMPLETED
        return cls(
            id=public.id,
            status=public.status,
            result=public.result if done else None,
            result_file=public.result_file if done else None,
        )


class BulkRequest(BaseModel):
    """Which of your jobs a bulk action applies to: the `GET /jobs` filters; `dry_run` only counts them."""

    model_config = ConfigDict(extra="forbid")

    status: list[JobStatus] | None = Field(default=None, max_length=len(JobStatus))
    type: list[JobType] | None = Field(default=None, max_length=100)
    created_after: Timestamp | None = None
    created_before: Timestamp | None = None
    tag: list[Tag] | None = Field(
        default=None, max_length=MAX_TAGS, description="Jobs carrying all of these."
    )
    q: SearchText | None = Field(default=None, description="A job id, or the start of a job's name.")
    error: str | None = Field(
        default=None, max_length=MAX_ERROR_CHARS, description="Only jobs whose `error` is exactly this."
    )
    dry_run: bool = Field(
        default=False, strict=True, description="Count the jobs the action applies to; change nothing."
    )


class BulkResult(BaseModel):
    """How many jobs matched the filters and could take the action, and how many it changed."""

    matched: int
    changed: int


class JobList(BaseModel):
    """A page of jobs, newest first; pass `next_cursor` as `cursor` for the next page."""

    items: list[JobPublic]
    next_cursor: str | None
