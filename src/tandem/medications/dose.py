"""Doses as values: `Dose(mg=5, frequency=Frequency.TID)`, written `5mg-tid`.

Parsing lives here so the CLI, the monographs and the dose plans read doses the same way.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import Enum

from tandem.medications.errors import DoseParseError, ImplausibleValue

__all__ = [
    "Dose",
    "Frequency",
    "check_positive",
    "parse_days",
    "parse_dose",
    "parse_mg",
    "round_mg",
]


class Frequency(Enum):
    """How many doses a day, and the named time slots they are given in."""

    DAILY = ("daily", 1, ("morning",))
    BID = ("bid", 2, ("morning", "evening"))
    TID = ("tid", 3, ("morning", "midday", "evening"))
    QID = ("qid", 4, ("morning", "midday", "evening", "bedtime"))

    def __init__(self, code: str, per_day: int, slots: tuple[str, ...]) -> None:
        self.code = code
        self.per_day = per_day
        self.slots = slots

    @property
    def label(self) -> str:
        return {1: "once daily", 2: "twice daily", 3: "three times daily", 4: "four times daily"}[
            self.per_day
        ]

    @classmethod
    def parse(cls, text: str, field: str = "frequency") -> Frequency:
        key = text.strip().lower().replace("_", "-")
        aliases = {"qd": "daily", "od": "daily", "once-daily": "daily", "once": "daily"}
        key = aliases.get(key, key)
        for freq in cls:
            if freq.code == key:
                return freq
        raise DoseParseError(field, f"unknown frequency {text!r}; use one of daily, bid, tid, qid")


def round_mg(mg: float) -> float:
    """Milligram amounts are kept to 4 decimals so 0.18 × 4 prints as 0.72."""
    return round(mg + 0.0, 4)


def check_positive(value: float, field: str, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ImplausibleValue(field, f"must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ImplausibleValue(field, f"must be a finite number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = "zero or more" if allow_zero else "more than zero"
        raise ImplausibleValue(field, f"must be {bound}, got {value:g}")
    return float(value)


@dataclass(frozen=True)
class Dose:
    """Milligrams per dose and how often. Same amount at every time slot."""

    mg: float
    frequency: Frequency

    def __post_init__(self) -> None:
        check_positive(self.mg, "mg")

    @property
    def mg_per_day(self) -> float:
        return round_mg(self.mg * self.frequency.per_day)

    def __str__(self) -> str:
        return f"{self.mg:g}mg-{self.frequency.code}"

    @property
    def text(self) -> str:
        return f"{self.mg:g} mg {self.frequency.label}"

    @classmethod
    def parse(cls, text: str, field: str = "dose") -> Dose:
        return parse_dose(text, field)


_DOSE = re.compile(
    r"^\s*(?P<mg>\d+(?:\.\d+)?|\.\d+)\s*mg\s*(?:[-/ x]|\s)?\s*(?P<freq>[a-z][a-z_-]*)\s*$",
    re.IGNORECASE,
)
_MG = re.compile(r"^\s*(?P<mg>\d+(?:\.\d+)?|\.\d+)\s*(?:mg)?\s*$", re.IGNORECASE)
_DAYS = re.compile(r"^\s*(?P<n>\d+)\s*(?P<unit>d|day|days|w|wk|week|weeks)?\s*$", re.IGNORECASE)


def parse_dose(text: str, field: str = "dose") -> Dose:
    """Read `5mg-tid`, `20 mg QID`, `0.18mg-qid`. The amount must be more than zero."""
    if not isinstance(text, str):
        raise DoseParseError(field, f"expected a dose such as 5mg-tid, got {text!r}")
    m = _DOSE.match(text)
    if m is None:
        if text.strip().startswith("-"):
            raise ImplausibleValue(field, f"a dose cannot be negative: {text!r}")
        raise DoseParseError(field, f"cannot read dose {text!r}; write it like 5mg-tid or 20mg-qid")
    mg = float(m.group("mg"))
    if mg <= 0:
        raise ImplausibleValue(field, f"a dose must be more than 0 mg, got {text!r}")
    return Dose(mg=mg, frequency=Frequency.parse(m.group("freq"), field))


def parse_mg(text: str, field: str = "mg") -> float:
    """Read an amount such as `5mg` or `5`. Zero and negative amounts are refused."""
    m = _MG.match(text) if isinstance(text, str) else None
    if m is None:
        if isinstance(text, str) and text.strip().startswith("-"):
            raise ImplausibleValue(field, f"an amount cannot be negative: {text!r}")
        raise DoseParseError(field, f"cannot read amount {text!r}; write it like 5mg")
    return check_positive(float(m.group("mg")), field)


# A plan is written out for at most a year (dose_plan.MAX_PLAN_DAYS); no duration in it is longer.
MAX_DURATION_DAYS = 366


def parse_days(text: str, field: str = "days", *, allow_zero: bool = False) -> int:
    """Read a duration in whole days: `3d`, `3`, `2w` (14 days)."""
    m = _DAYS.match(text) if isinstance(text, str) else None
    if m is None:
        if isinstance(text, str) and text.strip().startswith("-"):
            raise ImplausibleValue(field, f"a duration cannot be negative: {text!r}")
        raise DoseParseError(field, f"cannot read duration {text!r}; write it like 3d or 2w")
    n = int(m.group("n"))
    unit = (m.group("unit") or "d").lower()
    days = n * 7 if unit.startswith("w") else n
    if days == 0 and not allow_zero:
        raise ImplausibleValue(field, f"must be at least 1 day, got {text!r}")
    if days > MAX_DURATION_DAYS:
        raise ImplausibleValue(
            field, f"must be at most {MAX_DURATION_DAYS} days (a plan covers a year), got {text!r}"
        )
    return days
