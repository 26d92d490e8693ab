"""Job types are declared once: every spec has a payload model, a handler module and an OpenAPI schema."""

from __future__ import annotations

import inspect
import pkgutil
import typing

import pytest

import worker.tasks
from backend.domain.job_types import JOB_TYPES, SPECS, JobType, JobTypeSpec
from backend.domain.jobs import SUBMISSION_MODELS
from backend.domain.payloads import Payload
from backend.main import create_app
from worker.tasks import HANDLERS


def test_the_enum_is_the_spec_names() -> None:
    assert [t.value for t in JobType] == [spec.name for spec in JOB_TYPES]
    assert len(SPECS) == len(JOB_TYPES), "a type is declared twice"


@pytest.mark.parametrize("spec", JOB_TYPES, ids=lambda s: s.name)
def test_each_spec_is_complete(spec: JobTypeSpec) -> None:
    assert issubclass(spec.payload, Payload)
    assert spec.timeout_s > 0 and spec.summary
    handler = HANDLERS[spec.name]
    assert inspect.iscoroutinefunction(handler)
    hints = typing.get_type_hints(handler)
    assert hints["payload"] is spec.payload, f"{spec.name}'s handler takes {hints['payload']}"
    model = SUBMISSION_MODELS[spec.name]
    assert model.__name__ == spec.model_name
    assert model.model_fields["payload"].annotation is spec.payload


def test_every_handler_module_is_a_declared_type() -> None:
    modules = {m.name for m in pkgutil.iter_modules(worker.tasks.__path__)}
    assert modules == set(SPECS), "a module in worker/tasks/ without a JobTypeSpec, or the reverse"


def test_openapi_shows_every_submission_and_payload_schema() -> None:
    schemas = create_app().openapi()["components"]["schemas"]
    for spec in JOB_TYPES:
        assert spec.model_name in schemas
        assert spec.payload.__name__ in schemas
    assert schemas["JobType"]["enum"] == [spec.name for spec in JOB_TYPES]
