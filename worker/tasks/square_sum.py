"""`square_sum`: the sum of the squares of `data`."""

from __future__ import annotations

from backend.domain.payloads import NumbersPayload
from worker.context import JobContext, Outcome


async def handle(ctx: JobContext, payload: NumbersPayload) -> Outcome:
    """Sum of x² (exact for integers)."""
    return Outcome(result={"value": sum(x * x for x in payload.data)})
