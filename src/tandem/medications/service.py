"""Medications in storage: screening facts, dose plans, doses given and taken, side effects,
missed-dose alerts. Every function asks the policy through `Access` and audits what it reads
or writes; the clinical decisions are the pure core's (`safety`, `dose_plan`, `schedule`).

Errors: the core raises `MedicationInputError` naming its field; this module raises the same
for storage-level refusals, and `NotFound` for unknown records. Adapters translate both.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tandem.access.guard import Access, system_access
from tandem.access.policy import PatientRef, Permission
from tandem.access.queries import Page, load_patient, patient_ref, read_row, search_page, visible
from tandem.alerts.models import Alert
from tandem.errors import NotFound
from tandem.medications.adherence import MissedRunAlert
from tandem.medications.dose import Dose, Frequency
from tandem.medications.dose_plan import (
    DosePlan,
    PlanDay,
    StepSpec,
    maintenance,
    plan_from_steps,
    taper,
    titration,
)
from tandem.medications.errors import ImplausibleValue, MedicationInputError, PlanRefused
from tandem.medications.monograph import Monograph, load_monograph
from tandem.medications.renal import RenalResult
from tandem.medications.rules import close_substances
from tandem.medications.safety import PatientFacts, ScreeningResult, screen
from tandem.medications.schedule import (
    AdherenceSummary,
    CalendarDay,
    CalendarDose,
    DoseRecord,
    calendar_weeks,
    check_missed_run,
    dose_states,
    planned_through,
    summarise,
)
from tandem.medications.storage import (
    AdministrationDueRow,
    DosePlanRow,
    MedicationAdministrationRow,
    MedicationFactsRow,
    MedicationStatementRow,
    SideEffectRow,
)
from tandem.patients.records import age_on
from tandem.storage.db import session_scope, utcnow
from tandem.storage.models import Patient

# Resource types as the policy, the audit trail and API scopes name them. Screening facts
# (weight, creatinine, liver tests, QTc...) are clinical observations.
FACTS = "Observation"
PLAN = "MedicationRequest"
STATEMENT = "MedicationStatement"
ADMINISTRATION = "MedicationAdministration"
SIDE_EFFECT = "AdverseEvent"

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
    "qtc_prolonged",
    "opioid_withdrawal_signs",
    "opioid_positive_test",
    "intoxicated",
)
NUMBER_FACTS = ("weight_kg", "ideal_weight_kg", "creatinine_mg_dl", "alt_u_l", "ast_u_l", "qtc_ms")
DATE_FACTS = ("weighed_on", "creatinine_on", "liver_tests_on", "ecg_on", "last_opioid_use_on")
# Upper bounds a clinic would never see; the core refuses zero and negatives.
_CEILINGS = {
    "weight_kg": 700,
    "ideal_weight_kg": 300,
    "creatinine_mg_dl": 40,
    "alt_u_l": 20000,
    "ast_u_l": 20000,
    "qtc_ms": 1000,
}
MAX_NOTE = 2000
# How far back a dose may be recorded from the chart's form, and how far ahead.
RECORD_BACK = timedelta(days=7)
RECORD_AHEAD = timedelta(hours=2)
# A dose recorded as given this far from its planned time is refused as a likely mistake.
GIVEN_WINDOW = timedelta(hours=12)


# --------------------------------------------------------------------------- screening facts


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


def _load_patient(access: Access, patient_id: str, *wanted: tuple[Permission, str]) -> Patient:
    """The patient, once the policy allows reading the chart and every `wanted` operation."""
    return load_patient(access, patient_id, *wanted)


def kidney_sex(patient: Patient, row: MedicationFactsRow | None) -> str | None:
    """The sex the kidney equations use: the record's gender when female or male, else the
    value recorded with the facts."""
    if patient.gender in ("female", "male"):
        return patient.gender
    return row.sex_for_kidney if row is not None else None


def patient_facts(patient: Patient, row: MedicationFactsRow | None, now: datetime) -> PatientFacts:
    """The pure core's PatientFacts from the chart (age from the birth date) and stored facts.
    Times since the last opioid and drink are counted to `now`, so they stay true as time passes."""
    tz = ZoneInfo(patient.program.time_zone)
    today = now.astimezone(tz).date()
    age = age_on(patient.birth_date, today)
    sex = kidney_sex(patient, row)
    if row is None:
        return PatientFacts(age=age, sex=sex)  # type: ignore[arg-type]
    taking = None if row.taking is None else frozenset(t for t in row.taking.split(",") if t)
    opioid_free = None if row.last_opioid_use_on is None else (today - row.last_opioid_use_on).days
    since_drink = None
    if row.last_drink_at is not None:
        since_drink = max(0.0, (now - row.last_drink_at).total_seconds() / 3600)
    return PatientFacts(
        age=age,
        sex=sex,  # type: ignore[arg-type]
        weight_kg=row.weight_kg,
        creatinine_mg_dl=row.creatinine_mg_dl,
        weight_basis=row.weight_basis,  # type: ignore[arg-type]
        ideal_weight_kg=row.ideal_weight_kg,
        on_dialysis=row.on_dialysis,
        pregnant=row.pregnant,
        breastfeeding=row.breastfeeding,
        seizure_history=row.seizure_history,
        psychosis_history=row.psychosis_history,
        stroke_history=row.stroke_history,
        respiratory_disease=row.respiratory_disease,
        alt_u_l=row.alt_u_l,
        ast_u_l=row.ast_u_l,
        acute_hepatitis=row.acute_hepatitis,
        liver_failure=row.liver_failure,
        qtc_ms=row.qtc_ms,
        qtc_prolonged=row.qtc_prolonged,
        taking=taking,
        opioid_free_days=opioid_free if opioid_free is None or opioid_free >= 0 else None,
        opioid_withdrawal_signs=row.opioid_withdrawal_signs,
        opioid_positive_test=row.opioid_positive_test,
        intoxicated=row.intoxicated,
        hours_since_last_drink=since_drink,
    )


def _latest_facts(access: Access, patient_id: str) -> MedicationFactsRow | None:
    return access.db.scalar(
        select(MedicationFactsRow)
        .where(MedicationFactsRow.patient_id == patient_id)
        .order_by(MedicationFactsRow.recorded_at.desc(), MedicationFactsRow.id.desc())
        .limit(1)
    )


def current_facts(access: Access, patient: Patient) -> MedicationFactsRow | None:
    """The patient's newest screening facts (None if never recorded)."""
    access.require(Permission.READ, FACTS, patient_ref(patient))
    row = _latest_facts(access, patient.id)
    if row is not None:
        access.audit(
            "read", resource_type=FACTS, resource_id=f"facts-{row.id}", patient_id=patient.id
        )
    return row


