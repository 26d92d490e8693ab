"""Exponential back-off with full jitter."""

from __future__ import annotations

import random

import pytest

from backend.domain.retry import backoff_ceiling, backoff_delay


@pytest.mark.parametrize(
    ("attempt", "ceiling"), [(1, 1.0), (2, 2.0), (3, 4.0), (9, 256.0), (10, 300.0), (500, 300.0)]
)
def test_ceiling_doubles_then_caps(attempt: int, ceiling: float) -> None:
    assert backoff_ceiling(attempt, base=1.0, cap=300.0) == ceiling


def test_delay_is_uniform_within_zero_and_ceiling() -> None:
    rng = random.Random(7)
    draws = [backoff_delay(4, 1.0, 300.0, rng) for _ in range(2000)]
    assert all(0 <= d <= 8.0 for d in draws)
    assert 3.5 < sum(draws) / len(draws) < 4.5  # mean of U(0, 8)
    assert max(draws) > 7.5 and min(draws) < 0.5  # full jitter spans the range


def test_zero_base_means_immediate_retry() -> None:
    assert backoff_delay(5, 0.0, 300.0) == 0.0
