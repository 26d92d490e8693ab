"""Charts drawn on the server as SVG: no chart library, no script, nothing fetched."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

WIDTH, HEIGHT = 720, 200
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 10, 24  # room for the axis labels


@dataclass(frozen=True)
class Series:
    """One line: its legend, its CSS class and its values (None: no sample in that bucket)."""

    name: str
    css: str
    values: Sequence[float | None]


@dataclass(frozen=True)
class Line:
    """A series placed on the chart: polyline points, and its values for the table view."""

    name: str
    css: str
    points: str
    values: Sequence[float | None]
    dots: list[tuple[float, float]]  # each sample as a dot too: a lone bucket draws no line


@dataclass(frozen=True)
class Chart:
    """A line chart's geometry and the data behind it (also shown as a table for screen readers)."""

    title: str
    unit: str
    lines: list[Line]
    y_max: float
    y_ticks: list[tuple[float, str]]  # (y pixel, label)
    x_ticks: list[tuple[float, str]]  # (x pixel, label)
    starts: list[datetime]
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    bottom_y: int = HEIGHT - BOTTOM


def _nice_max(value: float) -> float:
    """The next 1, 2 or 5 times 10^n at or above `value` (at least 1)."""
    if value <= 1:
        return 1.0
    magnitude = 10 ** (len(str(int(value))) - 1)
    return float(next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= value))


def _label(value: float) -> str:
    return f"{value:g}" if value < 1000 else f"{value / 1000:g}k"


def line_chart(title: str, unit: str, starts: list[datetime], series: list[Series]) -> Chart:
    """A chart of `series` over the buckets starting at `starts`."""
    peak = max((v for s in series for v in s.values if v is not None), default=0.0)
    y_max = _nice_max(peak)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / max(len(starts) - 1, 1)

    def x(i: int) -> float:
        return LEFT + i * step

    def y(v: float) -> float:
        return TOP + plot_h * (1 - v / y_max)

    lines = []
    for s in series:
        dots = [(round(x(i), 1), round(y(v), 1)) for i, v in enumerate(s.values) if v is not None]
        lines.append(Line(s.name, s.css, " ".join(f"{px},{py}" for px, py in dots), s.values, dots))
    y_ticks = [(y(y_max * f), _label(y_max * f)) for f in (0, 0.5, 1)]
    picks = sorted({0, len(starts) // 2, len(starts) - 1}) if starts else []
    x_ticks = [(x(i), starts[i].strftime("%m-%d %H:%M")) for i in picks]
    return Chart(title, unit, lines, y_max, y_ticks, x_ticks, starts)
