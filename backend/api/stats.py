"""`GET /stats`: job counts and latencies over a window, from the rollups the workers keep current."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response

from backend.api.deps import ADMIN_REQUIRED, AUTH_RESPONSES, OWNER_PATTERN, CurrentKey, StateDep
from backend.api.errors import ErrorMessage
from backend.domain.job_types import JobType
from backend.domain.stats import StatsView, StatsWindow
from backend.services.auth import Principal
from backend.services.stats import stats_view

router = APIRouter(tags=["stats"], responses=AUTH_RESPONSES)

STATS_RESPONSES: dict[int | str, dict[str, Any]] = {
    403: {"description": "`owner` with a client key", "model": ErrorMessage},
    422: {"description": "Validation error naming the field (`window`, `type` or `owner`)"},
}


# The view is serialised once, straight to JSON (FastAPI's generic path would validate it again, make a
# dict and json.dumps that), and kept a second per process (ViewCache says why).
@router.get(
    "/stats", response_model=StatsView, responses=STATS_RESPONSES, summary="Job statistics over a window"
)
async def get_stats(
    key: CurrentKey,
    state: StateDep,
    window: Annotated[
        StatsWindow,
        Query(description="`1h` (60 one-minute buckets), `24h` (96 of 15 minutes) or `7d` (168 of an hour)."),
    ] = StatsWindow.DAY,
    type: Annotated[JobType | None, Query(description="One job type only; all types if omitted.")] = None,
    owner: Annotated[
        str | None,
        Query(
            description="Admin keys only: `all` (an admin's default) for every key's jobs, or one key's id.",
            pattern=OWNER_PATTERN,
        ),
    ] = None,
) -> Response:
    """Jobs created, completed, failed and cancelled per bucket, with p50/p95 wait (created → first start)
    and run time (first start → end) of the jobs that ended in each bucket; totals and counts per type over
    the window; jobs waiting and running now. Your own jobs (an admin key's: every key's, or `owner`'s).

    Served from rollups a worker duty updates every `STATS_INTERVAL_SECONDS` (`as_of` says when), kept
    `STATS_RETENTION_DAYS`; the cost does not grow with the number of jobs. An API process answers the
    same question from memory for up to a second."""
    job_type, owner_id = (None if type is None else str(type)), _stats_owner(key, owner)

    async def render() -> bytes:
        view = await stats_view(state.resources.pool, owner_id=owner_id, window=window, job_type=job_type)
        return view.model_dump_json().encode()

    body = await state.stats_views.get((owner_id, window, job_type), render)
    return Response(body, media_type="application/json")


def _stats_owner(key: Principal, owner: str | None) -> uuid.UUID | None:
    """Whose jobs to count (None: everyone's): a client key's own; an admin's pick, by default everyone's."""
    if not key.is_admin:
        if owner is not None:
            raise HTTPException(status_code=403, detail=ADMIN_REQUIRED)
        return key.id
    return None if owner in (None, "all") else uuid.UUID(owner)
