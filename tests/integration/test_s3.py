"""RESULTS_URL=s3://…: what only the S3 store does, against moto's S3 server in its own process.

Multipart uploads (completed after the last part, aborted when cancelled), downloads through the API
(Range, ETag, 404 when the object is deleted behind the platform's back), presigned redirects, the orphan
sweep confined to this deployment's prefix, a store that goes down mid-run, start-up errors that name
the setting, and an end-to-end run of real API and worker processes.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import time
import uuid
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from aiobotocore.session import get_session
from pydantic import SecretStr

from backend.adapters.s3 import S3Location, S3Options, S3Storage, open_s3_storage
from backend.adapters.storage import StorageError, file_key
from backend.core.config import Settings
from backend.launcher import ChildProcess, platform_command
from backend.resources import open_storage
from backend.services.purge import purge
from tests.integration.test_csv_report import wait_progressing
from tests.integration.test_storage import write_file
from tests.utils import db
from tests.utils.s3 import ACCESS_KEY, BUCKET, REGION, SECRET_KEY, S3Server, running_s3
from tests.utils.stack import ROOT, Stack, read_log, serve_api, settings_env, submit, wait_for, wait_for_runs

MiB = 1024 * 1024
PART = 5 * MiB


def options(server: S3Server, prefix: str, **extra: Any) -> S3Options:
    location = S3Location(BUCKET, prefix)
    return S3Options(
        location,
        endpoint_url=server.endpoint,
        region=REGION,
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
        part_size=PART,
        **extra,
    )


def prefix_of(stack: Stack) -> str:
    """The bucket prefix a stack's RESULTS_URL names."""
    assert stack.settings.results_url is not None
    return S3Location.parse(stack.settings.results_url).prefix


async def job_objects(server: S3Server, stack: Stack, job_id: str) -> list[str]:
    """The keys of a job's objects (under `<prefix>/<deployment>/<job>/`)."""
    return [k for k in await server.keys(prefix_of(stack) + "/") if f"/{job_id}/" in k]


async def object_etag(server: S3Server, key: str) -> str:
    async with server.client() as s3:
        return (await s3.head_object(Bucket=BUCKET, Key=key))["ETag"].strip('"')


async def report(client: httpx.AsyncClient, rows: int = 20_000, **extra: Any) -> dict[str, Any]:
    job = await submit(client, "csv_report", {"rows": rows, "seed": 7}, **extra)
    done = await wait_for(client, job["id"], {"completed", "failed"}, timeout=60)
    assert done["status"] == "completed", done
    return done


# --- the store alone ---------------------------------------------------------------------------------


async def test_a_file_past_the_part_size_is_one_multipart_upload(s3_server: S3Server, tmp_path: Path) -> None:
    async with open_s3_storage(options(s3_server, "mp"), uuid.uuid4(), tmp_path) as storage:
        job_id = uuid.uuid4()
        scratch = await anyio.to_thread.run_sync(storage.scratch_path, job_id, "big.bin")
        sha = await anyio.to_thread.run_sync(write_file, scratch, 12 * MiB)
        key = file_key(job_id, "big.bin")
        await storage.put(key, scratch)
        # A multipart object's ETag is the MD5 of its parts' MD5s, then "-<number of parts>".
        assert (await object_etag(s3_server, storage.base + key)).endswith("-3")
        assert await s3_server.uploads("mp/") == []
        digest = hashlib.sha256()
        async for chunk in await storage.stream(key):
            digest.update(chunk)
        assert digest.hexdigest() == sha


async def test_a_cancelled_multipart_upload_is_aborted(s3_server: S3Server, tmp_path: Path) -> None:
    async with open_s3_storage(options(s3_server, "cancel"), uuid.uuid4(), tmp_path) as storage:
        job_id = uuid.uuid4()
        scratch = await anyio.to_thread.run_sync(storage.scratch_path, job_id, "big.bin")
        await anyio.to_thread.run_sync(write_file, scratch, 60 * MiB)
        key = file_key(job_id, "big.bin")
        upload = asyncio.create_task(storage.put(key, scratch))
        deadline = time.monotonic() + 20
        while not await s3_server.uploads("cancel/"):
            assert time.monotonic() < deadline and not upload.done(), "the multipart upload never started"
            await asyncio.sleep(0.02)
        upload.cancel()
        with pytest.raises(asyncio.CancelledError):
            await upload
        assert await s3_server.uploads("cancel/") == []  # aborted: no parts left stored (and billed)
        assert not await storage.exists(key) and not scratch.exists()


