"""CSV building blocks: csv_report rows, jobs_export cell neutralising, and the stoppable thread."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import random
import re
import threading
import time
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from worker.context import Progress
from worker.files import HashingWriter
from worker.tasks import csv_report, jobs_export
from worker.tasks.csv_report import HEADER, PRODUCTS, format_chunk, write_report
from worker.tasks.jobs_export import format_rows, neutralise
from worker.threads import Stopped, run_stoppable

PRICES = {name: cents for name, cents in PRODUCTS}
ROW = re.compile(r"(\d+),(\d{4}-\d{2}-\d{2}),(C\d{5}),([A-Za-z]+),(\d+),(\d+\.\d{2}),(\d+\.\d{2})")


def cents(money: str) -> int:
    whole, frac = money.split(".")
    return int(whole) * 100 + int(frac)


def test_rows_are_well_formed_and_consistent() -> None:
    lines = format_chunk(random.Random(3), 41, 5000).split("\r\n")
    assert lines.pop() == ""  # every row ends with CRLF
    assert len(lines) == 5000
    for offset, line in enumerate(lines):
        match = ROW.fullmatch(line)
        assert match, line
        order_id, day, _, product, qty, price, total = match.groups()
        assert int(order_id) == 41 + offset
        assert date(2024, 1, 1) <= date.fromisoformat(day) <= date(2025, 12, 31)
        assert 1 <= int(qty) <= 20
        assert cents(price) == PRICES[product]
        assert cents(total) == PRICES[product] * int(qty)


def test_rows_parse_as_csv_with_the_header() -> None:
    text = HEADER + format_chunk(random.Random(0), 1, 100)
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == ["order_id", "order_date", "customer", "product", "quantity", "unit_price", "total"]
    assert len(rows) == 101 and all(len(r) == 7 for r in rows)


def test_values_vary_across_rows() -> None:
    rows = [line.split(",") for line in format_chunk(random.Random(5), 1, 20_000).split("\r\n")[:-1]]
    assert len({r[1] for r in rows}) > 700  # nearly all 731 days
    assert len({r[2] for r in rows}) > 15_000  # 65,536 customers
    assert {r[3] for r in rows} == set(PRICES)
    assert {int(r[4]) for r in rows} == set(range(1, 21))


def test_same_seed_same_rows_other_seed_other_rows() -> None:
    assert format_chunk(random.Random(7), 1, 1000) == format_chunk(random.Random(7), 1, 1000)
    assert format_chunk(random.Random(7), 1, 1000) != format_chunk(random.Random(8), 1, 1000)


def test_known_output_for_seed_one() -> None:
    """Pinned bytes: a change here changes every report users have (same seed must mean same file)."""
    assert format_chunk(random.Random(1), 1, 2) == (
        "1,2024-08-23,C08805,Module,13,19.99,259.87\r\n2,2024-01-23,C27359,Gadget,12,12.99,155.88\r\n"
    )


def report_bytes(tmp_path: Path, rows: int, seed: int, name: str = "r.csv") -> tuple[bytes, HashingWriter]:
    writer = HashingWriter(tmp_path / name)
    write_report(writer, rows, seed, Progress(), threading.Event())
    writer.finish()
    return (tmp_path / name).read_bytes(), writer


def test_write_report_header_rows_hash_and_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(csv_report, "CHUNK_ROWS", 700)  # several chunks, the last one partial
    data, writer = report_bytes(tmp_path, 2500, seed=11)
    lines = data.decode().split("\r\n")
    assert lines[0] + "\r\n" == HEADER
    assert lines[-1] == "" and len(lines) == 2502
    assert [int(line.split(",")[0]) for line in lines[1:-1]] == list(range(1, 2501))
    assert writer.size == len(data)
    assert writer.sha256.hexdigest() == hashlib.sha256(data).hexdigest()


def test_write_report_is_deterministic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, _ = report_bytes(tmp_path, 120_000, seed=42, name="a.csv")
    again, _ = report_bytes(tmp_path, 120_000, seed=42, name="b.csv")
    other, _ = report_bytes(tmp_path, 120_000, seed=43, name="c.csv")
    assert first == again
    assert first != other
    monkeypatch.setattr(csv_report, "CHUNK_ROWS", 7_778)  # tuning the chunk size must not change files
    rechunked, _ = report_bytes(tmp_path, 120_000, seed=42, name="d.csv")
    assert rechunked == first


def test_write_report_reports_progress_and_honours_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(csv_report, "CHUNK_ROWS", 10)
    seen: list[float] = []

    class Recording(Progress):
        def report(self, fraction: float) -> None:
            seen.append(fraction)

    writer = HashingWriter(tmp_path / "p.csv")
    write_report(writer, 35, 0, Recording(), threading.Event())
    writer.finish()
    assert seen == [10 / 35, 20 / 35, 30 / 35, 1.0]
    stop = threading.Event()
    stop.set()
    writer = HashingWriter(tmp_path / "s.csv")
    with pytest.raises(Stopped):
        write_report(writer, 35, 0, Progress(), stop)
    writer.discard()
    assert not writer.path.exists()


# --- jobs_export: OWASP CSV injection ---------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", '=HYPERLINK("http://evil","x")', "=cmd|' /C calc'!A0"],
)
def test_formula_triggers_get_an_apostrophe(value: str) -> None:
    assert neutralise(value) == "'" + value


@pytest.mark.parametrize("value", ["report", "a=b", " =1", "q1 2024", "", "'=already"])
def test_other_text_is_unchanged(value: str) -> None:
    assert neutralise(value) == value


def test_non_text_cells() -> None:
    assert neutralise(None) == ""
    assert neutralise(3) == "3"
    assert neutralise(-3) == "'-3"  # a negative number would be evaluated too
    moment = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert neutralise(moment) == moment.isoformat()


def test_format_rows_quotes_every_cell_and_round_trips() -> None:
    rows = [("a", "=1+1", None), ('say "hi"', "x,=2", "line\nbreak"), ("@x", "\r=3", 7)]
    text = format_rows(rows).decode()
    assert text.startswith('"a","\'=1+1",""\r\n')
    parsed = list(csv.reader(io.StringIO(text, newline="")))
    assert parsed == [
        ["a", "'=1+1", ""],
        ['say "hi"', "x,=2", "line\nbreak"],
        ["'@x", "'\r=3", "7"],
    ]
    assert all(not cell.startswith(jobs_export.FORMULA_TRIGGERS) for row in parsed for cell in row)


# --- the thread csv_report runs in ------------------------------------------------------------------


async def test_run_stoppable_returns_and_raises_from_a_thread() -> None:
    loop_thread = threading.get_ident()
    assert await run_stoppable(lambda stop: threading.get_ident()) != loop_thread

    def boom(stop: threading.Event) -> None:
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        await run_stoppable(boom)


async def test_cancelling_run_stoppable_stops_the_thread_before_returning() -> None:
    started, finished = threading.Event(), threading.Event()

    def spin(stop: threading.Event) -> None:
        started.set()
        while not stop.wait(0.01):
            pass
        time.sleep(0.05)  # still busy a moment after the flag: the caller must wait for this
        finished.set()
        raise Stopped()

    task = asyncio.create_task(run_stoppable(spin))
    await asyncio.to_thread(started.wait, 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert finished.is_set()
