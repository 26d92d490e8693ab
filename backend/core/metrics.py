"""This process's Prometheus instruments (HTTP requests, webhook attempts) and their exposition.

Each process counts what it does itself. With PROMETHEUS_MULTIPROC_DIR in the environment before this
module is first imported (prometheus-client chooses where values live at import), every value is kept in
that folder's files, one set per process id, and `render_process_metrics` sums all of them: the API and
worker processes of a host share the folder, so any API process's `/metrics` shows the whole host, and
the counts of a process that has exited stay in (a counter must never go down). Without it, a process
shows only its own counts: right for a single API process, wrong for `uvicorn --workers N`.
"""

from __future__ import annotations

import os
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

MULTIPROCESS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None

# `_created` series are not kept in multiprocess mode: drop them in both modes, so the page is the same.
disable_created_metrics()  # type: ignore[no-untyped-call]
REGISTRY = CollectorRegistry()

HTTP_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "<unmatched>"  # the route label of a request no route matched (no raw paths as labels)

HTTP_REQUESTS = Counter(
    "jobplatform_http_requests",
    "HTTP requests answered, by method, route template and status code (this host's API processes).",
    ("method", "route", "status"),
    registry=REGISTRY,
)
HTTP_DURATION = Histogram(
    "jobplatform_http_request_duration_seconds",
    "Seconds from a request's arrival to its response's last byte, by method and route template "
    "(event streams last as long as they stream).",
    ("method", "route"),
    buckets=HTTP_SECONDS_BUCKETS,
    registry=REGISTRY,
)
WebhookOutcome = Literal["delivered", "failed", "refused"]
WEBHOOK_OUTCOMES: tuple[WebhookOutcome, ...] = ("delivered", "failed", "refused")
WEBHOOK_DELIVERIES = Counter(
    "jobplatform_webhook_deliveries",
    "Webhook delivery attempts by outcome (this host's workers): delivered (a 2xx), failed (another "
    "status, a network error or the timeout; tried again later), refused (a private destination).",
    ("outcome",),
    registry=REGISTRY,
)
for _outcome in WEBHOOK_OUTCOMES:  # every series exists from the start, at 0
    WEBHOOK_DELIVERIES.labels(_outcome)

_http_series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    """Count one answered request and its duration."""
    method = method if method in METHODS else "OTHER"  # a fuzzer's made-up methods are one series
    key = (method, route, status)
    series = _http_series.get(key)
    if series is None:  # `labels()` costs a lock and a lookup: done once per series
        count = HTTP_REQUESTS.labels(method, route, str(status))
        series = _http_series[key] = (count, HTTP_DURATION.labels(method, route))
    series[0].inc()
    series[1].observe(seconds)


def process_registry() -> CollectorRegistry:
    """The instruments' registry: in multiprocess mode, one that sums every process's files whenever it
    is collected (it reads a file per process: collect it in a thread, not on the event loop)."""
    if MULTIPROCESS_DIR is None:
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry, MULTIPROCESS_DIR)  # type: ignore[no-untyped-call]
    return registry


def render_process_metrics() -> bytes:
    """The instruments in the Prometheus text format, every process's summed in multiprocess mode (then
    it reads a file per process: call it in a thread, not on the event loop)."""
    return generate_latest(process_registry())


def process_exiting() -> None:
    """Multiprocess bookkeeping for this process's exit: `mark_process_dead` drops its live gauges (it
    keeps its counters and histograms, which must keep counting it)."""
    if MULTIPROCESS_DIR is not None:
        mark_process_dead(os.getpid(), MULTIPROCESS_DIR)  # type: ignore[no-untyped-call]
