"""Result files in an S3-compatible store (AWS S3, MinIO, Ceph, R2, ...), through aiobotocore.

Keys live under `<prefix>/<deployment id>/<job id>/<file>`: the deployment prefix is what keeps the orphan
sweep (`job_ids`) from ever listing another deployment's objects in a shared bucket.

The same guarantees as the local folder:
- never half-visible: a handler writes a local scratch file; `put` uploads it with one PutObject, or, past
  the part size, a multipart upload that is completed only after its last part (and aborted on any error
  or cancellation). S3 makes an object visible only when that one request succeeds.
- constant memory: an upload holds one part at a time (read, and its MD5 computed, in a thread); a
  download is a ranged GetObject read in 1 MiB chunks.
- every store error leaves this module as an `OSError` (`FileNotFoundError` for a missing object,
  `StorageError` otherwise), so callers treat S3 and the disk alike: a failed upload fails the attempt,
  which is retried like any other error.

Requests: payload signing is off (each part carries its own Content-MD5, which the store checks) and so
are botocore's optional CRC checksums, so no hashing of a part runs on the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import aiohttp
import anyio
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
)

from backend.adapters.storage import CHUNK_SIZE, PART_SUFFIX, StorageError, uuid_or_none

if TYPE_CHECKING:
    from types_aiobotocore_s3.client import S3Client
    from types_aiobotocore_s3.type_defs import CompletedPartTypeDef

log = logging.getLogger(__name__)

MAX_PARTS = 10_000  # S3's limit per multipart upload
DELETE_BATCH = 1000  # S3's limit per DeleteObjects
MISSING = {"404", "NoSuchKey", "NotFound"}
DENIED = {"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken"}
WRONG_REGION = {"301", "PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraint"}
UNREACHABLE = (EndpointConnectionError, aiohttp.ClientError, TimeoutError)


@dataclass(frozen=True)
class S3Location:
    """`s3://bucket[/prefix]`, parsed."""

    bucket: str
    prefix: str  # without leading or trailing slashes; may be empty

    @classmethod
    def parse(cls, url: str) -> S3Location:
        """Split an s3:// URL; ValueError when it names no bucket."""
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        if not bucket or not url.startswith("s3://"):
            raise ValueError(f"{url!r} is not s3://bucket[/prefix]")
        return cls(bucket, prefix.strip("/"))

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


