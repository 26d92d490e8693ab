"""The dashboard's generated forms and server-drawn charts (pure logic, no servers)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from backend.core.config import Settings
from backend.domain.job_types import JOB_TYPES
from backend.main import create_app
from backend.ui.charts import Series, line_chart
from backend.ui.forms import job_forms, submission

OPENAPI = create_app(Settings(database_url="postgresql://x/y", redis_url="redis://x")).openapi()


def forms_by_type() -> dict[str, object]:
    return {f.type: f for f in job_forms(OPENAPI, {s.name for s in JOB_TYPES})}


def test_every_type_gets_a_form_with_its_schema_bounds() -> None:
    forms = job_forms(OPENAPI, {s.name for s in JOB_TYPES})
    assert [f.type for f in forms] == [s.name for s in JOB_TYPES]
    csv = next(f for f in forms if f.type == "csv_report")
    rows = next(f for f in csv.fields if f.name == "payload.rows")
    assert (rows.kind, rows.required, rows.minimum, rows.maximum) == ("integer", True, 1, 10_000_000)
    seed = next(f for f in csv.fields if f.name == "payload.seed")
    assert seed.default == 0 and not seed.required
    export = next(f for f in forms if f.type == "jobs_export")
    status = next(f for f in export.fields if f.name == "payload.status")
    assert status.kind == "choices" and "failed" in status.choices
    common = [f.name for f in csv.fields if not f.name.startswith("payload.")]
    assert common == [
        "name",
        "tags",
        "priority",
        "max_attempts",
        "scheduled_at",
        "concurrency_key",
        "concurrency_limit",
    ]
    assert next(f for f in csv.fields if f.name == "scheduled_at").kind == "datetime"


def test_disabled_types_get_no_form() -> None:
    assert "sleep" not in [f.type for f in job_forms(OPENAPI, {"square_sum"})]


def test_posted_values_are_typed_and_validated_by_the_api_models() -> None:
    form = next(f for f in job_forms(OPENAPI, {"square_sum"}))
    body = submission(
        form, {"payload.data": ["1, 2.5,  -3"], "tags": ["a, b"], "scheduled_at": ["2030-01-02T03:04"]}
    )
    assert body is not None and body.payload.model_dump()["data"] == [1, 2.5, -3]
    assert body.tags == ["a", "b"] and body.scheduled_at == datetime(2030, 1, 2, 3, 4, tzinfo=UTC)
    bad = next(f for f in job_forms(OPENAPI, {"square_sum"}))
    assert submission(bad, {"payload.data": ["1, x"], "max_attempts": ["99"]}) is None
    assert set(bad.errors) == {"payload.data", "max_attempts"}
    assert bad.values["payload.data"] == "1, x"  # shown back as typed


def test_a_missing_required_field_is_named() -> None:
    form = next(f for f in job_forms(OPENAPI, {"csv_report"}))
    assert submission(form, {}) is None and "payload.rows" in form.errors


def test_chart_geometry() -> None:
    start = datetime(2026, 12, 1, tzinfo=UTC)
    starts = [start + timedelta(minutes=i) for i in range(60)]
    chart = line_chart(
        "t",
        "jobs",
        starts,
        [Series("a", "s-a", [float(i) for i in range(60)]), Series("b", "s-b", [None] * 59 + [3.0])],
    )
    assert chart.y_max == 100 and len(chart.lines[0].points.split()) == 60 == len(chart.lines[0].dots)
    assert len(chart.lines[1].points.split()) == 1  # buckets without a sample draw no point
    assert [label for _, label in chart.x_ticks] == ["12-01 00:00", "12-01 00:30", "12-01 00:59"]
