"""The submit page's forms, generated from the job types' JSON Schemas in the app's own OpenAPI document.

A new job type (or a new payload field) shows up on the dashboard with no template change: each schema
property becomes a labelled input with the schema's bounds, and what comes back is validated by the same
pydantic models as `POST /jobs`, whose errors are shown next to the field they name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter, ValidationError

from backend.domain.job_types import JOB_TYPES, SPECS
from backend.domain.jobs import JobCreate, JobSubmission

# Fields every submission has, in the order the form shows them after the payload.
COMMON_FIELDS = (
    "name",
    "tags",
    "priority",
    "max_attempts",
    "scheduled_at",
    "concurrency_key",
    "concurrency_limit",
)
SUBMISSION: TypeAdapter[JobSubmission] = TypeAdapter(JobCreate)
NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
INTEGER = re.compile(r"^[+-]?\d+$")


@dataclass(frozen=True)
class FormField:
    """One input: `name` is its form key (`payload.rows`, `tags`), `kind` picks the widget."""

    name: str
    label: str
    kind: str  # integer | number | text | datetime | checkbox | list | numbers | choices
    required: bool
    help: str = ""
    minimum: float | None = None
    maximum: float | None = None
    max_length: int | None = None
    choices: tuple[str, ...] = ()
    default: Any = None

    @property
    def input_id(self) -> str:
        """A DOM id for the input and its label."""
        return "f-" + self.name.replace(".", "-")


@dataclass
class JobForm:
    """A job type's form: its fields, the values typed so far and the errors per field."""

    type: str
    summary: str
    fields: list[FormField]
    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def _resolve(schema: Mapping[str, Any], components: Mapping[str, Any]) -> dict[str, Any]:
    """A schema with `$ref` followed and `anyOf [X, null]` unwrapped to X."""
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return _resolve(components[ref.rsplit("/", 1)[-1]], components)
    options = [s for s in schema.get("anyOf", ()) if s.get("type") != "null"]
    if len(options) == 1:
        merged = {**schema, **_resolve(options[0], components)}
        merged.pop("anyOf", None)
        return merged
    return dict(schema)


def _kind(schema: Mapping[str, Any], components: Mapping[str, Any]) -> tuple[str, tuple[str, ...]]:
    """The widget for a resolved schema, and its choices for enumerations."""
    kind = schema.get("type")
    if kind == "array":
        items = _resolve(schema.get("items", {}), components)
        if "enum" in items:
            return "choices", tuple(items["enum"])
        numeric = {s.get("type") for s in items.get("anyOf", [items])} <= {"number", "integer"}
        return ("numbers" if numeric else "list"), ()
    if kind in ("integer", "number"):
        return str(kind), ()
    if kind == "boolean":
        return "checkbox", ()
    if schema.get("format") == "date-time":
        return "datetime", ()
    return "text", ()


def _field(name: str, schema: Mapping[str, Any], required: bool, components: Mapping[str, Any]) -> FormField:
    resolved = _resolve(schema, components)
    kind, choices = _kind(resolved, components)
    return FormField(
        name=name,
        label=str(resolved.get("title") or name),
        kind=kind,
        required=required,
        help=str(resolved.get("description") or ""),
        minimum=resolved.get("minimum"),
        maximum=resolved.get("maximum"),
        max_length=resolved.get("maxLength"),
        choices=choices,
        default=resolved.get("default"),
    )


def job_forms(openapi: Mapping[str, Any], enabled: set[str]) -> list[JobForm]:
    """One form per enabled job type, built from the OpenAPI submission schemas."""
    components = openapi["components"]["schemas"]
    forms = []
    for spec in JOB_TYPES:
        if spec.name not in enabled:
            continue
        model = components[spec.model_name]
        payload = _resolve(model["properties"]["payload"], components)
        required = set(payload.get("required", ()))
        fields = [
            _field(f"payload.{name}", prop, name in required, components)
            for name, prop in payload.get("properties", {}).items()
        ]
        fields += [_field(name, model["properties"][name], False, components) for name in COMMON_FIELDS]
        forms.append(JobForm(spec.name, spec.summary, fields))
    return forms


def _value(form_field: FormField, raw: list[str]) -> Any:
    """A typed value from what the browser sent (left as text where it does not parse: the model then
    names the field in its error)."""
    text = raw[0].strip() if raw else ""
    if form_field.kind == "choices":
        return [v for v in raw if v] or None
    if form_field.kind == "checkbox":
        return bool(raw)
    if not text:
        return None
    if form_field.kind == "integer":
        return int(text) if INTEGER.match(text) else text
    if form_field.kind == "number":
        return float(text) if NUMBER.match(text) else text
    if form_field.kind == "numbers":
        parts = [p.strip() for p in re.split(r"[,\s]+", text) if p.strip()]
        return [(int(p) if INTEGER.match(p) else float(p)) if NUMBER.match(p) else p for p in parts]
    if form_field.kind == "list":
        return [p.strip() for p in text.split(",") if p.strip()]
    if form_field.kind == "datetime" and re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d)?$", text):
        return text + ("Z" if text.count(":") == 2 else ":00Z")  # datetime-local, labelled UTC
    return text


def submission(form: JobForm, posted: Mapping[str, list[str]]) -> JobSubmission | None:
    """The validated submission, or None with `form.values` and `form.errors` filled in for the page."""
    body: dict[str, Any] = {"type": form.type, "payload": {}}
    for form_field in form.fields:
        raw = posted.get(form_field.name, [])
        form.values[form_field.name] = raw if form_field.kind == "choices" else (raw[0] if raw else "")
        value = _value(form_field, raw)
        if value is None:
            continue
        if form_field.name.startswith("payload."):
            body["payload"][form_field.name.removeprefix("payload.")] = value
        else:
            body[form_field.name] = value
    try:
        return SUBMISSION.validate_python(body)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            form.errors.setdefault(_field_name(form, error["loc"]), error["msg"])
        return None


def _field_name(form: JobForm, loc: tuple[int | str, ...]) -> str:
    """The form field a validation error's location points at (the form itself if none)."""
    parts = [str(p) for p in loc if str(p) not in SPECS]  # the tagged union puts the type name in loc
    for depth in range(len(parts), 0, -1):
        candidate = ".".join(parts[:depth])
        if any(f.name == candidate for f in form.fields):
            return candidate
    return "__all__"
