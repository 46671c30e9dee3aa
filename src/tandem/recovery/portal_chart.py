"""The "how am I doing" chart, pure: a patient's weekly average craving (0-10, a line per
substance) above the days they used each week (0-7, a bar per substance), as coordinates a
server-rendered SVG draws. Narrow enough for a 375 px phone; the page has a table of the same
numbers beside it (for screen readers, and when a picture is not wanted)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Protocol

WIDTH = 340
LEFT = 28
RIGHT = 8
CRAVING_TOP = 18
CRAVING_HEIGHT = 110
USE_TOP = CRAVING_TOP + CRAVING_HEIGHT + 34
USE_HEIGHT = 70
HEIGHT = USE_TOP + USE_HEIGHT + 22


class WeekLike(Protocol):
    @property
    def starts_on(self) -> date: ...
    @property
    def craving(self) -> dict[str, float]: ...
    @property
    def days_used(self) -> dict[str, int]: ...


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    value: float


@dataclass(frozen=True)
class Series:
    substance: str
    index: int  # the colour (CSS class s<index>)
    points: tuple[Point, ...]

    @property
    def path(self) -> str:
        return " ".join(f"{p.x:.1f},{p.y:.1f}" for p in self.points)


@dataclass(frozen=True)
class Bar:
    substance: str
    index: int
    x: float
    y: float
    width: float
    height: float
    days: int


@dataclass(frozen=True)
class Tick:
    x: float
    label: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    left: int
    right: float
    craving_top: int
    craving_bottom: int
    use_top: int
    use_bottom: int
    craving_grid: tuple[tuple[float, int], ...]  # (y, value)
    use_grid: tuple[tuple[float, int], ...]
    series: tuple[Series, ...]
    bars: tuple[Bar, ...]
    ticks: tuple[Tick, ...]
    empty: bool


def draw(weeks: Sequence[WeekLike], substances: Sequence[str]) -> Chart:
    n = max(len(weeks), 1)
    step = (WIDTH - LEFT - RIGHT) / n

    def centre(i: int) -> float:
        return LEFT + step * (i + 0.5)

    def craving_y(value: float) -> float:
        return CRAVING_TOP + CRAVING_HEIGHT * (1 - value / 10)

    series = []
    for index, substance in enumerate(substances):
        points = tuple(
            Point(centre(i), craving_y(w.craving[substance]), w.craving[substance])
            for i, w in enumerate(weeks)
            if substance in w.craving
        )
        if points:
            series.append(Series(substance, index, points))
    bars = []
    shown = [s for s in substances if any(s in w.days_used for w in weeks)] or list(substances)
    width = max(step * 0.8 / max(len(shown), 1), 1.5)
    for i, week in enumerate(weeks):
        start = centre(i) - width * len(shown) / 2
        for j, substance in enumerate(shown):
            days = week.days_used.get(substance)
            if days is None:
                continue
            height = USE_HEIGHT * days / 7
            bars.append(
                Bar(
                    substance,
                    list(substances).index(substance),
                    start + j * width,
                    USE_TOP + USE_HEIGHT - height,
                    width,
                    height,
                    days,
                )
            )
    ticks = tuple(
        Tick(centre(i), f"{w.starts_on:%d %b}")
        for i, w in enumerate(weeks)
        if i % max(1, n // 4) == 0 or i == n - 1
    )
    return Chart(
        width=WIDTH,
        height=HEIGHT,
        left=LEFT,
        right=WIDTH - RIGHT,
        craving_top=CRAVING_TOP,
        craving_bottom=CRAVING_TOP + CRAVING_HEIGHT,
        use_top=USE_TOP,
        use_bottom=USE_TOP + USE_HEIGHT,
        craving_grid=tuple((craving_y(v), v) for v in (0, 5, 10)),
        use_grid=tuple((USE_TOP + USE_HEIGHT * (1 - d / 7), d) for d in (0, 7)),
        series=tuple(series),
        bars=tuple(bars),
        ticks=ticks,
        empty=not series and not bars,
    )
