"""What the medications domain accepts from a form, the API, the CLI or the demo, checked with
no session and no clock: `now` and the program's `today` are passed in.

Every refusal is an `ImplausibleValue` (a `MedicationInputError`, so a `tandem.errors.InvalidInput`)
naming the field to fix. Times a person records follow the one policy of `tandem.clock`
(timezone-aware, at most `CLOCK_SKEW` ahead); which *planned doses* may be reported now is a
separate window (`RECORD_BACK`, `RECORD_AHEAD`), because a dose due within the hour may be
reported as taken before the clock reaches it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

from tandem.clock import check_recorded_at
from tandem.errors import InvalidInput
from tandem.medications.errors import ImplausibleValue, PlanRefused
from tandem.medications.monograph import Monograph
from tandem.medications.plausibility import check_measurement
from tandem.medications.renal import Sex, WeightBasis
from tandem.medications.rules import HEPATIC_GRADES, close_substances

__all__ = [
    "BOOL_FACTS",
    "DATE_FACTS",
    "GIVEN_WINDOW",
    "MAX_NOTE",
    "NUMBER_FACTS",
    "RECORD_AHEAD",
    "RECORD_BACK",
    "SEVERITIES",
    "SIDE_EFFECTS",
    "START_AHEAD",
    "START_BACK",
    "Administration",
    "FactsInput",
    "SideEffect",
    "check_administration",
    "check_facts",
    "check_note",
    "check_side_effect",
    "check_start",
    "check_statement",
    "check_stop",
    "kidney_sex_of",
    "recordable",
    "recorded_time",
    "weight_basis_of",
]

SIDE_EFFECTS: dict[str, str] = {
    "drowsiness": "Drowsiness",
    "dizziness": "Dizziness",
    "weakness": "Weakness",
    "confusion": "Confusion",
    "fatigue": "Fatigue",
    "nausea": "Nausea",
    "hypotension": "Low blood pressure",
    "headache": "Headache",
    "insomnia": "Insomnia",
    "constipation": "Constipation",
    "urinary_frequency": "Urinary frequency",
    "other": "Other (describe)",
}
SEVERITIES = ("mild", "moderate", "severe")
BOOL_FACTS = (
    "on_dialysis",
    "pregnant",
    "breastfeeding",
    "seizure_history",
    "psychosis_history",
    "stroke_history",
    "respiratory_disease",
    "acute_hepatitis",
    "liver_failure",
    "severe_heart_disease",
    "qtc_prolonged",
    "opioid_withdrawal_signs",
    "opioid_positive_test",
    "intoxicated",
)
NUMBER_FACTS = (
    "weight_kg",
    "ideal_weight_kg",
    "creatinine_mg_dl",
    "alt_u_l",
    "ast_u_l",
    "qtc_ms",
)
DATE_FACTS = ("weighed_on", "creatinine_on", "liver_tests_on", "ecg_on", "last_opioid_use_on")
MAX_NOTE = 2000
# Which planned doses the chart offers for reporting now: those due in the last week, and
# those due in the next two hours (taken a little early, reported at once).
RECORD_BACK = timedelta(days=7)
RECORD_AHEAD = timedelta(hours=2)
# A dose recorded as given this far from its planned time is refused as a likely mistake.
GIVEN_WINDOW = timedelta(hours=12)
# A plan starts from yesterday (written the morning after) to within the next 90 days.
START_BACK = timedelta(days=1)
START_AHEAD = timedelta(days=90)


@dataclass(frozen=True)
class FactsInput:
    """Facts as a form or API sends them: None = not recorded. `taking` is a list of classes
    (empty = recorded none) or None."""

    sex_for_kidney: str | None = None
    weight_kg: float | None = None
    weight_basis: str = "actual"
    ideal_weight_kg: float | None = None
    weighed_on: date | None = None
    creatinine_mg_dl: float | None = None
    creatinine_on: date | None = None
    on_dialysis: bool | None = None
    pregnant: bool | None = None
    breastfeeding: bool | None = None
    seizure_history: bool | None = None
    psychosis_history: bool | None = None
    stroke_history: bool | None = None
    respiratory_disease: bool | None = None
    alt_u_l: float | None = None
    ast_u_l: float | None = None
    liver_tests_on: date | None = None
    acute_hepatitis: bool | None = None
    liver_failure: bool | None = None
    severe_heart_disease: bool | None = None
    hepatic_impairment: str | None = None
    qtc_ms: float | None = None
    qtc_prolonged: bool | None = None
    ecg_on: date | None = None
    taking: tuple[str, ...] | None = None
    last_opioid_use_on: date | None = None
    opioid_withdrawal_signs: bool | None = None
    opioid_positive_test: bool | None = None
    intoxicated: bool | None = None
    last_drink_at: datetime | None = None
    note: str = ""


def kidney_sex_of(value: str | None) -> Sex | None:
    """The sex the kidney equations use: female, male, or not recorded (None)."""
    if value is None:
        return None
    if value == "female":
        return "female"
    if value == "male":
        return "male"
    raise ImplausibleValue("sex_for_kidney", "must be female or male")


def weight_basis_of(value: str) -> WeightBasis:
    """The weight the Cockcroft-Gault equation uses."""
    if value == "actual":
        return "actual"
    if value == "ideal":
        return "ideal"
    if value == "adjusted":
        return "adjusted"
    raise ImplausibleValue("weight_basis", "must be actual, ideal or adjusted")


def check_note(field: str, text: str, what: str = "note") -> str:
    """Free text under `MAX_NOTE` characters, returned stripped."""
    if len(text) > MAX_NOTE:
        raise ImplausibleValue(field, f"keep the {what} under {MAX_NOTE} characters")
    return text.strip()


def recorded_time(
    field: str,
    value: datetime,
    now: datetime,
    *,
    not_before: datetime | None = None,
    not_before_reason: str = "",
) -> datetime:
    """A time a person recorded, by the one policy (`tandem.clock.check_recorded_at`): aware,
    at most the clock skew ahead (returned as `now` then), not before `not_before`."""
    try:
        return check_recorded_at(
            field, value, now, not_before=not_before, not_before_reason=not_before_reason
        )
    except InvalidInput as exc:
        raise ImplausibleValue(exc.field, exc.message) from None


def _number(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ImplausibleValue(name, f"must be a number, got {value!r}")
    if value <= 0:
        raise ImplausibleValue(name, f"must be more than zero, got {value:g}")
    # Plausibility bounds (data/plausibility.yaml), not clinical thresholds.
    check_measurement(name, value)


def check_facts(
    values: FactsInput,
    *,
    today: date,
    now: datetime,
    birth_date: date | None,
    gender: str | None,
) -> FactsInput:
    """Screening facts a clinic could have measured: plausible numbers, dates between the
    patient's birth and the program's `today`, a last drink not in the future. Returns the
    facts as they are kept (the note stripped, a last drink a few seconds ahead set to `now`)."""
    for name in NUMBER_FACTS:
        value = getattr(values, name)
        if value is not None:
            _number(name, value)
    for name in DATE_FACTS:
        day = getattr(values, name)
        if day is None:
            continue
        if day > today:
            raise ImplausibleValue(name, "cannot be in the future")
        if birth_date is not None and day < birth_date:
            raise ImplausibleValue(name, "cannot be before the patient's birth")
    last_drink_at = values.last_drink_at
    if last_drink_at is not None:
        last_drink_at = recorded_time("last_drink_at", last_drink_at, now)
    kidney_sex_of(values.sex_for_kidney)
    if values.hepatic_impairment is not None and values.hepatic_impairment not in HEPATIC_GRADES:
        raise ImplausibleValue(
            "hepatic_impairment", f"choose one of {', '.join(HEPATIC_GRADES)} or not recorded"
        )
    weight_basis_of(values.weight_basis)
    if values.weight_basis != "actual" and values.ideal_weight_kg is None:
        raise ImplausibleValue(
            "ideal_weight_kg", f"is needed for the {values.weight_basis} weight basis"
        )
    if values.creatinine_mg_dl is not None and values.creatinine_on is None:
        raise ImplausibleValue("creatinine_on", "give the date the creatinine was measured")
    taking = values.taking
    if taking is not None:
        close_substances(taking, "taking")
        taking = tuple(sorted({t.strip().lower() for t in taking if t.strip()}))
    if gender == "male" and (values.pregnant or values.breastfeeding):
        raise ImplausibleValue(
            "pregnant", "the chart records this patient as male; correct the chart's gender first"
        )
    note = check_note("note", values.note)
    return replace(values, last_drink_at=last_drink_at, taking=taking, note=note)


def check_start(start_date: date, today: date) -> None:
    """A new plan starts from yesterday at the earliest, and within 90 days."""
    if start_date < today - START_BACK:
        raise ImplausibleValue(
            "start_date", "a plan cannot start in the past (yesterday at the earliest)"
        )
    if start_date > today + START_AHEAD:
        raise ImplausibleValue("start_date", f"a plan starts within {START_AHEAD.days} days")


def check_stop(
    monograph: Monograph,
    *,
    status: str,
    plan_start: date,
    replaces_plan: int | None,
    stop_on: date,
    reason: str,
    today: date,
) -> str:
    """Stopping a plan from `stop_on` (no doses that day), with the reason, returned stripped.
    A medication that must be tapered is not stopped at once once it has started (start a taper,
    which replaces the plan), nor by cancelling the plan that took over from another."""
    if status != "active":
        raise ImplausibleValue("plan", f"this plan is already {status}")
    if stop_on < today:
        raise ImplausibleValue("stop_on", "cannot stop a plan in the past")
    reason = reason.strip()
    if not reason:
        raise ImplausibleValue("reason", "say why the plan is stopped")
    check_note("reason", reason, "reason")
    disc = monograph.discontinuation
    if disc is None or not disc.taper_required:
        return reason
    if stop_on > plan_start:
        raise PlanRefused(
            "stop_on",
            f"{monograph.name} must not be stopped at once: {disc.text} Start a taper instead; it "
            "replaces this plan from its first day.",
            disc.source,
        )
    if replaces_plan is not None:
        raise PlanRefused(
            "stop_on",
            f"This plan took over from plan {replaces_plan}; cancelling it would stop "
            f"{monograph.name} at once. Write the plan that should follow instead (a taper, or a new dose).",
            disc.source,
        )
    return reason


def recordable(due_at: datetime, now: datetime) -> bool:
    """Whether a planned dose due at `due_at` may be reported now (given, taken or missed)."""
    return now - RECORD_BACK <= due_at <= now + RECORD_AHEAD


def _planned_time(due_at: datetime, now: datetime) -> None:
    if due_at.tzinfo is None or due_at.utcoffset() is None:
        raise ImplausibleValue("due_at", "needs a time zone")
    if due_at > now + RECORD_AHEAD:
        raise ImplausibleValue("due_at", "cannot be in the future")
    if due_at < now - RECORD_BACK:
        raise ImplausibleValue("due_at", f"doses are recorded within {RECORD_BACK.days} days")


def check_statement(due_at: datetime, reason: str, now: datetime) -> str:
    """A patient's report of a planned dose: the dose within the reporting window, the reason
    under the length limit (returned stripped)."""
    _planned_time(due_at, now)
    return check_note("reason", reason, "reason")


@dataclass(frozen=True)
class Administration:
    """A nurse's record of a planned dose, as kept."""

    administered_at: datetime
    reason: str
    note: str


