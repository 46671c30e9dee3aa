"""As-needed (PRN) doses offered from the protocol's suggestions. Pure: no I/O, no clock.

A suggestion's dose is text from the source table ("25-50 mg", "2 mg"); a dose given must lie
within it. Tandem never offers a dose that is not in the program's protocol.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

ROUTES = {
    "oral": "Oral",
    "sublingual": "Sublingual",
    "intramuscular": "Intramuscular",
    "intravenous": "Intravenous",
}

_RANGE = re.compile(
    r"^\s*(?P<lo>\d+(?:\.\d+)?)\s*(?:(?:-|–|to)\s*(?P<hi>\d+(?:\.\d+)?))?\s*(?P<unit>mg|mcg|g)\s*$"
)


@dataclass(frozen=True)
class DoseRange:
    low: Decimal
    high: Decimal
    unit: str

    def __contains__(self, value: Decimal) -> bool:
        return self.low <= value <= self.high

    def __str__(self) -> str:
        if self.low == self.high:
            return f"{self.low} {self.unit}"
        return f"{self.low}-{self.high} {self.unit}"


def dose_range(dose_text: str) -> DoseRange | None:
    """The range a suggestion's dose text states, or None when it is not a plain range."""
    match = _RANGE.match(dose_text)
    if match is None:
        return None
    low = Decimal(match["lo"])
    high = Decimal(match["hi"]) if match["hi"] else low
    if high < low:
        return None
    return DoseRange(low, high, match["unit"])


class DoseRefused(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def check_dose(dose_text: str, entered: str) -> tuple[Decimal, str]:
    """The dose given as (value, unit) when it lies within the suggestion, else DoseRefused."""
    allowed = dose_range(dose_text)
    if allowed is None:
        raise DoseRefused(
            "dose",
            f"the protocol's dose {dose_text!r} is not a plain range; "
            "record this dose with the prescriber's order instead",
        )
    try:
        value = Decimal(entered.strip())
    except InvalidOperation:
        raise DoseRefused("dose", f"enter a number of {allowed.unit}") from None
    if not value.is_finite() or value <= 0:
        raise DoseRefused("dose", f"enter a positive number of {allowed.unit}")
    if value not in allowed:
        raise DoseRefused("dose", f"{value} {allowed.unit} is outside the protocol's {allowed}")
    return value, allowed.unit