async def test_scratch_older_than_any_run_is_swept(s3_server: S3Server, tmp_path: Path) -> None:
    """A worker killed mid-write leaves its scratch file on its host; the job may then run elsewhere."""
    async with open_s3_storage(options(s3_server, "sweep"), uuid.uuid4(), tmp_path) as storage:
        stale = await anyio.to_thread.run_sync(storage.scratch_path, uuid.uuid4(), "old.csv")
        fresh = await anyio.to_thread.run_sync(storage.scratch_path, uuid.uuid4(), "new.csv")
        for path in (stale, fresh):
            await anyio.to_thread.run_sync(path.write_text, "half\n")
        two_days_ago = time.time() - 2 * 86400
        await anyio.to_thread.run_sync(os.utime, stale, (two_days_ago, two_days_ago))
        assert await storage.sweep_scratch(older_than_s=86400) == 1
        assert not stale.parent.exists() and fresh.exists()


# --- through the API ---------------------------------------------------------------------------------


async def test_downloads_from_s3_have_range_and_etag_and_404_once_deleted(
    isolated: Any, s3_server: S3Server
) -> None:
    async with isolated(workers=1, **s3_server.overrides()) as stack, await stack.client() as client:
        done = await report(client)
        meta, url = done["result_file"], done["result_file"]["url"]
        (key,) = await job_objects(s3_server, stack, done["id"])
        assert not (stack.settings.resolved_results_dir / done["id"]).exists()  # nothing on local disk
        full = await client.get(url)
        etag = f'"{meta["sha256"]}"'
        assert full.status_code == 200 and full.headers["etag"] == etag
        assert hashlib.sha256(full.content).hexdigest() == meta["sha256"]
        assert int(full.headers["content-length"]) == meta["size_bytes"] == len(full.content)
        part = await client.get(url, headers={"Range": "bytes=100-199"})
        assert part.status_code == 206 and part.content == full.content[100:200]
        assert part.headers["content-range"] == f"bytes 100-199/{meta['size_bytes']}"
        tail = await client.get(url, headers={"Range": "bytes=-50", "If-Range": etag})
        assert tail.status_code == 206 and tail.content == full.content[-50:]
        assert (await client.get(url, headers={"If-None-Match": etag})).status_code == 304
        head = await client.head(url)
        assert head.status_code == 200 and head.headers["content-length"] == str(meta["size_bytes"])
        link = (await client.post(f"/jobs/{done['id']}/download-link")).json()["url"]
        assert (await client.get(link)).content == full.content

        async with s3_server.client() as s3:  # deleted behind the platform's back
            await s3.delete_object(Bucket=BUCKET, Key=key)
        for method in ("GET", "HEAD"):
            assert (await client.request(method, url)).status_code == 404
        gone = await client.get(url)
        assert gone.json() == {"detail": "Result file not found (purged or missing)"}
        assert (await client.get(link)).status_code == 404


async def test_presigned_downloads_redirect_to_the_store(isolated: Any, s3_server: S3Server) -> None:
    overrides = s3_server.overrides(s3_presigned_downloads=True, s3_presign_seconds=60)
    async with isolated(workers=1, **overrides) as stack, await stack.client() as client:
        done = await report(client)
        meta, url = done["result_file"], done["result_file"]["url"]
        etag = f'"{meta["sha256"]}"'
        redirect = await client.get(url)
        assert redirect.status_code == 307 and redirect.headers["etag"] == etag
        location = redirect.headers["location"]
        assert location.startswith(s3_server.endpoint + "/") and "X-Amz-Signature=" in location
        async with httpx.AsyncClient() as anyone:  # no API key: the URL itself is the permission
            fetched = await anyone.get(location)
            assert fetched.status_code == 200
            assert hashlib.sha256(fetched.content).hexdigest() == meta["sha256"]
            assert fetched.headers["content-disposition"] == f'attachment; filename="{meta["filename"]}"'
            assert fetched.headers["content-type"] == meta["content_type"]
            ranged = await anyone.get(location, headers={"Range": "bytes=10-19"})
            assert ranged.status_code == 206 and ranged.content == fetched.content[10:20]
        # HEAD and conditional requests are still the API's: a presigned URL is for GET only.
        head = await client.head(url)
        assert head.status_code == 200 and head.headers["content-length"] == str(meta["size_bytes"])
        assert (await client.get(url, headers={"If-None-Match": etag})).status_code == 304
        link = (await client.post(f"/jobs/{done['id']}/download-link")).json()["url"]
        assert (await client.get(link)).headers["location"].startswith(s3_server.endpoint)

        (key,) = await job_objects(s3_server, stack, done["id"])
        async with s3_server.client() as s3:
            await s3.delete_object(Bucket=BUCKET, Key=key)
        assert (await client.get(url)).status_code == 404  # never a redirect to a missing object