def facts_history(access: Access, patient: Patient, limit: int = 20) -> list[MedicationFactsRow]:
    access.require(Permission.SEARCH, FACTS, patient_ref(patient))
    rows = list(
        access.db.scalars(
            select(MedicationFactsRow)
            .where(MedicationFactsRow.patient_id == patient.id)
            .order_by(MedicationFactsRow.recorded_at.desc(), MedicationFactsRow.id.desc())
            .limit(limit)
        )
    )
    access.audit(
        "search", resource_type=FACTS, patient_id=patient.id, query="medication facts history"
    )
    return rows


def _check_facts(values: FactsInput, patient: Patient, now: datetime) -> None:
    tz = ZoneInfo(patient.program.time_zone)
    today = now.astimezone(tz).date()
    for name in NUMBER_FACTS:
        value = getattr(values, name)
        if value is None:
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise ImplausibleValue(name, f"must be a number, got {value!r}")
        if value <= 0:
            raise ImplausibleValue(name, f"must be more than zero, got {value:g}")
        if value >= _CEILINGS[name]:
            raise ImplausibleValue(
                name, f"{value:g} is not a plausible value (must be below {_CEILINGS[name]})"
            )
    for name in DATE_FACTS:
        day = getattr(values, name)
        if day is not None and day > today:
            raise ImplausibleValue(name, "cannot be in the future")
        if day is not None and patient.birth_date is not None and day < patient.birth_date:
            raise ImplausibleValue(name, "cannot be before the patient's birth")
    if values.last_drink_at is not None:
        if values.last_drink_at.tzinfo is None:
            raise ImplausibleValue("last_drink_at", "needs a time zone")
        if values.last_drink_at > now + timedelta(minutes=5):
            raise ImplausibleValue("last_drink_at", "cannot be in the future")
    if values.sex_for_kidney not in (None, "female", "male"):
        raise ImplausibleValue("sex_for_kidney", "must be female or male")
    if values.weight_basis not in ("actual", "ideal", "adjusted"):
        raise ImplausibleValue("weight_basis", "must be actual, ideal or adjusted")
    if values.weight_basis != "actual" and values.ideal_weight_kg is None:
        raise ImplausibleValue(
            "ideal_weight_kg", f"is needed for the {values.weight_basis} weight basis"
        )
    if values.creatinine_mg_dl is not None and values.creatinine_on is None:
        raise ImplausibleValue("creatinine_on", "give the date the creatinine was measured")
    if values.taking is not None:
        close_substances(values.taking, "taking")
    if patient.gender == "male" and (values.pregnant or values.breastfeeding):
        raise ImplausibleValue(
            "pregnant", "the chart records this patient as male; correct the chart's gender first"
        )
    if len(values.note) > MAX_NOTE:
        raise ImplausibleValue("note", f"keep the note under {MAX_NOTE} characters")


def record_facts(
    access: Access, patient_id: str, values: FactsInput, now: datetime | None = None
) -> MedicationFactsRow:
    """Save a new version of the patient's screening facts. Impossible values are refused."""
    now = now or utcnow()
    patient = _load_patient(access, patient_id, (Permission.CREATE, FACTS))
    _check_facts(values, patient, now)
    row = MedicationFactsRow(
        patient_id=patient.id,
        program_id=patient.program_id,
        recorded_at=now,
        recorded_by=access.actor.user_id,
        note=values.note.strip(),
        taking=None
        if values.taking is None
        else ",".join(sorted({t.strip().lower() for t in values.taking})),
        **{
            name: getattr(values, name)
            for name in (
                "sex_for_kidney",
                "weight_kg",
                "weight_basis",
                "ideal_weight_kg",
                "weighed_on",
                "creatinine_mg_dl",
                "creatinine_on",
                "alt_u_l",
                "ast_u_l",
                "liver_tests_on",
                "qtc_ms",
                "ecg_on",
                "last_opioid_use_on",
                "last_drink_at",
                *BOOL_FACTS,
            )
        },
    )
    # The core checks what it will compute from (e.g. an ideal weight for the chosen basis).
    patient_facts(patient, row, now)
    access.db.add(row)
    access.db.flush()
    access.audit(
        "create", resource_type=FACTS, resource_id=f"facts-{row.id}", patient_id=patient.id
    )
    return row


