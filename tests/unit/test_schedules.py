"""When schedules fire (pure): grids, cron in a time zone across DST changes, and what the models refuse."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from backend.domain.schedules import ScheduleCreate, SchedulePatch, Timing

JOB = {"type": "square_sum", "payload": {"data": [1, 2]}}


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def slots(timing: Timing, start: datetime, n: int) -> list[datetime]:
    out, at = [], start
    for _ in range(n):
        at = timing.next_after(at)
        out.append(at)
    return out


def test_every_seconds_keeps_its_grid_when_fired_late() -> None:
    timing = Timing(None, 10)
    grid = utc(2026, 1, 1, 0, 0, 0)
    assert timing.next_after(grid, grid=grid) == grid + timedelta(seconds=10)
    late = grid + timedelta(seconds=3.5)  # fired 3.5 s late: the next slot stays on the grid
    assert timing.next_after(late, grid=grid) == grid + timedelta(seconds=10)


def test_after_downtime_the_next_slot_is_the_first_after_now() -> None:
    """The catch-up rule: however many slots were missed, the next one is after now (one fire, no burst)."""
    grid = utc(2026, 1, 1, 0, 0, 0)
    now = grid + timedelta(minutes=5, seconds=0.25)
    assert Timing(None, 1).next_after(now, grid=grid) == grid + timedelta(minutes=5, seconds=1)
    assert Timing("* * * * *", None).next_after(now) == utc(2026, 1, 1, 0, 6)


def test_a_slot_is_strictly_after() -> None:
    assert Timing("*/5 * * * *", None).next_after(utc(2026, 1, 1, 0, 5)) == utc(2026, 1, 1, 0, 10)
    assert Timing(None, 60).next_after(utc(2026, 1, 1)) == utc(2026, 1, 1, 0, 1)


def test_cron_reads_local_time() -> None:
    paris = Timing("0 9 * * *", None, "Europe/Paris")
    assert paris.next_after(utc(2026, 1, 15, 12)) == utc(2026, 1, 16, 8)  # CET, UTC+1
    assert paris.next_after(utc(2026, 7, 15, 12)) == utc(2026, 7, 16, 7)  # CEST, UTC+2


def test_fixed_time_in_a_skipped_hour_fires_once_at_the_end_of_the_gap() -> None:
    """Europe/Paris skips 02:00-03:00 on 2026-03-29: 02:30 fires at 03:00 local that day, then as usual."""
    timing = Timing("30 2 * * *", None, "Europe/Paris")
    assert slots(timing, utc(2026, 3, 28, 12), 3) == [
        utc(2026, 3, 29, 1, 0),  # 03:00 CEST
        utc(2026, 3, 30, 0, 30),  # 02:30 CEST
        utc(2026, 3, 31, 0, 30),
    ]


def test_fixed_time_in_a_repeated_hour_fires_once() -> None:
    """Europe/Paris lives 02:00-03:00 twice on 2026-10-25: 02:30 fires on the first pass only."""
    timing = Timing("30 2 * * *", None, "Europe/Paris")
    assert slots(timing, utc(2026, 10, 24, 12), 2) == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]
    # Asked during the second pass (02:15 CET), the slot already fired (02:30 CEST) is not given again.
    assert timing.next_after(utc(2026, 10, 25, 1, 15)) == utc(2026, 10, 26, 1, 30)


def test_stepped_cron_follows_real_time_across_dst() -> None:
    hourly = Timing("0 * * * *", None, "America/New_York")
    # 2026-11-01: 01:00-02:00 EDT then again EST; each real hour fires once.
    assert slots(hourly, utc(2026, 11, 1, 4, 30), 3) == [
        utc(2026, 11, 1, 5),
        utc(2026, 11, 1, 6),
        utc(2026, 11, 1, 7),
    ]
    # 2026-03-08: 02:00-03:00 does not exist; no slot is invented for it, none is lost either.
    assert slots(hourly, utc(2026, 3, 8, 5, 30), 3) == [
        utc(2026, 3, 8, 6),
        utc(2026, 3, 8, 7),
        utc(2026, 3, 8, 8),
    ]


def errors(
    body: dict[str, Any], model: type[ScheduleCreate] | type[SchedulePatch] = ScheduleCreate
) -> list[tuple[Any, ...]]:
    with pytest.raises(ValidationError) as info:
        model.model_validate(body)
    return [e["loc"] for e in info.value.errors()]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"name": "n", "job": JOB}, ("every_seconds",)),
        ({"name": "n", "cron": "* * * * *", "every_seconds": 5, "job": JOB}, ("every_seconds",)),
        ({"name": "n", "every_seconds": 0, "job": JOB}, ("every_seconds",)),
        ({"name": "n", "cron": "61 * * * *", "job": JOB}, ("cron",)),
        ({"name": "n", "cron": "* * * *", "job": JOB}, ("cron",)),
        ({"name": "n", "cron": "0 0 30 2 *", "job": JOB}, ("cron",)),
        ({"name": "n", "every_seconds": 5, "timezone": "Mars/Olympus", "job": JOB}, ("timezone",)),
        ({"name": "n", "every_seconds": 5, "timezone": "../etc/passwd", "job": JOB}, ("timezone",)),
        ({"name": "", "every_seconds": 5, "job": JOB}, ("name",)),
    ],
)
def test_create_refusals_name_the_field(body: dict[str, Any], loc: tuple[str, ...]) -> None:
    assert loc in errors(body)


def test_a_bad_job_is_named_inside_job() -> None:
    body = {"name": "n", "every_seconds": 5, "job": {"type": "csv_report", "payload": {"rows": 0}}}
    assert errors(body) == [("job", "csv_report", "payload", "rows")]


def test_patch_refuses_both_timings_and_nulls() -> None:
    assert ("every_seconds",) in errors({"cron": "* * * * *", "every_seconds": 1}, SchedulePatch)
    assert ("paused",) in errors({"paused": None}, SchedulePatch)


def test_patch_switches_the_timing() -> None:
    current = Timing("* * * * *", None, "Europe/Paris")
    assert SchedulePatch(every_seconds=5).timing(current) == Timing(None, 5, "Europe/Paris")
    assert SchedulePatch(cron="0 * * * *").timing(Timing(None, 5)) == Timing("0 * * * *", None, "UTC")
    assert not SchedulePatch(name="x").changes_timing()


def test_cron_is_normalised() -> None:
    body = ScheduleCreate.model_validate({"name": "n", "cron": "  */5  * * * * ", "job": JOB})
    assert body.cron == "*/5 * * * *"
