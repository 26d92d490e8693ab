"""The platform's retry policy: exponential back-off with full jitter."""

from __future__ import annotations

import random
from dataclasses import dataclass


def backoff_ceiling(attempt: int, base: float, cap: float) -> float:
    """The largest delay after the `attempt`-th failure (1-based): base·2^(attempt-1), capped."""
    exponent = min(max(attempt - 1, 0), 60)
    return float(min(cap, base * (2**exponent)))


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """A delay drawn uniformly from [0, ceiling] ("full jitter", AWS Architecture Blog)."""
    return (rng or random).uniform(0, backoff_ceiling(attempt, base, cap))


@dataclass(frozen=True)
class RetryPolicy:
    """Back-off settings: `RETRY_BASE_SECONDS`, `RETRY_CAP_SECONDS`."""

    base_s: float
    cap_s: float

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after the `attempt`-th failure."""
        return backoff_delay(attempt, self.base_s, self.cap_s, rng)