@dataclass(frozen=True)
class Screening:
    result: ScreeningResult
    facts: PatientFacts
    row: MedicationFactsRow | None


def screen_patient(
    access: Access, patient: Patient, medication_id: str, now: datetime | None = None
) -> Screening:
    """Screen the patient's stored facts for one medication (the pure core decides)."""
    now = now or utcnow()
    load_monograph(medication_id)
    row = current_facts(access, patient)
    facts = patient_facts(patient, row, now)
    return Screening(screen(medication_id, facts), facts, row)


def renal_of(patient: Patient, row: MedicationFactsRow | None, now: datetime) -> RenalResult | None:
    """Kidney function from stored facts, or None when nothing kidney-related is recorded."""
    if row is None:
        return None
    facts = patient_facts(patient, row, now)
    renal = facts.renal()
    if renal.crcl is None and renal.egfr is None and renal.on_dialysis is None:
        return None
    return renal


# --------------------------------------------------------------------------- dose plans


def plan_of(row: DosePlanRow) -> DosePlan:
    return DosePlan.from_dict(row.plan)


def effective_status(row: DosePlanRow, today: date) -> str:
    """active | completed | stopped, as of `today` (a taper past its stop date is completed)."""
    if row.status == "active" and row.ends_on is not None and row.ends_on <= today:
        return "completed"
    return row.status


def _today(patient: Patient, now: datetime) -> date:
    return now.astimezone(ZoneInfo(patient.program.time_zone)).date()


def _active_same(
    access: Access, patient: Patient, medication_id: str, today: date
) -> list[DosePlanRow]:
    rows = access.db.scalars(
        select(DosePlanRow)
        .where(
            DosePlanRow.patient_id == patient.id,
            DosePlanRow.medication_id == medication_id,
            DosePlanRow.status == "active",
        )
        .order_by(DosePlanRow.start_date)
    )
    return [r for r in rows if r.ends_on is None or r.ends_on > today]


def dose_on(row: DosePlanRow, day: date) -> PlanDay | None:
    """The plan's doses on `day` (a continuing plan repeats its last day), or None."""
    if day < row.start_date or (row.ends_on is not None and day >= row.ends_on):
        return None
    plan = plan_of(row)
    for d in plan.days:
        if d.date == day:
            return d
    if plan.continues and day > plan.end_date:
        return PlanDay(day, plan.days[-1].doses)
    return None


def current_dose_text(row: DosePlanRow, day: date) -> str | None:
    """The dose on `day` written as a dose (e.g. '20mg-tid') when every slot gets the same."""
    planned = dose_on(row, day)
    if planned is None or not planned.doses:
        return None
    amounts = {d.mg for d in planned.doses}
    if len(amounts) == 1:
        freq = {1: "daily", 2: "bid", 3: "tid", 4: "qid"}.get(len(planned.doses))
        if freq:
            return str(Dose(planned.doses[0].mg, Frequency.parse(freq)))
    return None


def _store_plan(
    access: Access,
    patient: Patient,
    plan: DosePlan,
    inputs: dict[str, Any],
    protocol_max: float | None,
    renal: RenalResult | None,
    facts_row: MedicationFactsRow | None,
    now: datetime,
) -> DosePlanRow:
    today = _today(patient, now)
    previous = _active_same(access, patient, plan.medication_id, today)
    row = DosePlanRow(
        patient_id=patient.id,
        program_id=patient.program_id,
        medication_id=plan.medication_id,
        kind=plan.kind,
        status="active",
        status_reason="",
        start_date=plan.start_date,
        ends_on=plan.stop_date,
        plan=plan.to_dict(),
        inputs=inputs,
        protocol_max_mg_day=protocol_max,
        ceiling_mg_day=plan.ceiling_mg_day,
        crcl_ml_min=renal.crcl_ml_min if renal else None,
        egfr=renal.egfr_ml_min_1_73m2 if renal else None,
        weight_basis=renal.crcl.weight_basis if renal and renal.crcl else None,
        facts_id=facts_row.id if facts_row else None,
        replaces_id=previous[-1].id if previous else None,
        prescriber_id=access.actor.user_id,
        created_at=now,
    )
    access.db.add(row)
    access.db.flush()
    for old in previous:
        # The new plan takes over from its first day; the old one gave its last doses the day before.
        old.ends_on = max(old.start_date, plan.start_date)
        old.status = "stopped"
        old.status_reason = (
            f"Replaced by plan {row.id} ({row.kind}) from {plan.start_date.isoformat()}."
        )
        old.status_changed_at = now
        old.status_changed_by = access.actor.user_id
        access.audit(
            "update",
            resource_type=PLAN,
            resource_id=str(old.id),
            patient_id=patient.id,
            detail=old.status_reason,
        )
    access.audit(
        "create",
        resource_type=PLAN,
        resource_id=str(row.id),
        patient_id=patient.id,
        detail=f"{plan.medication_id} {plan.kind}",
    )
    return row


