"""As-needed (PRN) doses offered from the protocol's suggestions. Pure: no I/O, no clock (`now`
is passed).

A suggestion's dose is text from the source table ("25-50 mg", "2 mg"); a dose given must lie
within it. Tandem never offers a dose that is not in the program's protocol. A dose that passes
`check_prn_dose` is stored by the medications domain (`medications.administrations`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

from tandem.clock import check_recorded_at
from tandem.errors import InvalidInput
from tandem.withdrawal.monitoring import MedicationOption

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


class DoseRefused(InvalidInput):
    """A dose the protocol's suggestion does not allow; `field` names what to fix."""


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


@dataclass(frozen=True)
class DoseInput:
    """An as-needed dose as the nurse entered it: which of the assessment's suggestions, how
    much, by which route, when."""

    assessment_id: int
    suggestion: int
    dose: str
    route: str
    administered_at: datetime
    indication: str = ""
    note: str = ""


@dataclass(frozen=True)
class CheckedDose:
    option: MedicationOption
    value: Decimal
    unit: str
    route: str
    administered_at: datetime  # clamped to now


def check_prn_dose(
    options: Sequence[MedicationOption],
    given: DoseInput,
    *,
    assessed_at: datetime,
    now: datetime,
    scored: str,
) -> CheckedDose:
    """The dose given, when it is one of the protocol's `options` for the assessment (`scored`
    names it, e.g. "ciwa_ar 12"), within that suggestion's range, by a known route, and given
    (a recorded time) not before the assessment that prompted it."""
    if not options:
        raise InvalidInput("suggestion", f"the protocol suggests no medication for {scored}")
    if not 0 <= given.suggestion < len(options):
        raise InvalidInput("suggestion", "choose one of the protocol's suggestions")
    option = options[given.suggestion]
    value, unit = check_dose(option.dose_text, given.dose)
    route = option.route or given.route
    if route not in ROUTES:
        raise InvalidInput("route", f"choose one of {', '.join(ROUTES)}")
    when = check_recorded_at(
        "administered_at",
        given.administered_at,
        now,
        not_before=assessed_at,
        not_before_reason="cannot be before the assessment that prompted it",
    )
    return CheckedDose(option, value, unit, route, when)
