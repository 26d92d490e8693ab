"""Numbers clients send are JSON numbers: no `true` for 1, no `"5"` for 5."""

from __future__ import annotations

import re

import pytest
from pydantic import TypeAdapter, ValidationError

from backend.domain.jobs import SUBMISSION_MODELS
from backend.domain.numbers import JsonFloat, JsonInt, JsonNumber


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [(JsonInt, 5, 5), (JsonInt, 5.0, 5), (JsonFloat, 5, 5.0), (JsonFloat, 2.5, 2.5), (JsonNumber, 7, 7)],
)
def test_numbers_pass(kind: object, value: object, expected: object) -> None:
    result = TypeAdapter(kind).validate_python(value)
    assert result == expected and type(result) is type(expected)


@pytest.mark.parametrize("kind", [JsonInt, JsonFloat, JsonNumber])
@pytest.mark.parametrize("value", [True, False, "5", "2.5"])
def test_booleans_and_text_do_not(kind: object, value: object) -> None:
    with pytest.raises(ValidationError, match="JSON number"):
        TypeAdapter(kind).validate_python(value)


@pytest.mark.parametrize(
    ("type_", "payload"),
    [
        ("sleep", {"seconds": True}),
        ("sleep", {"seconds": 0, "fail_first": False}),
        ("csv_report", {"rows": "10"}),
        ("csv_report", {"rows": 10, "seed": True}),
        ("square_sum", {"data": [1, True]}),
    ],
)
def test_submissions_refuse_them(type_: str, payload: dict[str, object]) -> None:
    with pytest.raises(ValidationError, match="JSON number"):
        SUBMISSION_MODELS[type_].model_validate({"type": type_, "payload": payload})
    with pytest.raises(ValidationError, match="JSON number"):
        SUBMISSION_MODELS["sleep"].model_validate(
            {"type": "sleep", "payload": {"seconds": 0}, "max_attempts": True}
        )


def test_the_schema_states_what_validation_checks() -> None:
    properties = SUBMISSION_MODELS["sleep"].model_json_schema()["properties"]
    assert {"type": "integer", "minimum": 1, "maximum": 20} in properties["max_attempts"]["anyOf"]
    nul_free = re.compile(properties["name"]["pattern"])
    assert nul_free.fullmatch("a label") and not nul_free.fullmatch("a\x00label")