def _check_start(start_date: date, patient: Patient, now: datetime) -> None:
    today = _today(patient, now)
    if start_date < today - timedelta(days=1):
        raise ImplausibleValue(
            "start_date", "a plan cannot start in the past (yesterday at the earliest)"
        )
    if start_date > today + timedelta(days=90):
        raise ImplausibleValue("start_date", "a plan starts within 90 days")


def _prescribing(
    access: Access, patient_id: str, medication_id: str, now: datetime
) -> tuple[Patient, Monograph, MedicationFactsRow | None, RenalResult | None]:
    patient = _load_patient(access, patient_id, (Permission.CREATE, PLAN))
    mono = load_monograph(medication_id)
    facts_row = _latest_facts(access, patient.id)
    if facts_row is not None:
        access.audit(
            "read", resource_type=FACTS, resource_id=f"facts-{facts_row.id}", patient_id=patient.id
        )
    renal = renal_of(patient, facts_row, now)
    return patient, mono, facts_row, renal


def create_titration(
    access: Access,
    patient_id: str,
    medication_id: str,
    *,
    start: str | Dose,
    step_mg: float,
    every_days: int,
    target: str | Dose,
    start_date: date,
    protocol_max_mg_day: float | None = None,
    now: datetime | None = None,
) -> DosePlanRow:
    """A titration bounded by the maximum, the program's protocol and the stored kidney function."""
    now = now or utcnow()
    patient, mono, facts_row, renal = _prescribing(access, patient_id, medication_id, now)
    _check_start(start_date, patient, now)
    plan = titration(
        mono.id,
        start,
        step_mg,
        every_days,
        target,
        start_date,
        renal=renal,
        protocol_max_mg_day=protocol_max_mg_day,
    )
    inputs = {
        "start": str(start),
        "step_mg": step_mg,
        "every_days": every_days,
        "target": str(target),
        "start_date": start_date.isoformat(),
        "protocol_max_mg_day": protocol_max_mg_day,
    }
    return _store_plan(access, patient, plan, inputs, protocol_max_mg_day, renal, facts_row, now)


def create_maintenance(
    access: Access,
    patient_id: str,
    medication_id: str,
    *,
    dose: str | Dose,
    start_date: date,
    protocol_max_mg_day: float | None = None,
    now: datetime | None = None,
) -> DosePlanRow:
    now = now or utcnow()
    patient, mono, facts_row, renal = _prescribing(access, patient_id, medication_id, now)
    _check_start(start_date, patient, now)
    plan = maintenance(
        mono.id, dose, start_date, renal=renal, protocol_max_mg_day=protocol_max_mg_day
    )
    inputs = {
        "dose": str(dose),
        "start_date": start_date.isoformat(),
        "protocol_max_mg_day": protocol_max_mg_day,
    }
    return _store_plan(access, patient, plan, inputs, protocol_max_mg_day, renal, facts_row, now)


def create_taper(
    access: Access,
    patient_id: str,
    medication_id: str,
    *,
    from_dose: str | Dose | None,
    over_days: int,
    start_date: date,
    now: datetime | None = None,
) -> DosePlanRow:
    """A taper to stopping. Without `from_dose`, it starts from the current plan's dose on the
    taper's first day (which must then be the same at every slot)."""
    now = now or utcnow()
    patient, mono, facts_row, renal = _prescribing(access, patient_id, medication_id, now)
    _check_start(start_date, patient, now)
    if from_dose is None or (isinstance(from_dose, str) and not from_dose.strip()):
        current = _active_same(access, patient, mono.id, _today(patient, now))
        text = current_dose_text(current[-1], start_date) if current else None
        if text is None:
            raise ImplausibleValue("from_dose", "give the dose to taper from, e.g. 20mg-tid")
        from_dose = text
    plan = taper(mono.id, from_dose, over_days, start_date, renal=renal)
    inputs = {
        "from_dose": str(from_dose),
        "over_days": over_days,
        "start_date": start_date.isoformat(),
    }
    return _store_plan(access, patient, plan, inputs, None, renal, facts_row, now)


def create_from_steps(
    access: Access,
    patient_id: str,
    medication_id: str,
    steps: Sequence[StepSpec],
    *,
    protocol_max_mg_day: float | None = None,
    now: datetime | None = None,
) -> DosePlanRow:
    """A plan written out step by step (a FHIR MedicationRequest), checked by the same core."""
    now = now or utcnow()
    patient, mono, facts_row, renal = _prescribing(access, patient_id, medication_id, now)
    if steps:
        _check_start(steps[0].start, patient, now)
    plan = plan_from_steps(mono.id, steps, renal=renal, protocol_max_mg_day=protocol_max_mg_day)
    inputs = {
        "written_as": "steps",
        "steps": len(steps),
        "protocol_max_mg_day": protocol_max_mg_day,
    }
    return _store_plan(access, patient, plan, inputs, protocol_max_mg_day, renal, facts_row, now)


def get_plan(access: Access, plan_id: int, patient_id: str | None = None) -> DosePlanRow:
    row = access.db.get(DosePlanRow, plan_id)
    if row is None or (patient_id is not None and row.patient_id != patient_id):
        raise NotFound(f"MedicationRequest/{plan_id} is not known")
    access.require(
        Permission.READ, PLAN, PatientRef(row.patient_id, row.program_id), resource_id=str(plan_id)
    )
    access.audit("read", resource_type=PLAN, resource_id=str(row.id), patient_id=row.patient_id)
    return row


