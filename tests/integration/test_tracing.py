"""Traces: a job submitted in a trace is stored with it, and the worker's run span is its child.

In-process: the API and the worker's run loop (the real claim, handler and end, on the real database and
Redis) export to an in-memory exporter. End to end: a real API process and a real worker process export
over OTLP/HTTP to a local receiver, as they would to a collector.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from backend.core.logging import ContextFilter, JsonFormatter
from backend.core.otel import Tracer
from backend.main import create_app
from backend.resources import open_resources
from tests.utils import db
from tests.utils.receiver import receiving
from tests.utils.stack import Stack, serve_api, submit, wait_for
from worker.runtime import Runtime

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
CALLER = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"


async def submit_in(
    client: httpx.AsyncClient, traceparent: str, type_: str, payload: dict[str, Any]
) -> dict[str, Any]:
    """POST /jobs with a `traceparent` header; the created job."""
    body = {"type": type_, "payload": payload}
    response = await client.post("/jobs", json=body, headers={"traceparent": traceparent})
    assert response.status_code == 201, response.text
    job: dict[str, Any] = response.json()
    return job


def in_memory() -> tuple[Tracer, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Tracer(provider), exporter


@asynccontextmanager
async def traced_api(stack: Stack, tracer: Tracer) -> AsyncIterator[httpx.AsyncClient]:
    """Another app on the stack's database and queue, tracing to `tracer`, with a fresh key."""
    app = create_app(stack.settings, tracer=tracer)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        headers = {"X-API-Key": await stack.new_key()}
        async with httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers) as client:
            yield client


