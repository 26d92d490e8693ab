"""The worker's handler registry, derived from the job types declared in `backend/domain/job_types.py`.

Each type's handler is `handle(ctx, payload)` in the module `worker/tasks/<type name>.py`.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from typing import Any

from backend.domain.job_types import JOB_TYPES
from worker.context import JobContext, Outcome

Handler = Callable[[JobContext, Any], Awaitable[Outcome]]


def _handler(type_name: str) -> Handler:
    module = importlib.import_module(f"{__name__}.{type_name}")
    handle: Handler = module.handle
    return handle


HANDLERS: dict[str, Handler] = {spec.name: _handler(spec.name) for spec in JOB_TYPES}