def list_plans(access: Access, patient: Patient) -> list[DosePlanRow]:
    access.require(Permission.SEARCH, PLAN, patient_ref(patient))
    rows = list(
        access.db.scalars(
            select(DosePlanRow)
            .where(DosePlanRow.patient_id == patient.id)
            .order_by(DosePlanRow.start_date.desc(), DosePlanRow.id.desc())
        )
    )
    access.audit("search", resource_type=PLAN, patient_id=patient.id, query=f"patient={patient.id}")
    return rows


def stop_plan(
    access: Access,
    patient_id: str,
    plan_id: int,
    *,
    stop_on: date,
    reason: str,
    now: datetime | None = None,
) -> DosePlanRow:
    """Stop a plan from `stop_on` (no doses that day). A medication that must be tapered is not
    stopped this way once it has started: the refusal says to start a taper."""
    now = now or utcnow()
    patient = _load_patient(access, patient_id, (Permission.UPDATE, PLAN))
    row = access.db.get(DosePlanRow, plan_id)
    if row is None or row.patient_id != patient.id:
        raise NotFound(f"MedicationRequest/{plan_id} is not known")
    today = _today(patient, now)
    if effective_status(row, today) != "active":
        raise ImplausibleValue("plan", f"this plan is already {effective_status(row, today)}")
    if stop_on < today:
        raise ImplausibleValue("stop_on", "cannot stop a plan in the past")
    reason = reason.strip()
    if not reason:
        raise ImplausibleValue("reason", "say why the plan is stopped")
    if len(reason) > MAX_NOTE:
        raise ImplausibleValue("reason", f"keep the reason under {MAX_NOTE} characters")
    mono = load_monograph(row.medication_id)
    disc = mono.discontinuation
    started = stop_on > row.start_date
    if started and disc is not None and disc.taper_required:
        raise PlanRefused(
            "stop_on",
            f"{mono.name} must not be stopped at once: {disc.text} Start a taper instead; it "
            "replaces this plan from its first day.",
            disc.source,
        )
    if not started and row.replaces_id is not None and disc is not None and disc.taper_required:
        raise PlanRefused(
            "stop_on",
            f"This plan took over from plan {row.replaces_id}; cancelling it would stop "
            f"{mono.name} at once. Write the plan that should follow instead (a taper, or a new dose).",
            disc.source,
        )
    new_end = max(row.start_date, stop_on)
    row.ends_on = new_end if row.ends_on is None else min(row.ends_on, new_end)
    row.status = "stopped"
    row.status_reason = reason
    row.status_changed_at = now
    row.status_changed_by = access.actor.user_id
    access.db.flush()
    access.audit(
        "update",
        resource_type=PLAN,
        resource_id=str(row.id),
        patient_id=patient.id,
        detail=f"stopped from {stop_on.isoformat()}: {reason}"[:2000],
    )
    return row


# --------------------------------------------------------------------------- the calendar


@dataclass
class PlanView:
    row: DosePlanRow
    plan: DosePlan
    monograph: Monograph
    status: str
    doses: list[CalendarDose]
    weeks: list[list[CalendarDay | None]]
    overall: AdherenceSummary
    last_7_days: AdherenceSummary
    missed_run: MissedRunAlert | None
    today: date
    today_doses: PlanDay | None
    recordable: list[CalendarDose] = field(default_factory=list)
    administrations: list[MedicationAdministrationRow] = field(default_factory=list)
    statements: list[MedicationStatementRow] = field(default_factory=list)


def _records(
    access: Access, row: DosePlanRow
) -> tuple[list[MedicationAdministrationRow], list[MedicationStatementRow], list[DoseRecord]]:
    admins = list(
        access.db.scalars(
            select(MedicationAdministrationRow)
            .where(MedicationAdministrationRow.dose_plan_id == row.id)
            .order_by(MedicationAdministrationRow.administered_at)
        )
    )
    statements = list(
        access.db.scalars(
            select(MedicationStatementRow)
            .where(MedicationStatementRow.dose_plan_id == row.id)
            .order_by(MedicationStatementRow.due_at)
        )
    )
    dues = dict(
        access.db.execute(
            select(AdministrationDueRow.administration_id, AdministrationDueRow.due_at).where(
                AdministrationDueRow.dose_plan_id == row.id
            )
        ).all()
    )
    records = [
        DoseRecord(
            "administration", a.id, a.status == "completed", a.administered_at, dues.get(a.id)
        )
        for a in admins
    ]
    records += [DoseRecord("statement", s.id, s.taken, s.due_at, s.due_at) for s in statements]
    return admins, statements, records


def _doses(
    row: DosePlanRow, patient: Patient, through: date, records: Iterable[DoseRecord], now: datetime
) -> list[CalendarDose]:
    tz = ZoneInfo(patient.program.time_zone)
    planned = planned_through(plan_of(row), through, tz, row.ends_on)
    return dose_states(planned, records, now, tz)


