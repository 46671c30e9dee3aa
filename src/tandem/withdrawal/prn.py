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
from datetime import datetime, timedelta
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
    # A prescriber's reason to give a dose the repeat-dose guard refuses; "" = none.
    override_reason: str = ""


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


# --------------------------------------------------------------------------- repeat doses

DAY = timedelta(hours=24)


@dataclass(frozen=True)
class PriorDose:
    """A dose already given to the patient (status completed), as the guard needs it."""

    drug: str
    value: Decimal
    unit: str
    administered_at: datetime
    assessment_id: int | None

    @property
    def amount(self) -> str:
        return f"{_plain(self.value)} {self.unit}"


@dataclass(frozen=True)
class DrugTotal:
    drug: str
    value: Decimal
    unit: str
    doses: int

    @property
    def amount(self) -> str:
        return f"{_plain(self.value)} {self.unit}"


@dataclass(frozen=True)
class GivenSoFar:
    """What the form shows beside an as-needed dose: what was given for this assessment, and
    in the 24 hours before `now`, per drug. No benzodiazepine-equivalent total: neither the
    clinical fact sheet nor the protocol's sources give equivalences."""

    for_assessment: tuple[PriorDose, ...]
    last_24h: tuple[DrugTotal, ...]


def given_so_far(prior: Sequence[PriorDose], assessment_id: int, now: datetime) -> GivenSoFar:
    since = now - DAY
    totals: dict[tuple[str, str], DrugTotal] = {}
    for dose in prior:
        if dose.administered_at <= since:
            continue
        key = (dose.drug, dose.unit)
        before = totals.get(key, DrugTotal(dose.drug, Decimal(0), dose.unit, 0))
        totals[key] = DrugTotal(dose.drug, before.value + dose.value, dose.unit, before.doses + 1)
    return GivenSoFar(
        for_assessment=tuple(d for d in prior if d.assessment_id == assessment_id),
        last_24h=tuple(sorted(totals.values(), key=lambda t: t.drug)),
    )


@dataclass(frozen=True)
class Override:
    """A prescriber's decision to give a dose the guard would refuse, and why."""

    by_prescriber: bool
    reason: str


MAX_OVERRIDE_REASON = 2000


def repeat_dose_reasons(
    prior: Sequence[PriorDose], dose: CheckedDose, assessment_id: int
) -> list[str]:
    """Why this dose needs a prescriber's override (empty when it does not): a dose was
    already given for the same assessment, or it would take the drug over the protocol's
    24-hour maximum (counted back 24 hours from the time this dose is given)."""
    reasons: list[str] = []
    same = [d for d in prior if d.assessment_id == assessment_id]
    if same:
        listed = ", ".join(f"{d.drug} {d.amount}" for d in same)
        reasons.append(f"a dose was already given for this assessment ({listed})")
    limit = dose.option.max_mg_per_24h
    if limit is not None and dose.unit == "mg":
        since = dose.administered_at - DAY
        taken = sum(
            (
                d.value
                for d in prior
                if d.drug == dose.option.drug
                and d.unit == "mg"
                and since < d.administered_at <= dose.administered_at
            ),
            Decimal(0),
        )
        total = taken + dose.value
        if total > Decimal(str(limit)):
            cited = f" ({dose.option.max_source.citation})" if dose.option.max_source else ""
            reasons.append(
                f"{dose.option.drug} {_plain(total)} mg in 24 hours would exceed the protocol's "
                f"maximum of {limit:g} mg{cited}"
            )
    return reasons


def check_repeat_dose(
    prior: Sequence[PriorDose],
    dose: CheckedDose,
    assessment_id: int,
    override: Override | None,
) -> str:
    """The override reason to store ("" when none was needed), or DoseRefused naming the
    `override` field: a second dose for one assessment, or a dose over the protocol's 24-hour
    maximum, needs a prescriber's override with a reason."""
    reasons = repeat_dose_reasons(prior, dose, assessment_id)
    if not reasons:
        return ""
    why = "; ".join(reasons)
    if override is None or not override.reason.strip():
        raise DoseRefused(
            "override", f"{why}. A prescriber's override with a reason is needed to give it"
        )
    if not override.by_prescriber:
        raise DoseRefused("override", f"{why}. Only a prescriber may override")
    reason = override.reason.strip()
    if len(reason) > MAX_OVERRIDE_REASON:
        raise DoseRefused("override", f"keep the reason under {MAX_OVERRIDE_REASON} characters")
    return reason


def _plain(value: Decimal) -> str:
    return format(value.normalize(), "f")
