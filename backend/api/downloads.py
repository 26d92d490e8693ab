"""GET/HEAD /jobs/{id}/download: streamed, with ETag, conditional requests and single byte ranges."""

from __future__ import annotations

import logging
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse

from backend.api.deps import AUTH_RESPONSES, OwnedJobDep, StorageDep
from backend.api.ranges import RangeNotSatisfiable, none_match, parse_range, strong_etag
from backend.domain.enums import JobStatus
from backend.domain.errors import ResultGone, ResultNotReady

log = logging.getLogger(__name__)

router = APIRouter(prefix="/jobs", tags=["jobs"], responses=AUTH_RESPONSES)

RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The file", "content": {"text/csv": {}}},
    206: {"description": "The requested byte range"},
    304: {"description": "Not modified (If-None-Match matched the ETag)"},
    307: {"description": "With S3_PRESIGNED_DOWNLOADS: fetch the file from this presigned URL"},
    404: {"description": "Job not found, or its file was purged"},
    409: {"description": "The job has not produced a file (yet)"},
    416: {"description": "Range not satisfiable"},
}


def content_disposition(filename: str) -> str:
    """`attachment` with a quoted ASCII filename, plus RFC 8187 `filename*` when it is not plain ASCII."""
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in filename)
    value = f'attachment; filename="{fallback}"'
    if fallback != filename:
        value += f"; filename*=UTF-8''{quote(filename, safe='')}"
    return value


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
    """Download the job's file (GET or HEAD); a single `Range` is honoured, `If-None-Match` gives 304.

    With presigned downloads on (S3 store), a GET answers 307 to a short-lived URL on the store."""
    meta = job.result_file
    if job.status != JobStatus.COMPLETED or not meta:
        raise ResultNotReady(f"Job is {job.status}; no file to download")
    size = await storage.size(meta.key)
    if size is None or size != meta.size_bytes:
        if size is not None:  # the bytes are not the ones the row (and so the ETag) describes
            log.error("result file size differs from its record", extra={"job_id": str(job.id)})
        raise ResultGone("Result file not found (purged or missing)")
    etag = strong_etag(meta.sha256)
    validators = {"ETag": etag, "Cache-Control": "private, max-age=0, must-revalidate"}
    if none_match(if_none_match, etag):
        return Response(status_code=304, headers=validators)
    disposition = content_disposition(meta.filename)
    # HEAD is answered here (a presigned URL is signed for GET only); a GET may go straight to the store,
    # which then serves Range itself.
    if request.method == "GET":
        url = await storage.redirect_url(meta.key, disposition, meta.content_type)
        if url is not None:
            return RedirectResponse(url, status_code=307, headers=validators)
    headers = {**validators, "Accept-Ranges": "bytes", "Content-Disposition": disposition}
    try:
        wanted = parse_range(range_, size) if if_range in (None, etag) else None
    except RangeNotSatisfiable:
        return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"})
    status, start, end = 200, 0, size - 1
    if wanted is not None:
        status, start, end = 206, wanted.start, wanted.end
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    headers["Content-Length"] = str(end - start + 1)
    media = meta.content_type
    if request.method == "HEAD" or size == 0:
        return Response(status_code=status, headers=headers, media_type=media)
    try:  # opened before any header is sent: a file purged since the size check is still a clean 404
        # the whole file: no range for the store (S3 then sends the object as it is, not a 206 copy)
        body = await storage.stream(meta.key, start, end) if wanted else await storage.stream(meta.key)
    except FileNotFoundError as exc:
        raise ResultGone("Result file not found (purged or missing)") from exc
    return StreamingResponse(body, status_code=status, headers=headers, media_type=media)
