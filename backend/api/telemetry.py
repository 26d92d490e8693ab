"""Around every HTTP request: a request id, the trace context (a server span when tracing is on), and the
request's count and duration by route template. Pure ASGI, like `limits.py`: no Request object, no task.

The route label is the template a request matched (`/jobs/{job_id}`), never the raw path, so that the
number of series stays bounded whatever clients send.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.routing import Match, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.core.logging import log_context
from backend.core.metrics import UNMATCHED, observe_request
from backend.core.tracing import REQUEST_TRACEPARENT, parse_traceparent, trace_id_of

if TYPE_CHECKING:
    from backend.core.otel import Tracer

# The `traceparent` a submission is stored with is read here, once per request, not by a FastAPI
# dependency (which would read and validate the header again on every submission: about 50 us of a
# POST /jobs, measured); the routes that store it document the header with this.
TRACEPARENT_OPENAPI: dict[str, Any] = {
    "parameters": [
        {
            "name": "traceparent",
            "in": "header",
            "required": False,
            "description": "W3C trace context (`00-<trace id>-<span id>-<flags>`): the job is stored with "
            "it, and each of its runs is a span of that trace. An invalid value is ignored.",
            "schema": {"type": "string"},
        }
    ]
}
REQUEST_ID_HEADER = b"x-request-id"
# A caller's own request id is kept when it is short and plain (it lands in logs and in the answer).
_CALLER_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


class _Answer:
    """Forwards the response, adding `X-Request-ID`, and counts the request just before its last bytes
    go out: a client that has its answer finds it counted, whichever process it asks next."""

    __slots__ = ("counted", "header", "observe", "send", "started", "status")

    def __init__(self, send: Send, request_id: str, observe: Callable[[int, float], None]) -> None:
        self.send = send
        self.header = (REQUEST_ID_HEADER, request_id.encode())
        self.observe = observe
        self.started = time.perf_counter()
        self.status = 500  # until a response starts
        self.counted = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            message = {**message, "headers": [*message.get("headers", ()), self.header]}
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            self.count()
        await self.send(message)

    def count(self) -> None:
        """Count the request once (also when it ended with no complete answer: an error, a disconnect)."""
        if not self.counted:
            self.counted = True
            self.observe(self.status, time.perf_counter() - self.started)


class _Bound:
    """Logs carry the request's ids; a job it submits is stored with `traceparent`. (A class, not a
    generator-based context manager: it runs around every request, and costs a fifth as much.)"""

    __slots__ = ("fields", "token", "traceparent")

    def __init__(self, request_id: str, trace_id: str | None, traceparent: str | None) -> None:
        self.fields = log_context(request_id=request_id, trace_id=trace_id)
        self.traceparent = traceparent

    def __enter__(self) -> None:
        self.token = REQUEST_TRACEPARENT.set(self.traceparent)
        self.fields.__enter__()

    def __exit__(self, *exc: object) -> None:
        self.fields.__exit__()
        REQUEST_TRACEPARENT.reset(self.token)


class HttpTelemetry:
    """Request id, trace context and metrics for every HTTP request; `tracer` None: no spans."""

    def __init__(self, app: ASGIApp, router: Router, tracer: Tracer | None = None) -> None:
        self.app = app
        self.router = router
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id, carrier = _read_headers(scope)

        def observe(status: int, seconds: float) -> None:
            observe_request(scope["method"], self.template_of(scope) or UNMATCHED, status, seconds)

        answer = _Answer(send, request_id, observe)
        try:
            if self.tracer is None:
                traceparent = parse_traceparent(carrier.get("traceparent"))
                with _Bound(request_id, trace_id_of(traceparent), traceparent):
                    await self.app(scope, receive, answer)
            else:
                await self._traced(scope, receive, answer, request_id, carrier)
        finally:
            answer.count()

    async def _traced(
        self, scope: Scope, receive: Receive, answer: _Answer, request_id: str, carrier: dict[str, str]
    ) -> None:
        assert self.tracer is not None
        with self.tracer.request_span(scope["method"], scope["path"], carrier) as span:
            try:
                with _Bound(request_id, span.trace_id, span.traceparent):
                    await self.app(scope, receive, answer)
            finally:
                span.finish(scope["method"], self.template_of(scope), answer.status)

    def template_of(self, scope: Scope) -> str | None:
        """The template of the route the request matched, if one did. A request answered before routing
        (a 413 for an oversized body) is matched here."""
        route = scope.get("route")
        if route is None:
            route = next((r for r in self.router.routes if r.matches(scope)[0] is not Match.NONE), None)
        path = getattr(route, "path", None)
        return path if isinstance(path, str) and path else None


def request_traceparent() -> str | None:
    """The trace context the current request's jobs are stored with: the request's own span when tracing
    is on (a child of the caller's), else the caller's `traceparent` if it is valid, else None."""
    return REQUEST_TRACEPARENT.get()


def _read_headers(scope: Scope) -> tuple[str, dict[str, str]]:
    """(the request id: the caller's `X-Request-ID` if plain, else a new one; the trace context headers)."""
    request_id, carrier = None, {}
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER and _CALLER_REQUEST_ID.fullmatch(value):
            request_id = value.decode()
        elif name in (b"traceparent", b"tracestate"):
            carrier[name.decode()] = value.decode("latin-1")
    # Not uuid4: it reads the OS's random source (a system call, 10 us here); a request id needs to be
    # unique, not secret, and the process's seeded generator draws 128 bits in well under a microsecond.
    return request_id or f"{random.getrandbits(128):032x}", carrier
