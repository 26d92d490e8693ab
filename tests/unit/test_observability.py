"""Observability parts that need no servers: trace context parsing, log fields bound to a task, the HTTP
telemetry middleware, the metrics folder, and what tracing off costs (no SDK import)."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from backend.adapters.webhook_http import PostOutcome
from backend.api.limits import BodySizeLimit
from backend.api.telemetry import HttpTelemetry
from backend.core.logging import ContextFilter, JsonFormatter, log_context
from backend.core.metrics import REGISTRY
from backend.core.tracing import parse_traceparent, trace_id_of
from backend.launcher import METRICS_DIR_ENV, metrics_dir
from tests.utils.stack import ROOT

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
VALID = f"00-{TRACE}-00f067aa0ba902b7-01"


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        (VALID, VALID),
        (f"cc-{TRACE}-00f067aa0ba902b7-09-what-comes-next", f"cc-{TRACE}-00f067aa0ba902b7-09"),
        (None, None),
        ("", None),
        (VALID + "-extra", None),  # version 00 has exactly four fields
        (f"ff-{TRACE}-00f067aa0ba902b7-01", None),
        (f"00-{TRACE}-0000000000000000-01", None),
        (VALID.upper(), None),
        (VALID[:-1], None),
    ],
)
def test_traceparent_is_kept_only_when_valid(value: str | None, parsed: str | None) -> None:
    assert parse_traceparent(value) == parsed
    assert trace_id_of(parsed) == (TRACE if parsed else None)


@pytest.fixture
def logged() -> Iterator[io.StringIO]:
    """JSON lines of the `observed` logger, with the bound fields."""
    out, logger = io.StringIO(), logging.getLogger("observed")
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield out
    finally:
        logger.removeHandler(handler)


def lines(out: io.StringIO) -> list[dict[str, str]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_bound_fields_nest_and_extra_wins(logged: io.StringIO) -> None:
    log = logging.getLogger("observed")
    with log_context(job_id="j1", trace_id=None):
        with log_context(request_id="r1"):
            log.info("inner")
            log.info("explicit", extra={"job_id": "j2"})
        log.info("outer")
    log.info("after")
    inner, explicit, outer, after = lines(logged)
    assert (inner["job_id"], inner["request_id"]) == ("j1", "r1") and "trace_id" not in inner
    assert explicit["job_id"] == "j2"
    assert outer["job_id"] == "j1" and "request_id" not in outer
    assert "job_id" not in after


async def logs_a_line(request: Request) -> PlainTextResponse:
    logging.getLogger("observed").info("handled")
    return PlainTextResponse("ok")


def telemetry_app() -> Starlette:
    app = Starlette(routes=[Route("/things/{thing_id}", logs_a_line, methods=["GET", "POST"])])
    app.add_middleware(BodySizeLimit, max_bytes=1024)
    app.add_middleware(HttpTelemetry, router=app.router)
    return app


def requests_counted(method: str, route: str, status: str) -> float:
    labels = {"method": method, "route": route, "status": status}
    return REGISTRY.get_sample_value("jobplatform_http_requests_total", labels) or 0.0


async def test_requests_are_counted_by_template_and_logged_with_their_ids(logged: io.StringIO) -> None:
    keys = {
        "got": ("GET", "/things/{thing_id}", "200"),
        "too_big": ("POST", "/things/{thing_id}", "413"),
        "missing": ("GET", "<unmatched>", "404"),
    }
    before = {name: requests_counted(*key) for name, key in keys.items()}
    transport = httpx.ASGITransport(app=telemetry_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        ok = await client.get("/things/1", headers={"traceparent": VALID, "X-Request-ID": "abc"})
        await client.get("/things/2")
        too_big = await client.post("/things/3", content=b"x" * 2048)  # refused before routing
        missing = await client.get("/elsewhere")
    assert ok.headers["x-request-id"] == "abc" and too_big.status_code == 413 and missing.status_code == 404
    assert len(too_big.headers["x-request-id"]) == 32
    first, second = lines(logged)
    assert (first["request_id"], first["trace_id"]) == ("abc", TRACE)
    assert "trace_id" not in second and second["request_id"] != "abc"
    after = {name: requests_counted(*key) for name, key in keys.items()}
    assert {name: after[name] - before[name] for name in keys} == {"got": 2, "too_big": 1, "missing": 1}


@pytest.mark.parametrize(
    ("outcome", "kind"),
    [
        (PostOutcome(204, None), "delivered"),
        (PostOutcome(500, None), "failed"),
        (PostOutcome(None, "timeout after 5 s"), "failed"),
        (PostOutcome(302, None), "failed"),
        (PostOutcome(None, "refused: private", refused=True), "refused"),
    ],
)
def test_webhook_outcomes(outcome: PostOutcome, kind: str) -> None:
    assert outcome.kind == kind


def test_a_temporary_metrics_folder_lives_as_long_as_its_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(METRICS_DIR_ENV, raising=False)
    with metrics_dir(None, needed=True) as folder:
        assert folder is not None and folder.is_dir() and os.environ[METRICS_DIR_ENV] == str(folder)
    assert not folder.exists() and METRICS_DIR_ENV not in os.environ
    with metrics_dir(None, needed=False) as none:
        assert none is None and METRICS_DIR_ENV not in os.environ


def test_a_configured_metrics_folder_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(METRICS_DIR_ENV, raising=False)
    with metrics_dir(tmp_path / "m", needed=False) as folder:
        assert os.environ[METRICS_DIR_ENV] == str(tmp_path / "m")
    assert folder is not None and folder.is_dir()


def fresh_python(code: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", METRICS_DIR_ENV))}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, check=True)
    return done.stdout.decode().strip()


def test_the_command_line_reads_its_settings_before_prometheus_client_is_imported() -> None:
    """`jobplatform api|worker` name the metrics folder in the environment first: prometheus-client reads
    it once, at import."""
    code = "import sys, backend.cli, worker.__main__; print('prometheus_client' in sys.modules)"
    assert fresh_python(code) == "False"


def test_with_tracing_off_the_sdk_is_never_imported() -> None:
    code = (
        "import sys\n"
        "from backend.core.config import Settings\n"
        "from backend.main import create_app\n"
        "create_app(Settings(database_url='postgresql://x/y', redis_url='redis://x'))\n"
        "import worker.runtime\n"
        "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry.sdk', 'backend.core.otel'))))"
    )
    assert fresh_python(code) == "[]"
