"""csv_report writes in O(1) memory: ten times the rows must not mean more peak RSS."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.utils.stack import ROOT

# Run in a fresh interpreter so each size has its own peak; ru_maxrss is in KiB on Linux.
PEAK_RSS_SCRIPT = """
import resource, sys, threading
from pathlib import Path
from worker.context import Progress
from worker.files import HashingWriter
from worker.tasks.csv_report import write_report

rows, out = int(sys.argv[1]), Path(sys.argv[2])
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
writer = HashingWriter(out)
write_report(writer, rows, 1, Progress(), threading.Event())
writer.finish()
assert writer.size == out.stat().st_size
print(baseline, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_rss_kib(rows: int, out: Path) -> tuple[int, int]:
    """(RSS after imports, peak RSS after writing `rows`) of a fresh process, in KiB."""
    done = subprocess.run(
        [sys.executable, "-c", PEAK_RSS_SCRIPT, str(rows), str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    baseline, peak = map(int, done.stdout.split())
    out.unlink()
    return baseline, peak


def test_peak_rss_is_flat_as_rows_grow(tmp_path: Path) -> None:
    _, small = peak_rss_kib(100_000, tmp_path / "small.csv")
    baseline, large = peak_rss_kib(1_000_000, tmp_path / "large.csv")
    assert large < small * 1.5, f"peak RSS {small} KiB at 100k rows, {large} KiB at 1M rows"
    assert large - baseline < 64 * 1024, f"writing grew RSS by {large - baseline} KiB"
