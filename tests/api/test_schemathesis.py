"""Schemathesis over the real in-process app: every operation, every check, with a key and without one.

The schema is the app's own, built at import (building it needs no server). Each call goes to an app on a
private database and queue, run by schemathesis's ASGI client (its own event loop and lifespan): nothing
leaves the process but PostgreSQL and Redis traffic.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import positive_data_acceptance
from starlette.types import Receive, Scope, Send

from backend.core.config import Settings
from backend.domain.jobs import DEPENDENCY_RULES, LIMIT_WITHOUT_KEY, WEBHOOK_URL_INVALID
from backend.domain.schedules import CRON_ERROR, TIMING_ERROR
from backend.main import create_app
from backend.services.auth import create_key
from tests.utils import db
from tests.utils.stack import open_stack

MAX_EXAMPLES = 50
API_KEY = "jp_schemathesis_" + secrets.token_urlsafe(16)
SCHEDULE_RULES = {CRON_ERROR, TIMING_ERROR}
HYPOTHESIS = settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
async def platform(
    servers: tuple[str, str], template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Settings]:
    """A private database and queue, with API_KEY in it."""
    admin_url, redis_url = servers
    tmp = tmp_path_factory.mktemp("schemathesis")
    # Every generated bad key would count against 127.0.0.1; the throttle has tests of its own.
    async with open_stack(admin_url, redis_url, tmp, workers=0, auth_failures_per_minute=0) as stack:
        async with db.pool(stack.settings) as pool:
            await create_key(pool, "schemathesis", API_KEY)
        yield stack.settings


class AppOnStack:
    """The ASGI app schemathesis calls: the real app, built once the module's database exists.

    Schemathesis binds an app to each operation when the tests are collected, long before any fixture
    has made a database; this stands in for the app until then and forwards everything to it after.
    """

    def __init__(self) -> None:
        self.app: FastAPI | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.app is not None, "the `app` fixture builds the app"
        await self.app(scope, receive, send)


APP = AppOnStack()
schema = schemathesis.openapi.from_dict(create_app(Settings(_env_file=None)).openapi())
schema.app = APP
# Unknown query parameters are ignored, as most HTTP APIs do, so they are not generated as bad input;
# deterministic generation keeps the suite's verdict the same from run to run.
schema.config.generation.update(max_examples=MAX_EXAMPLES, allow_extra_parameters=False, deterministic=True)


class ApiKey:
    """Schemathesis auth provider: the module's API key in `X-API-Key`.

    Schemathesis builds its explicit examples when it collects the tests, so the key is known by then and
    the `platform` fixture stores it.
    """

    def get(self, case: Any, context: Any) -> str | None:
        return API_KEY

    def set(self, case: Any, data: str, context: Any) -> None:
        case.headers = {**(case.headers or {}), "X-API-Key": data}


@pytest.fixture(scope="module")
def app(platform: Settings) -> Iterator[None]:
    """The real app on that database; schemathesis starts its lifespan on the first call."""
    APP.app = create_app(platform)
    yield
    shutdown_lifespans()
    APP.app = None


def refused_for_what_no_schema_states(response: Any) -> bool:
    """A 422 that only names a made-up cursor (any string fits its schema, only real ones work), a
        date-time out of range in UTC (JSON Schema cannot bound a date-time), a cron expression that does not
        parse, a schedule given both or neither of `cron` and `every_seconds` (its description says so), or a
    `concurrency_limit` with no `concurrency_key` (likewise), or a `depends_on` that names no job of the
    caller's, a `#i` outside a batch or not backwards, or none for a `bundle` (likewise)."""
    if response.status_code != 422 or not response.content:  # a HEAD response has no body to tell
        return False
    errors = response.json()["detail"]
    return isinstance(errors, list) and all(
        e["loc"] == ["query", "cursor"]
        or "out of range" in e["msg"]
        or e["type"] in SCHEDULE_RULES
        or e["type"] == LIMIT_WITHOUT_KEY
        or e["type"] in DEPENDENCY_RULES
        or e["type"] == WEBHOOK_URL_INVALID  # plain http is allowed only with WEBHOOK_ALLOW_PRIVATE
        for e in errors
    )


@schema.parametrize()
@schema.auth(ApiKey, refresh_interval=None)
@HYPOTHESIS
@pytest.mark.usefixtures("app")
def test_every_operation_with_a_key(case: Any) -> None:
    positive = case.meta is None or case.meta.generation.mode is GenerationMode.POSITIVE
    if positive and "Idempotency-Key" in (case.headers or {}):
        # Generated keys repeat across cases with other bodies, which is a 422 by design; the keys the
        # pattern allows are tested against the parser in tests/unit/test_idempotency_keys.py.
        case.headers["Idempotency-Key"] = f"st-{uuid.uuid4()}"
    response = case.call_and_validate(excluded_checks=[positive_data_acceptance])
    assert response.status_code != 401 or not positive, "the key was not sent"
    if not refused_for_what_no_schema_states(response):
        case.validate_response(response, checks=[positive_data_acceptance])


@schema.parametrize()
@HYPOTHESIS
@pytest.mark.usefixtures("app")
def test_every_operation_without_a_key(case: Any) -> None:
    case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "x-api-key"}
    response = case.call_and_validate()
    if case.operation.definition.raw.get("security") and case.method == case.operation.method.upper():
        # FastAPI parses a JSON body before any dependency runs, so a body that is not JSON is refused first.
        not_json = response.status_code == 422 and response.json()["detail"][0]["type"] == "json_invalid"
        assert response.status_code in (401, 413) or not_json, response.text
