"""GET/HEAD /jobs/{id}/download: streamed, with ETag, conditional requests and single byte ranges."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import StreamingResponse

from backend.api.deps import OwnedJobDep, StorageDep
from backend.domain.enums import JobStatus
from backend.domain.errors import ResultGone, ResultNotReady
from backend.services.ranges import RangeNotSatisfiable, none_match, parse_range, strong_etag

router = APIRouter(prefix="/jobs", tags=["jobs"])

RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The file", "content": {"text/csv": {}}},
    206: {"description": "The requested byte range"},
    304: {"description": "Not modified (If-None-Match matched the ETag)"},
    404: {"description": "Job not found, or its file was purged"},
    409: {"description": "The job has not produced a file (yet)"},
    416: {"description": "Range not satisfiable"},
}


@router.get("/{job_id}/download", responses=RESPONSES, response_class=Response)
@router.head("/{job_id}/download", responses=RESPONSES, response_class=Response, operation_id="head_download")
async def download_result(
    request: Request,
    job: OwnedJobDep,
    storage: StorageDep,
    range_: Annotated[str | None, Header(alias="Range")] = None,
    if_none_match: Annotated[str | None, Header(alias="If-None-Match")] = None,
    if_range: Annotated[str | None, Header(alias="If-Range")] = None,
) -> Response:
    """Download the job's file."""
    meta = job.result_file
    if job.status != JobStatus.COMPLETED or not meta:
        raise ResultNotReady(f"Job is {job.status}; no file to download")
    size = await storage.size(meta["key"])
    if size is None:
        raise ResultGone("Result file not found (purged or missing)")
    etag = strong_etag(meta["sha256"])
    headers = {
        "ETag": etag,
        "Accept-Ranges": "bytes",
        "Content-Disposition": f'attachment; filename="{meta["filename"]}"',
        "Cache-Control": "private, max-age=0, must-revalidate",
    }
    if none_match(if_none_match, etag):
        return Response(status_code=304, headers=headers)
    try:
        wanted = parse_range(range_, size) if if_range in (None, etag) else None
    except RangeNotSatisfiable:
        return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"})
    status, start, end = 200, 0, size - 1
    if wanted is not None:
        status, start, end = 206, wanted.start, wanted.end
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    headers["Content-Length"] = str(end - start + 1)
    media = meta["content_type"]
    if request.method == "HEAD" or size == 0:
        return Response(status_code=status, headers=headers, media_type=media)
    body = storage.stream(meta["key"], start, end)
    return StreamingResponse(body, status_code=status, headers=headers, media_type=media)
