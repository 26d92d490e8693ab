"""The job-type registry: one module per type, each with its payload model, handler and timeout."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from backend.domain.enums import JobType
from backend.domain.payloads import PAYLOAD_MODELS, Payload
from worker.context import JobContext, Outcome
from worker.tasks import csv_report, cube_sum, jobs_export, sleep, square_sum

Handler = Callable[[JobContext, Any], Awaitable[Outcome]]


@dataclass(frozen=True)
class TaskSpec:
    """How to run one job type."""

    handler: Handler
    payload_model: type[Payload]
    timeout_s: float


def _spec(job_type: JobType, module: Any) -> TaskSpec:
    return TaskSpec(module.handle, PAYLOAD_MODELS[job_type], float(module.TIMEOUT_S))


TASKS: dict[str, TaskSpec] = {
    JobType.CSV_REPORT: _spec(JobType.CSV_REPORT, csv_report),
    JobType.JOBS_EXPORT: _spec(JobType.JOBS_EXPORT, jobs_export),
    JobType.SQUARE_SUM: _spec(JobType.SQUARE_SUM, square_sum),
    JobType.CUBE_SUM: _spec(JobType.CUBE_SUM, cube_sum),
    JobType.SLEEP: _spec(JobType.SLEEP, sleep),
}

MAX_TIMEOUT_S = max(spec.timeout_s for spec in TASKS.values())