async def test_purge_and_the_orphan_sweep_stay_in_this_deployments_prefix(
    isolated: Any, s3_server: S3Server
) -> None:
    async with isolated(workers=1, **s3_server.overrides()) as stack, await stack.client() as client:
        kept, expired = await report(client, rows=10), await report(client, rows=10)
        await db.execute(
            stack.settings,
            "UPDATE jobs SET finished_at = $1 WHERE id = $2",
            datetime.now(UTC) - timedelta(days=8),
            uuid.UUID(expired["id"]),
        )
        prefix = prefix_of(stack)
        (kept_key,) = await job_objects(s3_server, stack, kept["id"])
        ours = kept_key.split("/")[1]
        foreign = [  # another deployment in the same prefix; another prefix that merely starts the same
            f"{prefix}/{uuid.uuid4()}/{uuid.uuid4()}/theirs.csv",
            f"{prefix}-other/{ours}/{uuid.uuid4()}/theirs.csv",
        ]
        async with s3_server.client() as s3:
            for key in foreign:
                await s3.put_object(Bucket=BUCKET, Key=key, Body=b"x\n")
        orphan = uuid.uuid4()  # ours, but its job row is gone
        async with db.resources(stack.settings) as res:
            scratch = await anyio.to_thread.run_sync(res.storage.scratch_path, orphan, "stray.csv")
            await anyio.to_thread.run_sync(scratch.write_text, "x\n")
            await res.storage.put(file_key(orphan, "stray.csv"), scratch)
            assert set(await res.storage.job_ids()) == {
                uuid.UUID(kept["id"]),
                uuid.UUID(expired["id"]),
                orphan,
            }
            for _ in range(50):  # a worker's own purge may hold the lock for a moment
                if (report_ := await purge(res)).jobs:
                    break
                await asyncio.sleep(0.1)
        assert (report_.jobs, report_.files, report_.orphan_files) == (1, 1, 1)
        left = set(await s3_server.keys())
        assert kept_key in left and set(foreign) <= left
        assert await job_objects(s3_server, stack, expired["id"]) == []
        assert not [k for k in left if str(orphan) in k]


async def test_a_store_down_mid_run_fails_the_attempt_and_the_retry_succeeds(
    isolated: Any, tmp_path: Path
) -> None:
    async with running_s3(tmp_path / "moto.log") as server:
        await server.create_bucket()
        async with isolated(workers=1, **server.overrides()) as stack, await stack.client() as client:
            earlier = await report(client, rows=10)
            job = await submit(client, "csv_report", {"rows": 1_000_000, "seed": 3}, max_attempts=20)
            await wait_progressing(client, job["id"])
            await asyncio.to_thread(server.stop)  # the report is still being written: its upload will fail

            down = await client.get(earlier["result_file"]["url"])
            assert down.status_code == 503 and down.headers["retry-after"] == "5"
            assert (await wait_for_runs(client, job["id"], 1, timeout=60))[0]["outcome"] == "retry"
            failing = (await client.get(f"/jobs/{job['id']}")).json()
            assert failing["error"] == "StorageError (details in the worker log)", failing
            assert failing["result_file"] is None and failing["status"] in {"retrying", "running"}

            await asyncio.to_thread(server.start)  # back, empty (moto keeps nothing): as after a restore
            await server.create_bucket()
            done = await wait_for(client, job["id"], {"completed", "failed"}, timeout=90)
            assert done["status"] == "completed" and done["attempts"] >= 2, done
            body = (await client.get(done["result_file"]["url"])).content
            assert hashlib.sha256(body).hexdigest() == done["result_file"]["sha256"]
            assert len(body) == done["result_file"]["size_bytes"]
            assert await server.uploads() == []


# --- start-up -----------------------------------------------------------------------------------------