def plan_view(
    access: Access,
    patient: Patient,
    row: DosePlanRow,
    now: datetime | None = None,
    weeks_back: int | None = 6,
) -> PlanView:
    """Everything the chart shows about one plan. The caller has read the plan (get/list)."""
    now = now or utcnow()
    tz = ZoneInfo(patient.program.time_zone)
    today = now.astimezone(tz).date()
    plan = plan_of(row)
    access.require(Permission.SEARCH, ADMINISTRATION, patient_ref(patient))
    access.require(Permission.SEARCH, STATEMENT, patient_ref(patient))
    admins, statements, records = _records(access, row)
    access.audit(
        "search", resource_type=ADMINISTRATION, patient_id=patient.id, query=f"dose_plan={row.id}"
    )
    access.audit(
        "search", resource_type=STATEMENT, patient_id=patient.id, query=f"dose_plan={row.id}"
    )
    last_planned = plan.end_date
    if plan.continues and row.ends_on is None:
        last_planned = max(plan.end_date, today + timedelta(days=7))
    if row.ends_on is not None:
        last_planned = min(last_planned, row.ends_on - timedelta(days=1))
    doses = _doses(row, patient, last_planned, records, now)
    first = row.start_date
    if weeks_back is not None:
        anchor = min(today, last_planned)
        first = max(first, anchor - timedelta(days=anchor.weekday() + 7 * (weeks_back - 1)))
    weeks = calendar_weeks(doses, first, max(last_planned, first), today, tz)
    since_7 = datetime.combine(today - timedelta(days=6), datetime.min.time(), tzinfo=tz)
    recordable = [d for d in doses if now - RECORD_BACK <= d.planned.due_at <= now + RECORD_AHEAD]
    return PlanView(
        row=row,
        plan=plan,
        monograph=load_monograph(row.medication_id),
        status=effective_status(row, today),
        doses=doses,
        weeks=weeks,
        overall=summarise(doses, now),
        last_7_days=summarise(doses, now, since=since_7),
        missed_run=check_missed_run(row.medication_id, doses, now)
        if row.status == "active"
        else None,
        today=today,
        today_doses=dose_on(row, today),
        recordable=recordable,
        administrations=admins,
        statements=statements,
    )


def _planned_dose(
    row: DosePlanRow, patient: Patient, due_at: datetime, now: datetime
) -> CalendarDose:
    tz = ZoneInfo(patient.program.time_zone)
    day = due_at.astimezone(tz).date()
    for dose in _doses(row, patient, day, (), now):
        if dose.planned.due_at == due_at:
            return dose
    raise ImplausibleValue("due_at", "choose one of the plan's planned doses")


def _check_record_time(name: str, when: datetime, now: datetime) -> None:
    if when.tzinfo is None:
        raise ImplausibleValue(name, "needs a time zone")
    if when > now + RECORD_AHEAD:
        raise ImplausibleValue(name, "cannot be in the future")
    if when < now - RECORD_BACK:
        raise ImplausibleValue(name, f"doses are recorded within {RECORD_BACK.days} days")


def _plan_for_record(
    access: Access, patient_id: str, plan_id: int, *wanted: tuple[Permission, str]
) -> tuple[Patient, DosePlanRow]:
    patient = _load_patient(access, patient_id, *wanted)
    row = access.db.get(DosePlanRow, plan_id)
    if row is None or row.patient_id != patient.id:
        raise NotFound(f"MedicationRequest/{plan_id} is not known")
    return patient, row


def record_administration(
    access: Access,
    patient_id: str,
    plan_id: int,
    *,
    due_at: datetime,
    given: bool,
    administered_at: datetime,
    reason: str = "",
    note: str = "",
    now: datetime | None = None,
) -> MedicationAdministrationRow:
    """A nurse records a planned dose as given (or not given, with the reason)."""
    now = now or utcnow()
    patient, row = _plan_for_record(
        access, patient_id, plan_id, (Permission.CREATE, ADMINISTRATION)
    )
    _check_record_time("administered_at", administered_at, now)
    planned = _planned_dose(row, patient, due_at, now)
    if abs(administered_at - due_at) > GIVEN_WINDOW:
        raise ImplausibleValue(
            "administered_at",
            f"is more than {GIVEN_WINDOW.seconds // 3600} hours from the "
            "planned time of this dose; check the dose and the time",
        )
    if not given and not reason.strip():
        raise ImplausibleValue("reason", "say why the dose was not given")
    if len(note) > MAX_NOTE or len(reason) > MAX_NOTE:
        raise ImplausibleValue("note", f"keep notes under {MAX_NOTE} characters")
    mono = load_monograph(row.medication_id)
    admin = MedicationAdministrationRow(
        patient_id=patient.id,
        program_id=patient.program_id,
        medication_id=row.medication_id,
        medication_text=f"{mono.name} {planned.planned.mg:g} mg",
        dose_value=planned.planned.mg,
        dose_unit="mg",
        route=mono.dosing.route or "oral",
        status="completed" if given else "not-done",
        status_reason=reason.strip(),
        indication="",
        administered_at=administered_at,
        performer_id=access.actor.user_id,
        dose_plan_id=row.id,
        note=note.strip(),
        recorded_at=now,
    )
    access.db.add(admin)
    access.db.flush()
    access.db.add(
        AdministrationDueRow(administration_id=admin.id, dose_plan_id=row.id, due_at=due_at)
    )
    access.db.flush()
    access.audit(
        "create",
        resource_type=ADMINISTRATION,
        resource_id=str(admin.id),
        patient_id=patient.id,
        detail=f"dose plan {row.id}, {planned.planned.time_slot} {planned.planned.mg:g} mg, "
        f"{'given' if given else 'not given'}",
    )
    raise_missed_dose_alert(access, patient, row, now)
    return admin


