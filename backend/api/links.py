"""Download links: `POST /jobs/{id}/download-link` makes one; `GET|HEAD /links/{token}` serves the file
without an API key, exactly as `/jobs/{id}/download` does (Range, ETag)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, Header, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from backend.api.deps import AUTH_RESPONSES, CurrentKey, OwnedJobDep, StateDep, StorageDep
from backend.api.downloads import RESPONSES, download_result
from backend.api.json_body import JsonBodyRoute
from backend.services.links import LinkService

MIN_S, DEFAULT_S, MAX_S = 60, 3600, 7 * 86400


class LinkRequest(BaseModel):
    """How long the link works."""

    model_config = ConfigDict(extra="forbid")

    expires_in: int = Field(default=DEFAULT_S, ge=MIN_S, le=MAX_S, strict=True, description="Seconds.")


class DownloadLink(BaseModel):
    """A link that downloads the job's file without an API key until `expires_at`."""

    url: str
    expires_at: datetime


def link_service(state: StateDep) -> LinkService:
    """Links signed with the deployment's secret (UI_SESSION_SECRET when set)."""
    configured = state.resources.settings.ui_session_secret
    return LinkService(state.resources.pool, configured.get_secret_value() if configured else None)


router = APIRouter(tags=["jobs"], route_class=JsonBodyRoute)


@router.post(
    "/jobs/{job_id}/download-link",
    status_code=201,
    response_model=DownloadLink,
    responses={
        **AUTH_RESPONSES,
        400: {"description": "The body is not JSON"},
        404: {"description": "Job not found (or not yours)"},
    },
)
async def create_download_link(
    job: OwnedJobDep, key: CurrentKey, state: StateDep, body: Annotated[LinkRequest | None, Body()] = None
) -> DownloadLink:
    """A signed link to the job's file (60 s to 7 days, default 1 h); revoking your key kills it."""
    expires_in = (body or LinkRequest()).expires_in
    token, expires_at = await link_service(state).issue(job.id, key.id, expires_in)
    return DownloadLink(url=f"/links/{token}", expires_at=expires_at)


LINK_RESPONSES = {
    **RESPONSES,
    403: {"description": "The link has expired"},
    404: {"description": "Unknown, altered or revoked link, or the file was purged"},
}


@router.get("/links/{token}", responses=LINK_RESPONSES, response_class=Response)
@router.head("/links/{token}", responses=LINK_RESPONSES, response_class=Response, operation_id="head_link")
async def download_by_link(
    request: Request,
    token: str,
    state: StateDep,
    storage: StorageDep,
    range_: Annotated[str | None, Header(alias="Range")] = None,
    if_none_match: Annotated[str | None, Header(alias="If-None-Match")] = None,
    if_range: Annotated[str | None, Header(alias="If-Range")] = None,
) -> Response:
    """Download a job's file through a link (no API key): GET or HEAD, Range and ETag as on /download."""
    job = await link_service(state).resolve(token)
    return await download_result(request, job, storage, range_, if_none_match, if_range)
