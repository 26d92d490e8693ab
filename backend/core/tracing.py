"""Trace context: the W3C `traceparent` a job is submitted in, and the process's tracer.

Tracing is on only when OTEL_EXPORTER_OTLP_ENDPOINT is set; only then is the OpenTelemetry SDK imported
(`backend.core.otel`). Off, a `traceparent` still travels: a job keeps the one it was submitted with, and
logs carry its trace id, so a caller's trace can be followed in the logs even with no collector.
"""

from __future__ import annotations

import re
from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from backend.core.config import Settings
    from backend.core.otel import Tracer

# version - trace id - parent span id - flags (https://www.w3.org/TR/trace-context/#traceparent-header)
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
TRACEPARENT_LENGTH = 55
_INVALID_TRACE_ID = "0" * 32
_INVALID_SPAN_ID = "0" * 16

# The trace context a job submitted by the current request is stored with: the request's own span when
# tracing is on (so the worker's run span hangs under it), else the caller's valid `traceparent`, if any.
REQUEST_TRACEPARENT: ContextVar[str | None] = ContextVar("request_traceparent", default=None)


def parse_traceparent(value: str | None) -> str | None:
    """A valid `traceparent` value as stored (its first 55 characters), or None: an invalid one is ignored,
    as the W3C specification says, rather than refused.

    A later version may append fields after a dash; version `ff`, zero ids and upper case are invalid."""
    if not value:
        return None
    match = _TRACEPARENT.match(value)
    if match is None:
        return None
    version, trace_id, span_id, _ = match.groups()
    if version == "ff" or trace_id == _INVALID_TRACE_ID or span_id == _INVALID_SPAN_ID:
        return None
    rest = value[TRACEPARENT_LENGTH:]
    if (version == "00" and rest) or (rest and not rest.startswith("-")):
        return None
    return value[:TRACEPARENT_LENGTH]


def trace_id_of(traceparent: str | None) -> str | None:
    """The trace id (32 hex digits) of a stored `traceparent`."""
    return traceparent[3:35] if traceparent else None


def format_traceparent(trace_id: int, span_id: int, flags: int) -> str:
    """A `traceparent` (version 00) naming one span."""
    return f"00-{trace_id:032x}-{span_id:016x}-{flags:02x}"


def tracer_for(settings: Settings, service_name: str) -> Tracer | None:
    """The process's tracer exporting over OTLP/HTTP, or None when OTEL_EXPORTER_OTLP_ENDPOINT is unset.

    `OTEL_SERVICE_NAME` (else `service_name`), `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_EXPORTER_OTLP_HEADERS`,
    `OTEL_TRACES_SAMPLER` and the batch processor's `OTEL_BSP_*` are read by the SDK as usual."""
    if not settings.otel_exporter_otlp_endpoint:
        return None
    from backend.core.otel import Tracer, otlp_provider

    return Tracer(otlp_provider(settings.otel_exporter_otlp_endpoint, service_name))