def record_statement(
    access: Access,
    patient_id: str,
    plan_id: int,
    *,
    due_at: datetime,
    taken: bool,
    reason: str = "",
    now: datetime | None = None,
) -> MedicationStatementRow:
    """The patient reports a planned dose taken or missed. A later report replaces the earlier."""
    now = now or utcnow()
    # A report may create or replace one: both permissions are asked before anything is written.
    patient, row = _plan_for_record(
        access, patient_id, plan_id, (Permission.CREATE, STATEMENT), (Permission.UPDATE, STATEMENT)
    )
    _check_record_time("due_at", due_at, now)
    planned = _planned_dose(row, patient, due_at, now)
    if len(reason) > MAX_NOTE:
        raise ImplausibleValue("reason", f"keep the reason under {MAX_NOTE} characters")
    existing = access.db.scalar(
        select(MedicationStatementRow).where(
            MedicationStatementRow.dose_plan_id == row.id, MedicationStatementRow.due_at == due_at
        )
    )
    if existing is None:
        statement = MedicationStatementRow(
            patient_id=patient.id,
            program_id=patient.program_id,
            dose_plan_id=row.id,
            medication_id=row.medication_id,
            due_at=due_at,
            time_slot=planned.planned.time_slot,
            dose_mg=planned.planned.mg,
            taken=taken,
            reason=reason.strip(),
            reported_at=now,
            recorded_by=access.actor.user_id,
        )
        access.db.add(statement)
        operation = "create"
    else:
        statement = existing
        statement.taken, statement.reason = taken, reason.strip()
        statement.reported_at, statement.recorded_by = now, access.actor.user_id
        operation = "update"
    access.db.flush()
    access.audit(
        operation,
        resource_type=STATEMENT,
        resource_id=str(statement.id),
        patient_id=patient.id,
        detail=f"dose plan {row.id}, {planned.planned.time_slot}: {'taken' if taken else 'missed'}",
    )
    raise_missed_dose_alert(access, patient, row, now)
    return statement


# --------------------------------------------------------------------------- missed doses


def raise_missed_dose_alert(
    access: Access, patient: Patient, row: DosePlanRow, now: datetime
) -> Alert | None:
    """Raise the monograph's missed-run alert for the prescriber, once per run of missed doses."""
    if effective_status(row, _today(patient, now)) != "active":
        return None
    _admins, _statements, records = _records(access, row)
    doses = _doses(row, patient, _today(patient, now), records, now)
    found = check_missed_run(row.medication_id, doses, now)
    if found is None:
        return None
    already = access.db.scalar(
        select(Alert.id).where(
            Alert.kind == "missed_doses",
            Alert.related_type == PLAN,
            Alert.related_id == str(row.id),
            Alert.raised_at >= found.since,
        )
    )
    if already is not None:
        return None
    mono = load_monograph(row.medication_id)
    tz = ZoneInfo(patient.program.time_zone)
    title = f"{mono.name}: {found.missed} doses in a row missed or not recorded"
    detail = (
        f"{found.reason} From {found.since.astimezone(tz):%d %b %H:%M} to "
        f"{found.last_missed.astimezone(tz):%d %b %H:%M} ({patient.program.time_zone}), no dose of "
        f"plan {row.id} was recorded as given or taken (a dose with no record 12 hours after it "
        f"was due counts as missed)."
    )
    if found.threshold_unverified and found.note:
        detail += f" Threshold {found.threshold} is unverified: {found.note}"
    source = "; ".join(s.citation for s in found.source)
    return _raise(access, patient, row, title, detail, source, now)


def _raise(
    access: Access,
    patient: Patient,
    row: DosePlanRow,
    title: str,
    detail: str,
    source: str,
    now: datetime,
) -> Alert:
    kwargs: dict[str, Any] = dict(
        patient_id=patient.id,
        program_id=patient.program_id,
        kind="missed_doses",
        severity="high",
        title=title,
        detail=detail,
        source=source,
        rule_id=f"{row.medication_id}.missed_run",
        related_type=PLAN,
        related_id=str(row.id),
        for_role="prescriber",
        raised_at=now,
    )
    try:
        from tandem.alerts.service import raise_alert
    except ImportError:  # the alert service is the alerts domain's; the table is shared
        alert = Alert(acknowledgement_note="", **kwargs)
        access.db.add(alert)
        access.db.flush()
        access.audit(
            "create",
            resource_type="Alert",
            resource_id=str(alert.id),
            patient_id=patient.id,
            detail=title,
        )
        return alert
    return raise_alert(access, **kwargs)


def sweep_missed_doses(access: Access, now: datetime | None = None) -> list[Alert]:
    """Check every active plan the actor may see for a missed run (run it on a schedule)."""
    now = now or utcnow()
    access.require(Permission.SEARCH, PLAN)
    stmt = select(DosePlanRow).where(
        DosePlanRow.status == "active",
        visible(access, PLAN, DosePlanRow.patient_id, DosePlanRow.program_id),
    )
    raised = []
    for row in access.db.scalars(stmt).all():
        patient = access.db.get(Patient, row.patient_id)
        assert patient is not None
        alert = raise_missed_dose_alert(access, patient, row, now)
        if alert is not None:
            raised.append(alert)
    access.audit("search", resource_type=PLAN, query="missed-dose sweep")
    return raised