async def test_start_up_errors_name_the_setting_to_fix(s3_server: S3Server, tmp_path: Path) -> None:
    nowhere = S3Server(tmp_path / "unused.log").endpoint  # a free port: nothing listens there
    keys = {"region": REGION, "access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY}
    cases = [
        (
            S3Options(S3Location(BUCKET, "p"), endpoint_url=nowhere, **keys),
            f"cannot reach {nowhere} (EndpointConnectionError); check S3_ENDPOINT_URL",
        ),
        (
            S3Options(S3Location("no-such-bucket", ""), endpoint_url=s3_server.endpoint, **keys),
            "bucket 'no-such-bucket' does not exist; create it first",
        ),
    ]
    for opts, expected in cases:
        with pytest.raises(StorageError) as caught:
            async with open_s3_storage(opts, uuid.uuid4(), tmp_path):
                pass
        assert str(caught.value).startswith(f"RESULTS_URL {opts.location}: "), caught.value
        assert expected in str(caught.value)


async def iam_user(server: S3Server) -> tuple[str, str]:
    """An IAM user allowed s3:* on a moto server whose authentication is on; its key pair."""
    async with get_session().create_client(
        "iam",
        endpoint_url=server.endpoint,
        region_name=REGION,
        aws_access_key_id="x",
        aws_secret_access_key="y",
    ) as iam:
        await iam.create_user(UserName="platform")
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
        }
        await iam.put_user_policy(UserName="platform", PolicyName="s3", PolicyDocument=json.dumps(policy))
        key = (await iam.create_access_key(UserName="platform"))["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


async def exit_log(command: list[str], settings: Settings, log_path: Path) -> tuple[int | None, str]:
    """Run a platform process until it exits (at most 60 s): its exit code and its log."""
    process = ChildProcess(command, env=settings_env(settings), cwd=ROOT, log_path=log_path).start()
    code = await asyncio.to_thread(process.wait_or_kill, 60)
    return code, read_log(log_path)


async def test_wrong_credentials_stop_the_api_and_the_worker_with_one_clear_line(
    isolated: Any, tmp_path: Path
) -> None:
    # moto checks signatures once INITIAL_NO_AUTH_ACTION_COUNT requests have been served (the 3 IAM calls).
    async with running_s3(tmp_path / "moto.log", INITIAL_NO_AUTH_ACTION_COUNT="3") as server:
        key_id, secret = await iam_user(server)
        async with server.client(key_id, secret) as s3:
            await s3.create_bucket(Bucket=BUCKET)
        good = server.overrides(aws_access_key_id=key_id, aws_secret_access_key=secret)
        async with isolated(workers=0, **good) as stack:
            async with open_storage(stack.settings, uuid.uuid4()) as storage:  # the right key works
                assert isinstance(storage, S3Storage)
            wrong = stack.settings.model_copy(update={"aws_secret_access_key": SecretStr("not-the-secret")})
            with pytest.raises(StorageError, match=r"access denied .*check AWS_ACCESS_KEY_ID"):
                async with open_storage(wrong, uuid.uuid4()):
                    pass
            for name, command in (("api", platform_command("api")), ("worker", platform_command("worker"))):
                code, log = await exit_log(command, wrong, tmp_path / f"{name}.log")
                assert code not in (0, None), log
                assert f"RESULTS_URL {wrong.results_url}: access denied (403); check AWS_ACCESS_KEY_ID" in log
                assert "botocore" not in log, log  # no traceback from deep inside the client


# --- end to end ---------------------------------------------------------------------------------------


async def test_api_and_worker_processes_serve_reports_and_bundles_from_s3(
    isolated: Any, s3_server: S3Server, tmp_path: Path
) -> None:
    overrides = s3_server.overrides(s3_part_size_bytes=PART)
    async with isolated(workers=1, **overrides) as stack:
        key = await stack.new_key()
        async with (
            serve_api(stack.settings, tmp_path / "api.log") as base,
            httpx.AsyncClient(base_url=base, headers={"X-API-Key": key}) as client,
        ):
            done = await report(client, rows=200_000)  # about 10 MB: a multipart upload
            meta = done["result_file"]
            (object_key,) = await job_objects(s3_server, stack, done["id"])
            assert "-" in await object_etag(s3_server, object_key)
            full = await client.get(meta["url"])
            assert full.status_code == 200 and full.headers["etag"] == f'"{meta["sha256"]}"'
            assert hashlib.sha256(full.content).hexdigest() == meta["sha256"]
            resumed = await client.get(
                meta["url"], headers={"Range": f"bytes={6 * MiB}-", "If-Range": full.headers["etag"]}
            )
            assert resumed.status_code == 206 and resumed.content == full.content[6 * MiB :]

            square = await submit(client, "square_sum", {"data": [3]})
            bundle = await submit(
                client, "bundle", {"filename": "both.zip"}, depends_on=[done["id"], square["id"]]
            )
            zipped = await wait_for(client, bundle["id"], {"completed", "failed", "cancelled"}, timeout=60)
            assert zipped["status"] == "completed", zipped
            archive = zipfile.ZipFile(io.BytesIO((await client.get(zipped["result_file"]["url"])).content))
            inside = archive.read(f"000-{done['id']}/{meta['filename']}")
            assert hashlib.sha256(inside).hexdigest() == meta["sha256"]
            assert json.loads(archive.read("results.json"))["jobs"][1]["result"] == {"value": 9}