@dataclass(frozen=True)
class S3Options:
    """How to reach the store; credentials left None come from the AWS default chain."""

    location: S3Location
    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
    addressing_style: str = "auto"
    part_size: int = 16 * 2**20
    max_connections: int = 100
    presign_seconds: int | None = None  # None: downloads stream through the API
    connect_timeout_s: float = 5
    read_timeout_s: float = 60

    def client_config(self) -> AioConfig:
        """Timeouts, retries, a pool sized for streamed downloads; no payload hashing on the event loop."""
        style = self.addressing_style
        if style == "auto" and self.endpoint_url:
            style = "path"  # what MinIO, Ceph and moto expect on a plain host:port
        return AioConfig(
            connect_timeout=self.connect_timeout_s,
            read_timeout=self.read_timeout_s,
            retries={"max_attempts": 3, "mode": "standard"},
            max_pool_connections=self.max_connections,
            s3={"addressing_style": style, "payload_signing_enabled": False},
            signature_version="s3v4",  # presigned URLs too (botocore would sign those with SigV2)
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


@contextlib.contextmanager
def _translated(action: str, key: str) -> Iterator[None]:
    """Store errors as OSErrors: FileNotFoundError for a missing object, StorageError for the rest."""
    try:
        yield
    except ClientError as exc:
        if _code(exc) in MISSING:
            raise FileNotFoundError(f"no object {key}") from None
        raise StorageError(f"S3 {action} of {key} failed: {_code(exc) or exc}") from exc
    except (TimeoutError, BotoCoreError, aiohttp.ClientError) as exc:
        raise StorageError(f"S3 {action} of {key} failed: {type(exc).__name__}") from exc


def _read_part(handle: BinaryIO, size: int) -> tuple[bytes, str]:
    """The next part and its base64 MD5 (Content-MD5: the store rejects a part that arrived damaged)."""
    data = handle.read(size)
    return data, base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


class S3Storage:
    """Result files as objects under `<prefix>/<deployment id>/`; scratch files in a local folder."""

    def __init__(self, client: S3Client, options: S3Options, deployment_id: uuid.UUID, scratch: Path) -> None:
        self.client = client
        self.options = options
        self.bucket = options.location.bucket
        self.deployment_id = deployment_id
        self.base = "/".join(p for p in (options.location.prefix, str(deployment_id)) if p) + "/"
        self.scratch_root = scratch
        scratch.mkdir(parents=True, exist_ok=True)

    # --- keys and scratch ---------------------------------------------------------------------------

    def _object(self, key: str) -> str:
        if key.startswith("/") or ".." in key.split("/"):
            raise ValueError("storage key escapes the deployment prefix")
        return self.base + key

    def _job_prefix(self, job_id: uuid.UUID) -> str:
        return f"{self.base}{job_id}/"

    def scratch_path(self, job_id: uuid.UUID, filename: str) -> Path:
        """`<scratch>/<job_id>/.<filename>.<random>.part`, on this host (blocking: call it in a thread)."""
        folder = self.scratch_root / str(job_id)
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f".{filename}.{uuid.uuid4().hex[:12]}{PART_SUFFIX}"

    # --- upload ---------------------------------------------------------------------------------------

    async def put(self, key: str, scratch: Path) -> None:
        """Upload the scratch file (one request, or parts past the part size), then delete it either way."""
        try:
            size = (await anyio.to_thread.run_sync(os.stat, scratch)).st_size
            handle: BinaryIO = await anyio.to_thread.run_sync(scratch.open, "rb")
            try:
                with _translated("upload", key):
                    if size <= self.options.part_size:
                        await self._put_single(self._object(key), handle, size)
                    else:
                        await self._put_multipart(self._object(key), handle, size)
            finally:
                await anyio.to_thread.run_sync(handle.close)
        finally:
            await anyio.to_thread.run_sync(lambda: scratch.unlink(missing_ok=True))

    async def _put_single(self, name: str, handle: BinaryIO, size: int) -> None:
        data, md5 = await anyio.to_thread.run_sync(_read_part, handle, size)
        await self.client.put_object(Bucket=self.bucket, Key=name, Body=data, ContentMD5=md5)

    async def _put_multipart(self, name: str, handle: BinaryIO, size: int) -> None:
        part_size = max(self.options.part_size, -(-size // MAX_PARTS))
        upload = await self.client.create_multipart_upload(Bucket=self.bucket, Key=name)
        upload_id = upload["UploadId"]
        try:
            parts: list[CompletedPartTypeDef] = []
            for number in range(1, -(-size // part_size) + 1):
                data, md5 = await anyio.to_thread.run_sync(_read_part, handle, part_size)
                sent = await self.client.upload_part(
                    Bucket=self.bucket,
                    Key=name,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=data,
                    ContentMD5=md5,
                )
                del data  # one part in memory at a time
                parts.append({"ETag": sent["ETag"], "PartNumber": number})
            await self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=name, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            # The parts would otherwise stay stored (and billed), invisible to listings; abort even when
            # the run is being cancelled.
            await asyncio.shield(self._abort(name, upload_id))
            raise

    async def _abort(self, name: str, upload_id: str) -> None:
        try:
            await self.client.abort_multipart_upload(Bucket=self.bucket, Key=name, UploadId=upload_id)
        except Exception as exc:  # the upload's own error is the one to report
            log.warning("multipart upload not aborted", extra={"key": name, "error": repr(exc)})

    # --- download -------------------------------------------------------------------------------------

    async def stream(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """GetObject now (FileNotFoundError if it is gone), with a Range unless the whole object is wanted;
        the body is read in 1 MiB chunks."""
        extra: dict[str, Any] = {}
        if start or end is not None:
            extra["Range"] = f"bytes={start}-{'' if end is None else end}"
        with _translated("download", key):
            response = await self.client.get_object(Bucket=self.bucket, Key=self._object(key), **extra)
        return self._chunks(response["Body"], key)

    async def _chunks(self, body: Any, key: str) -> AsyncIterator[bytes]:
        try:
            while True:
                chunk = bytearray()
                with _translated("download", key):
                    while len(chunk) < CHUNK_SIZE and (piece := await body.read(CHUNK_SIZE - len(chunk))):
                        chunk += piece
                if not chunk:
                    return
                yield bytes(chunk)
        finally:
            body.close()

    async def redirect_url(self, key: str, disposition: str, content_type: str) -> str | None:
        """A presigned GET URL for the object when presigned downloads are on, else None."""
        if self.options.presign_seconds is None:
            return None
        params = {
            "Bucket": self.bucket,
            "Key": self._object(key),
            "ResponseContentDisposition": disposition,
            "ResponseContentType": content_type,
        }
        with _translated("presign", key):
            return await self.client.generate_presigned_url(
                "get_object", Params=params, ExpiresIn=self.options.presign_seconds
            )

    # --- metadata and deletion ------------------------------------------------------------------------

    async def size(self, key: str) -> int | None:
        """HeadObject's size, or None when the object is missing."""
        try:
            with _translated("head", key):
                head = await self.client.head_object(Bucket=self.bucket, Key=self._object(key))
        except FileNotFoundError:
            return None
        return head["ContentLength"]

    async def exists(self, key: str) -> bool:
        """Whether the object is there."""
        return await self.size(key) is not None

    async def delete(self, key: str) -> bool:
        """Delete the object; False when it was already gone (S3's DELETE itself does not say)."""
        if not await self.exists(key):
            return False
        with _translated("delete", key):
            await self.client.delete_object(Bucket=self.bucket, Key=self._object(key))
        return True

    async def _list(self, prefix: str) -> list[str]:
        names: list[str] = []
        with _translated("list", prefix):
            async for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            ):
                names.extend(item["Key"] for item in page.get("Contents", []))
        return names

    async def _delete_objects(self, names: list[str]) -> int:
        for start in range(0, len(names), DELETE_BATCH):
            batch = names[start : start + DELETE_BATCH]
            with _translated("delete", batch[0]):
                done = await self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": n} for n in batch], "Quiet": True}
                )
            if errors := done.get("Errors"):
                first = errors[0]
                raise StorageError(f"S3 delete of {first.get('Key')} failed: {first.get('Code')}")
        return len(names)

    async def _abort_uploads(self, prefix: str) -> None:
        """Abort multipart uploads left under `prefix` by a run that was killed mid-upload."""
        with _translated("list uploads", prefix):
            async for page in self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=prefix
            ):
                for upload in page.get("Uploads", []):
                    await self._abort(upload["Key"], upload["UploadId"])

    async def delete_job_files(self, job_id: uuid.UUID) -> int:
        """Delete the job's objects, its unfinished uploads and its local scratch files."""
        prefix = self._job_prefix(job_id)
        count = await self._delete_objects(await self._list(prefix))
        await self._abort_uploads(prefix)
        await self._clear_local(job_id)
        return count

    async def job_ids(self) -> list[uuid.UUID]:
        """Job ids under this deployment's prefix (one level, with a delimiter): never another's."""
        found: list[uuid.UUID] = []
        with _translated("list", self.base):
            async for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.base, Delimiter="/"
            ):
                for common in page.get("CommonPrefixes", []):
                    name = common.get("Prefix", "")[len(self.base) :].rstrip("/")
                    if (job_id := uuid_or_none(name)) is not None:
                        found.append(job_id)
        return found

    async def _clear_local(self, job_id: uuid.UUID) -> None:
        folder = self.scratch_root / str(job_id)
        await anyio.to_thread.run_sync(lambda: shutil.rmtree(folder, ignore_errors=True))

    async def sweep_scratch(self, older_than_s: float) -> int:
        """Delete this host's scratch folders untouched for `older_than_s` (longer than any run may last):
        leftovers of a killed worker whose job then ran elsewhere. Returns how many."""

        def _sweep() -> int:
            cutoff, swept = time.time() - older_than_s, 0
            for folder in self.scratch_root.iterdir():
                with contextlib.suppress(OSError):  # another process may be sweeping too
                    touched = [p.stat().st_mtime for p in folder.iterdir()]
                    if max(touched, default=folder.stat().st_mtime) < cutoff:
                        shutil.rmtree(folder)
                        swept += 1
            return swept

        return await anyio.to_thread.run_sync(_sweep)

    async def clear_scratch(self, job_id: uuid.UUID) -> None:
        """Delete this host's scratch files of the job and abort uploads an interrupted run left open."""
        await self._clear_local(job_id)
        await self._abort_uploads(self._job_prefix(job_id))

    async def prune(self, job_id: uuid.UUID, keep: str) -> int:
        """Delete the job's other objects: results of earlier or stale runs."""
        kept = self._object(keep)
        others = [n for n in await self._list(self._job_prefix(job_id)) if n != kept]
        return await self._delete_objects(others)

    # --- start-up -----------------------------------------------------------------------------------

    async def check(self) -> None:
        """HeadBucket once at start-up: a wrong endpoint, credentials, region or bucket is a clear error
        naming the setting to fix, not a traceback from botocore at the first job."""
        try:
            await self.client.head_bucket(Bucket=self.bucket)
        except (NoCredentialsError, PartialCredentialsError):
            problem = "no AWS credentials found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        except UNREACHABLE as exc:
            where = self.options.endpoint_url or "AWS S3"
            problem = f"cannot reach {where} ({type(exc).__name__}); check S3_ENDPOINT_URL"
        except ClientError as exc:
            problem = self._refused(_code(exc))
        except BotoCoreError as exc:
            problem = f"{exc}; check S3_ENDPOINT_URL, AWS_REGION and the AWS credentials"
        else:
            return
        raise StorageError(f"RESULTS_URL {self.options.location}: {problem}") from None

    def _refused(self, code: str) -> str:
        if code in MISSING or code == "NoSuchBucket":
            return f"bucket {self.bucket!r} does not exist; create it first (it is never created for you)"
        if code in DENIED:
            return (
                f"access denied ({code}); check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and that they may "
                "list, read, write and delete in the bucket"
            )
        if code in WRONG_REGION:
            return f"the bucket is in another region ({code}); check AWS_REGION"
        return f"HeadBucket failed ({code}); check S3_ENDPOINT_URL and the AWS credentials"


@contextlib.asynccontextmanager
async def open_s3_storage(
    options: S3Options, deployment_id: uuid.UUID, scratch: Path
) -> AsyncIterator[S3Storage]:
    """An S3Storage on its own client, checked against the bucket; the client closes on exit."""
    session = get_session()
    async with session.create_client(
        "s3",
        endpoint_url=options.endpoint_url,
        region_name=options.region,
        aws_access_key_id=options.access_key_id,
        aws_secret_access_key=options.secret_access_key,
        aws_session_token=options.session_token,
        config=options.client_config(),
    ) as client:
        storage = S3Storage(client, options, deployment_id, scratch)
        await storage.check()
        yield storage