# --------------------------------------------------------------------------- side effects


def record_side_effect(
    access: Access,
    patient_id: str,
    *,
    medication_id: str,
    effect: str,
    severity: str,
    onset_at: datetime,
    detail: str = "",
    plan_id: int | None = None,
    now: datetime | None = None,
) -> SideEffectRow:
    now = now or utcnow()
    patient = _load_patient(access, patient_id, (Permission.CREATE, SIDE_EFFECT))
    mono = load_monograph(medication_id)
    if effect not in SIDE_EFFECTS:
        raise ImplausibleValue("effect", f"choose one of {', '.join(SIDE_EFFECTS)}")
    if severity not in SEVERITIES:
        raise ImplausibleValue("severity", f"must be one of {', '.join(SEVERITIES)}")
    if effect == "other" and not detail.strip():
        raise ImplausibleValue("detail", "describe the side effect")
    if len(detail) > MAX_NOTE:
        raise ImplausibleValue("detail", f"keep the description under {MAX_NOTE} characters")
    if onset_at.tzinfo is None:
        raise ImplausibleValue("onset_at", "needs a time zone")
    if onset_at > now + timedelta(minutes=5):
        raise ImplausibleValue("onset_at", "cannot be in the future")
    if plan_id is not None:
        plan = access.db.get(DosePlanRow, plan_id)
        if plan is None or plan.patient_id != patient.id or plan.medication_id != mono.id:
            raise ImplausibleValue("plan", "choose one of this patient's plans of that medication")
    row = SideEffectRow(
        patient_id=patient.id,
        program_id=patient.program_id,
        medication_id=mono.id,
        dose_plan_id=plan_id,
        effect=effect,
        severity=severity,
        detail=detail.strip(),
        onset_at=onset_at,
        recorded_at=now,
        recorded_by=access.actor.user_id,
    )
    access.db.add(row)
    access.db.flush()
    access.audit(
        "create",
        resource_type=SIDE_EFFECT,
        resource_id=str(row.id),
        patient_id=patient.id,
        detail=f"{mono.id}: {effect} ({severity})",
    )
    return row


def list_side_effects(access: Access, patient: Patient, limit: int = 50) -> list[SideEffectRow]:
    access.require(Permission.SEARCH, SIDE_EFFECT, patient_ref(patient))
    rows = list(
        access.db.scalars(
            select(SideEffectRow)
            .where(SideEffectRow.patient_id == patient.id)
            .order_by(SideEffectRow.onset_at.desc(), SideEffectRow.id.desc())
            .limit(limit)
        )
    )
    access.audit(
        "search", resource_type=SIDE_EFFECT, patient_id=patient.id, query=f"patient={patient.id}"
    )
    return rows


def open_missed_dose_alerts(access: Access, patient: Patient) -> list[Alert]:
    access.require(Permission.SEARCH, "Alert", patient_ref(patient))
    rows = list(
        access.db.scalars(
            select(Alert)
            .where(
                Alert.patient_id == patient.id,
                Alert.kind == "missed_doses",
                Alert.acknowledged_at.is_(None),
            )
            .order_by(Alert.raised_at.desc())
        )
    )
    access.audit("search", resource_type="Alert", patient_id=patient.id, query="missed_doses open")
    return rows


# --------------------------------------------------------------------------- API searches


def search(
    access: Access,
    resource_type: str,
    model: Any,
    order: Sequence[Any],
    patient_id: str | None,
    count: int,
    offset: int,
    query_text: str = "",
    extra: Sequence[Any] = (),
) -> Page[Any]:
    """A page of `model` rows the actor may see, optionally for one patient, through the
    data-access layer (refused, not emptied, when that patient is out of reach)."""
    return search_page(
        access,
        resource_type,
        select(model).where(*extra),
        patient_column=model.patient_id,
        program_column=model.program_id,
        patient_of=lambda row: row.patient_id,
        order=order,
        patient_id=patient_id,
        count=count,
        offset=offset,
        query_text=query_text,
    )


def get_row(access: Access, resource_type: str, model: Any, row_id: int) -> Any:
    return read_row(access, resource_type, model, row_id)


__all__ = [
    "ADMINISTRATION",
    "FACTS",
    "PLAN",
    "SEVERITIES",
    "SIDE_EFFECT",
    "SIDE_EFFECTS",
    "STATEMENT",
    "FactsInput",
    "MedicationInputError",
    "Page",
    "PlanView",
    "Screening",
    "create_from_steps",
    "create_maintenance",
    "create_taper",
    "create_titration",
    "current_facts",
    "dose_on",
    "effective_status",
    "facts_history",
    "get_plan",
    "get_row",
    "list_plans",
    "list_side_effects",
    "open_missed_dose_alerts",
    "patient_facts",
    "plan_of",
    "plan_view",
    "raise_missed_dose_alert",
    "record_administration",
    "record_facts",
    "record_side_effect",
    "record_statement",
    "screen_patient",
    "search",
    "stop_plan",
    "sweep_missed_doses",
]


def sweep_missed_doses_everywhere(sessions: sessionmaker[Session], now: datetime) -> int:
    """The scheduled job: `sweep_missed_doses` over every program. Returns alerts raised."""
    with session_scope(sessions) as db:
        return len(sweep_missed_doses(system_access(db, sessions, "medications.missed_doses"), now))
