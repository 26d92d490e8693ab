"""OpenTelemetry spans for the API's requests and the worker's runs. Imported only when tracing is on
(`backend.core.tracing.tracer_for`): with it off, no process pays for the SDK."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator, Mapping

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from backend.core.tracing import format_traceparent

PROPAGATOR = TraceContextTextMapPropagator()
SCOPE = "jobplatform"
ENDED_BADLY = {"failed", "retrying"}  # a run's end that is an error of the run (its job may still retry)


def traces_endpoint(base: str) -> str:
    """The OTLP/HTTP traces URL for an OTEL_EXPORTER_OTLP_ENDPOINT (the signal path is appended, as the
    OpenTelemetry specification says), unless OTEL_EXPORTER_OTLP_TRACES_ENDPOINT names it outright."""
    return os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or base.rstrip("/") + "/v1/traces"


def otlp_provider(endpoint: str, service_name: str) -> TracerProvider:
    """A provider exporting batches over OTLP/HTTP from a background thread (never on the event loop)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    name = os.environ.get("OTEL_SERVICE_NAME") or service_name
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_endpoint(endpoint))))
    return provider


def _traceparent(span: trace.Span) -> str:
    ctx = span.get_span_context()
    return format_traceparent(ctx.trace_id, ctx.span_id, int(ctx.trace_flags))


class RequestSpan:
    """The server span of one HTTP request."""

    def __init__(self, span: trace.Span) -> None:
        self.span = span
        self.traceparent = _traceparent(span)
        self.trace_id = self.traceparent[3:35]

    def finish(self, method: str, route: str | None, status: int) -> None:
        """Name the span after the route template (`POST /jobs/{job_id}`) and record the status."""
        if route is not None:
            self.span.update_name(f"{method} {route}")
            self.span.set_attribute("http.route", route)
        self.span.set_attribute("http.response.status_code", status)
        if status >= 500:
            self.span.set_status(Status(StatusCode.ERROR))


class Tracer:
    """Spans of one process, from its own provider (no global state: tests give theirs)."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self._tracer = provider.get_tracer(SCOPE)

    @contextlib.contextmanager
    def request_span(self, method: str, path: str, carrier: Mapping[str, str]) -> Iterator[RequestSpan]:
        """A server span for a request, the child of the caller's `traceparent` in `carrier`, if any."""
        attributes = {"http.request.method": method, "url.path": path}
        with self._tracer.start_as_current_span(
            method, context=PROPAGATOR.extract(carrier), kind=SpanKind.SERVER, attributes=attributes
        ) as span:
            yield RequestSpan(span)

    @contextlib.contextmanager
    def run_span(
        self, job_id: uuid.UUID, job_type: str, attempt: int, worker_id: str, traceparent: str | None
    ) -> Iterator[str]:
        """The span of one run of a job, the child of the context it was submitted in (a new trace when
        it has none); yields its trace id."""
        parent = PROPAGATOR.extract({"traceparent": traceparent}) if traceparent else Context()
        attributes: dict[str, str | int] = {
            "jobplatform.job.id": str(job_id),
            "jobplatform.job.type": job_type,
            "jobplatform.job.attempt": attempt,
            "jobplatform.worker.id": worker_id,
        }
        with self._tracer.start_as_current_span(
            f"run {job_type}", context=parent, kind=SpanKind.CONSUMER, attributes=attributes
        ) as span:
            yield _traceparent(span)[3:35]

    def run_ended(self, status: str, error: str | None) -> None:
        """Record on the current run span how the run ended (the job's new status)."""
        span = trace.get_current_span()
        span.set_attribute("jobplatform.job.status", status)
        if status in ENDED_BADLY:
            span.set_status(Status(StatusCode.ERROR, error))

    def shutdown(self) -> None:
        """Export what is buffered and stop (blocks up to the exporter's timeout: call it in a thread)."""
        self.provider.shutdown()