def one(spans: tuple[ReadableSpan, ...] | list[ReadableSpan], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, [s.name for s in spans]
    return found[0]


def ids(span: ReadableSpan) -> tuple[str, str]:
    """(trace id, span id) in hex."""
    assert span.context is not None
    return f"{span.context.trace_id:032x}", f"{span.context.span_id:016x}"


def traceparent_of(span: ReadableSpan) -> str:
    """The W3C traceparent naming `span`."""
    assert span.context is not None
    trace_id, span_id = ids(span)
    return f"00-{trace_id}-{span_id}-{int(span.context.trace_flags):02x}"


async def stored_traceparent(stack: Stack, job_id: str) -> str | None:
    rows = await db.fetch(stack.settings, "SELECT traceparent FROM jobs WHERE id = $1", uuid.UUID(job_id))
    value: str | None = rows[0]["traceparent"]
    return value


@contextmanager
def json_log(name: str) -> Iterator[io.StringIO]:
    """The JSON lines logged to `name` (and below) in the block, with the bound context fields."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    logger = logging.getLogger(name)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield out
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def test_a_job_runs_in_the_trace_it_was_submitted_in(isolated: Any) -> None:
    tracer, exporter = in_memory()
    async with isolated(workers=0) as stack, traced_api(stack, tracer) as client:
        job = await submit_in(client, CALLER, "sleep", {"seconds": 0, "fail_first": 1})
        request = one(exporter.get_finished_spans(), "POST /jobs")
        trace_id, request_span = ids(request)
        assert request.kind is SpanKind.SERVER and trace_id == CALLER_TRACE
        assert request.parent is not None and f"{request.parent.span_id:016x}" == CALLER_SPAN
        assert request.attributes is not None
        assert (
            request.attributes["http.route"] == "/jobs"
            and request.attributes["http.response.status_code"] == 201
        )
        assert await stored_traceparent(stack, job["id"]) == f"00-{CALLER_TRACE}-{request_span}-01"

        # The worker's run loop, in this process on the same database and queue: claim, run, end.
        async with open_resources(stack.settings, 4) as res:
            runtime = Runtime(res, "test-worker", tracer)
            with json_log("worker") as logged:
                await runtime.run(uuid.UUID(job["id"]), delivery="first")
                await asyncio.sleep(0.1)  # the retry's back-off
                await runtime.run(uuid.UUID(job["id"]), delivery="second")
        runs = [s for s in exporter.get_finished_spans() if s.name == "run sleep"]
        assert len(runs) == 2
        for run, status in zip(runs, ("retrying", "completed"), strict=True):
            assert run.kind is SpanKind.CONSUMER and ids(run)[0] == CALLER_TRACE
            assert run.parent is not None and f"{run.parent.span_id:016x}" == request_span
            assert run.attributes is not None and run.attributes["jobplatform.job.id"] == job["id"]
            assert run.attributes["jobplatform.job.status"] == status
        lines = [json.loads(line) for line in logged.getvalue().splitlines()]
        failed = next(line for line in lines if line["msg"] == "attempt failed")
        assert failed["job_id"] == job["id"] and failed["trace_id"] == CALLER_TRACE


async def test_batches_store_the_request_span_on_every_job(isolated: Any) -> None:
    tracer, exporter = in_memory()
    async with isolated(workers=0) as stack, traced_api(stack, tracer) as client:
        body = {"jobs": [{"type": "square_sum", "payload": {"data": [i]}} for i in range(3)]}
        response = await client.post("/batches", json=body, headers={"traceparent": CALLER})
        assert response.status_code == 201, response.text
        request = one(exporter.get_finished_spans(), "POST /batches")
        assert ids(request)[0] == CALLER_TRACE
        for job in response.json()["jobs"]:
            assert await stored_traceparent(stack, job["id"]) == traceparent_of(request)


async def test_every_request_gets_a_span_named_by_its_route(isolated: Any) -> None:
    tracer, exporter = in_memory()
    async with isolated(workers=0) as stack, traced_api(stack, tracer) as client:
        job = await submit(client, "square_sum", {"data": [1]})  # no traceparent: a trace of its own
        assert (await client.get(f"/jobs/{job['id']}")).status_code == 200
        assert (await client.get("/no/such/route")).status_code == 404
        spans = exporter.get_finished_spans()
        post, get = one(spans, "POST /jobs"), one(spans, "GET /jobs/{job_id}")
        assert post.parent is None and ids(post)[0] != ids(get)[0]
        assert await stored_traceparent(stack, job["id"]) == traceparent_of(post)
        assert one(spans, "GET").attributes == {
            "http.request.method": "GET",
            "url.path": "/no/such/route",
            "http.response.status_code": 404,
        }


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        (CALLER, CALLER),
        (f"01-{CALLER_TRACE}-{CALLER_SPAN}-01-later-field", f"01-{CALLER_TRACE}-{CALLER_SPAN}-01"),
        (CALLER.upper(), None),
        (f"00-{'0' * 32}-{CALLER_SPAN}-01", None),
        (CALLER + "-x", None),
        ("garbage", None),
    ],
)
async def test_with_tracing_off_the_callers_traceparent_is_kept_if_valid(
    stack: Stack, client: httpx.AsyncClient, sent: str, stored: str | None
) -> None:
    job = await submit_in(client, sent, "square_sum", {"data": [1]})
    assert await stored_traceparent(stack, job["id"]) == stored


async def test_request_ids_are_echoed_when_plain_and_made_otherwise(client: httpx.AsyncClient) -> None:
    mine = await client.get("/health", headers={"X-Request-ID": "req-42.a:b"})
    assert mine.headers["x-request-id"] == "req-42.a:b"
    made = await client.get("/health", headers={"X-Request-ID": "no spaces allowed"})
    assert len(made.headers["x-request-id"]) == 32 and made.headers["x-request-id"] != "no spaces allowed"


def otlp_spans(bodies: list[bytes]) -> list[dict[str, Any]]:
    """Every span the receiver got: name, service, kind, trace/span/parent ids in hex."""
    spans = []
    for body in bodies:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for resource in request.resource_spans:
            attrs = {a.key: a.value.string_value for a in resource.resource.attributes}
            for scope in resource.scope_spans:
                spans += [
                    {
                        "service": attrs.get("service.name"),
                        "name": s.name,
                        "trace": s.trace_id.hex(),
                        "span": s.span_id.hex(),
                        "parent": s.parent_span_id.hex(),
                    }
                    for s in scope.spans
                ]
    return spans


async def test_api_and_worker_processes_export_one_trace_over_otlp(
    isolated: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")  # export within 0.1 s, not 5 s
    async with receiving(lambda n: 200) as collector:
        endpoint = f"http://127.0.0.1:{collector.port}"
        async with (
            isolated(workers=1, otel_exporter_otlp_endpoint=endpoint) as stack,
            serve_api(stack.settings, tmp_path / "api.log") as base,
        ):
            headers = {"X-API-Key": await stack.new_key(), "traceparent": CALLER}
            async with httpx.AsyncClient(base_url=base, headers=headers) as http:
                job = await submit(http, "sleep", {"seconds": 0})
                await wait_for(http, job["id"], {"completed"})
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                spans = otlp_spans([r.body for r in collector.requests if r.path == "/v1/traces"])
                if {"POST /jobs", "run sleep"} <= {s["name"] for s in spans}:
                    break
                await asyncio.sleep(0.1)
    post = next(s for s in spans if s["name"] == "POST /jobs")
    run = next(s for s in spans if s["name"] == "run sleep")
    assert post["service"] == "jobplatform-api" and run["service"] == "jobplatform-worker"
    assert post["trace"] == run["trace"] == CALLER_TRACE
    assert post["parent"] == CALLER_SPAN and run["parent"] == post["span"]
