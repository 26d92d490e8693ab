"""`--profile`: re-run the workload behind each missed target under py-spy and summarise the hot spots.

py-spy samples a live process from outside (no code changes, `--nonblocking` so it barely slows it);
its raw output is one line per distinct stack, `frame;frame;...;leaf count`, each frame
`function (file:line)`. The summary lists where CPU time is spent (leaf lines, "self") and which of
the project's own functions the time is spent under ("inclusive").
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from bench.stack import ROOT, Proc

FRAME = re.compile(r"^(?P<func>.*) \((?P<file>.*?):(?P<line>\d+)\)$")
TOP = 12


def py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


class Recorder:
    """py-spy attached to one process until `stop()`."""

    def __init__(self, proc: Proc, out: Path, rate: int = 250) -> None:
        self.proc = proc
        self.out = out
        self.rate = rate
        self.started = time.monotonic()
        self.seconds = 0.0  # how long it recorded, once stopped
        exe = py_spy()
        if exe is None:
            raise RuntimeError("py-spy is not installed (it is in the `bench` extra)")
        args = [exe, "record", "-p", str(proc.pid), "-r", str(rate), "-f", "raw", "-o", str(out)]
        self.popen = subprocess.Popen(
            [*args, "--nonblocking", "--gil"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

    def stop(self) -> str:
        self.seconds = time.monotonic() - self.started
        self.popen.send_signal(signal.SIGINT)
        _, err = self.popen.communicate(timeout=60)
        if not self.out.exists():
            raise RuntimeError(f"py-spy wrote nothing: {err.decode(errors='replace')[-500:]}")
        return self.out.read_text()


def short(path: str) -> str:
    """A readable path: relative to the repository, or from the package down for libraries."""
    root = str(ROOT) + "/"
    if path.startswith(root):
        return path[len(root) :]
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1]
    if "/lib/python3" in path:
        return "stdlib/" + path.split("/lib/python3", 1)[1].split("/", 1)[1]
    return path


def _ranked(counts: Counter[str], total: int, below: int) -> list[str]:
    """The TOP largest counts under `below`, one line each; functions with the very same count (the
    frames of one call chain, e.g. `Pool.fetch` and the `Connection` methods under it) share a line."""
    same: dict[int, list[str]] = {}
    for name, n in counts.most_common():
        if n < below:
            same.setdefault(n, []).append(name)
    return [f"- {n / total:5.1%}  {' | '.join(names)}" for n, names in list(same.items())[:TOP]]


def _own(file: str) -> bool:
    return file.startswith(("backend/", "worker/"))


def _library(file: str) -> bool:
    """A third-party package's file (as `short` names it), not the project's nor the standard library's."""
    first = file.split("/", 1)[0].removesuffix(".py")
    return not (
        file.startswith(("backend/", "worker/", "<", "stdlib/", "/")) or first in sys.stdlib_module_names
    )


def parse(raw: str) -> list[tuple[list[tuple[str, str, int]], int]]:
    """Stacks as lists of (function, file, line), root first, with their sample counts."""
    stacks = []
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = []
        for part in stack.split(";"):
            m = FRAME.match(part)
            if m:
                frames.append((m["func"], short(m["file"]), int(m["line"])))
        if frames:
            stacks.append((frames, int(count)))
    return stacks


def summarize(raw: str, title: str, seconds: float = 0.0, rate: int = 0) -> list[str]:
    """Markdown: the top leaf lines (self time), the top project functions (inclusive time) and packages.

    With `seconds` and `rate`, the header also says how busy the process was: py-spy (`--gil`) takes a
    sample only while the process holds the GIL, so samples / (rate * seconds) is about its share of one
    core. The project's entry chain (the functions on every sampled stack, e.g. `cli.main → run_api`) is
    named once instead of filling the inclusive list.
    """
    stacks = parse(raw)
    total = sum(n for _, n in stacks)
    if not total:
        return [f"### {title}", "", "no samples (the process was idle)", ""]
    leaves: Counter[str] = Counter()
    own: Counter[str] = Counter()
    libraries: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    for frames, n in stacks:
        func, file, line = frames[-1]
        leaves[f"{file}:{line} {func}"] += n
        for name in {f"{file}:{func}" for func, file, _ in frames if _own(file)}:
            own[name] += n
        deepest = max((i for i, (_, file, _) in enumerate(frames) if _own(file)), default=-1)
        for name in {f"{file}:{func}" for func, file, _ in frames[deepest + 1 :] if _library(file)}:
            libraries[name] += n
        for package in {file.split("/", 1)[0] for _, file, _ in frames if not file.startswith("<")}:
            packages[package] += n
    busy = (
        f", about {total / (rate * seconds):.0%} of one core over {seconds:.1f} s" if seconds and rate else ""
    )
    out = [f"### {title}", "", f"{total} samples (CPU only){busy}. Self time by line:", ""]
    out += [f"- {n / total:5.1%}  {name}" for name, n in leaves.most_common(TOP)]
    top = max(own.values(), default=0)
    chain = sorted(name for name, n in own.items() if n == top)
    out += ["", "Inclusive time in the project's own functions:", ""]
    if chain:
        out += [f"- {top / total:5.1%}  (entry: {', '.join(chain)})"]
    out += _ranked(own, total, top)
    out += [
        "",
        "Inclusive time in libraries' functions (not the standard library's), counted below the "
        "project's deepest frame on each stack (so a framework's layers above a handler count only for "
        "what they do themselves, and a library called by the project counts under that call):",
        "",
    ]
    out += _ranked(libraries, total, top)
    out += ["", "Inclusive time by package:", ""]
    out += [f"- {n / total:5.1%}  {name}" for name, n in packages.most_common(TOP)]
    return [*out, ""]
