"""`make bench` still works: the benchmarks run end to end at their tiny size (they are not tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]


def test_bench_runs_every_scenario_at_tiny_size(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    args = [sys.executable, "-m", "bench", "--tiny", "--no-write", "--work-dir", str(tmp_path / "work")]
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    assert "| # | Measure | Ours | Baseline | Ratio | Target | Met |" in done.stdout
    for scenario in map(str, range(1, 12)):
        assert f"\n| {scenario} | " in done.stdout, f"scenario {scenario} missing:\n{done.stdout}"
    assert "targets met." in done.stdout
    assert not _processes_under(tmp_path), "the bench left processes running"


def _processes_under(folder: Path) -> list[str]:
    """Processes whose working directory is inside `folder` (every child the bench starts is)."""
    left = []
    for proc in psutil.process_iter(["cwd", "cmdline"]):
        cwd = proc.info["cwd"]
        if cwd and Path(cwd).is_relative_to(folder):
            left.append(" ".join(proc.info["cmdline"] or []))
    return left
