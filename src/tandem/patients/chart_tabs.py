"""The tabs of a patient's chart. Each domain adds its own tab when it has something to show."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChartTab:
    id: str
    label: str
    path: str  # appended to /patients/{id}
    order: int = 50


_TABS: dict[str, ChartTab] = {"overview": ChartTab("overview", "Overview", "", 0)}


def add_tab(tab: ChartTab) -> None:
    _TABS[tab.id] = tab


def chart_tabs() -> list[ChartTab]:
    return sorted(_TABS.values(), key=lambda t: (t.order, t.label))