def check_administration(
    *,
    due_at: datetime,
    administered_at: datetime,
    given: bool,
    reason: str,
    note: str,
    now: datetime,
) -> Administration:
    """A planned dose given (or not, with the reason): the time given is a recorded time (not
    ahead of the clock, within the last week) and near the dose's planned time."""
    if due_at.tzinfo is None or due_at.utcoffset() is None:
        raise ImplausibleValue("due_at", "needs a time zone")
    at = recorded_time(
        "administered_at",
        administered_at,
        now,
        not_before=now - RECORD_BACK,
        not_before_reason=f"doses are recorded within {RECORD_BACK.days} days",
    )
    if abs(at - due_at) > GIVEN_WINDOW:
        raise ImplausibleValue(
            "administered_at",
            f"is more than {GIVEN_WINDOW.seconds // 3600} hours from the "
            "planned time of this dose; check the dose and the time",
        )
    if not given and not reason.strip():
        raise ImplausibleValue("reason", "say why the dose was not given")
    if len(note) > MAX_NOTE or len(reason) > MAX_NOTE:
        raise ImplausibleValue("note", f"keep notes under {MAX_NOTE} characters")
    return Administration(at, reason.strip(), note.strip())


@dataclass(frozen=True)
class SideEffect:
    """A side effect as kept."""

    effect: str
    severity: str
    detail: str
    onset_at: datetime


def check_side_effect(
    *, effect: str, severity: str, detail: str, onset_at: datetime, now: datetime
) -> SideEffect:
    """A side effect from the vocabulary (or 'other', described), its severity, and an onset
    that has happened."""
    if effect not in SIDE_EFFECTS:
        raise ImplausibleValue("effect", f"choose one of {', '.join(SIDE_EFFECTS)}")
    if severity not in SEVERITIES:
        raise ImplausibleValue("severity", f"must be one of {', '.join(SEVERITIES)}")
    detail = check_note("detail", detail, "description")
    if effect == "other" and not detail:
        raise ImplausibleValue("detail", "describe the side effect")
    return SideEffect(effect, severity, detail, recorded_time("onset_at", onset_at, now))
