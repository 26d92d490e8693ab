"""`sleep`: a diagnostic job that waits, optionally failing its first attempts."""

from __future__ import annotations

import asyncio
import time

from backend.domain.errors import JobFailure
from backend.domain.payloads import SleepPayload
from worker.context import JobContext, Outcome

TICK_S = 0.25


class DeliberateFailure(JobFailure):
    """Raised by `fail_first` to exercise the retry policy."""


async def handle(ctx: JobContext, payload: SleepPayload) -> Outcome:
    """Sleep `seconds`, reporting progress; fail while `attempt <= fail_first`."""
    if ctx.attempt <= payload.fail_first:
        raise DeliberateFailure(
            f"failing on purpose: attempt {ctx.attempt} of the first {payload.fail_first}"
        )
    if payload.seconds > 0:
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < payload.seconds:
            ctx.progress.report(elapsed / payload.seconds)
            await asyncio.sleep(min(TICK_S, payload.seconds - elapsed))
    return Outcome(result={"slept": payload.seconds, "attempt": ctx.attempt})
