"""A new job's first status from its parents', and `depends_on` references resolved (pure logic)."""

from __future__ import annotations

import uuid

import pytest

from backend.domain.enums import JobStatus
from backend.domain.errors import FieldError
from backend.services.jobs import first_status, resolve_parents

S = JobStatus
A, B = uuid.uuid4(), uuid.uuid4()


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (S.COMPLETED, S.COMPLETED, (S.PENDING, None)),
        (S.COMPLETED, S.RUNNING, (S.BLOCKED, None)),
        (S.BLOCKED, S.PENDING, (S.BLOCKED, None)),
        (S.RUNNING, S.FAILED, (S.CANCELLED, f"dependency {B} failed")),
        (S.CANCELLED, S.COMPLETED, (S.CANCELLED, f"dependency {A} cancelled")),
    ],
)
def test_first_status(a: JobStatus, b: JobStatus, expected: tuple[JobStatus, str | None]) -> None:
    assert first_status([A, B], {A: a, B: b}) == expected


def test_no_parents_is_pending() -> None:
    assert first_status([], {}) == (S.PENDING, None)


def test_sibling_references_point_backwards_only() -> None:
    ids = [uuid.uuid4() for _ in range(3)]
    assert resolve_parents(["#0", str(A)], 2, ids, ("x",)) == [ids[0], A]
    for ref, index in (("#2", 2), ("#3", 2), ("#0", 0)):
        with pytest.raises(FieldError) as refused:
            resolve_parents(["#0", ref] if ref != "#0" else [ref], index, ids, ("x",))
        assert refused.value.code == "forward_reference"


def test_sibling_references_need_a_batch_and_ids_are_named_once() -> None:
    with pytest.raises(FieldError) as outside:
        resolve_parents([str(A), "#0"], 1, None, ("body", "depends_on"))
    assert outside.value.loc == ("body", "depends_on", 1) and outside.value.code == "not_in_batch"
    ids = [A, B]
    with pytest.raises(FieldError) as twice:
        resolve_parents(["#0", str(A)], 1, ids, ("x",))  # the same job by index and by id
    assert twice.value.code == "duplicate_dependency"
