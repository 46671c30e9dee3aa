"""Screening facts in storage: the versions a nurse records (weight, kidney and liver tests,
QTc, pregnancy, substances taken...), the pure core's `PatientFacts` built from them, and the
screening of one medication against them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from tandem.access.guard import Access
from tandem.access.policy import Permission
from tandem.access.queries import load_patient, patient_ref
from tandem.clock import program_today, utcnow
from tandem.medications.monograph import load_monograph
from tandem.medications.renal import RenalResult, Sex
from tandem.medications.resources import FACTS
from tandem.medications.safety import PatientFacts, ScreeningResult, screen
from tandem.medications.search import patient_rows
from tandem.medications.storage import MedicationFactsRow
from tandem.medications.validation import (
    BOOL_FACTS,
    FactsInput,
    check_facts,
    kidney_sex_of,
    weight_basis_of,
)
from tandem.patients.records import age_on
from tandem.storage.models import Patient

__all__ = [
    "FACTS",
    "FactsInput",
    "Screening",
    "current_facts",
    "facts_history",
    "kidney_sex",
    "patient_facts",
    "record_facts",
    "renal_of",
    "screen_patient",
]

# The stored columns copied from the checked input as they are.
_COPIED = (
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
    "hepatic_impairment",
    "ecg_on",
    "last_opioid_use_on",
    "last_drink_at",
    *BOOL_FACTS,
)


def kidney_sex(patient: Patient, row: MedicationFactsRow | None) -> Sex | None:
    """The sex the kidney equations use: the record's gender when female or male, else the
    value recorded with the facts."""
    if patient.gender in ("female", "male"):
        return kidney_sex_of(patient.gender)
    return kidney_sex_of(row.sex_for_kidney) if row is not None else None


def patient_facts(patient: Patient, row: MedicationFactsRow | None, now: datetime) -> PatientFacts:
    """The pure core's PatientFacts from the chart (age from the birth date) and stored facts.
    Times since the last opioid and drink are counted to `now`, so they stay true as time passes."""
    today = program_today(patient.program.time_zone, now)
    age = age_on(patient.birth_date, today)
    sex = kidney_sex(patient, row)
    if row is None:
        return PatientFacts(age=age, sex=sex)
    taking = None if row.taking is None else frozenset(t for t in row.taking.split(",") if t)
    opioid_free = None if row.last_opioid_use_on is None else (today - row.last_opioid_use_on).days
    since_drink = None
    if row.last_drink_at is not None:
        since_drink = max(0.0, (now - row.last_drink_at).total_seconds() / 3600)
    return PatientFacts(
        age=age,
        sex=sex,
        weight_kg=row.weight_kg,
        creatinine_mg_dl=row.creatinine_mg_dl,
        weight_basis=weight_basis_of(row.weight_basis),
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
        severe_heart_disease=row.severe_heart_disease,
        hepatic_impairment=row.hepatic_impairment,
        qtc_ms=row.qtc_ms,
        qtc_prolonged=row.qtc_prolonged,
        taking=taking,
        opioid_free_days=opioid_free if opioid_free is None or opioid_free >= 0 else None,
        opioid_withdrawal_signs=row.opioid_withdrawal_signs,
        opioid_positive_test=row.opioid_positive_test,
        intoxicated=row.intoxicated,
        hours_since_last_drink=since_drink,
    )


def current_facts(access: Access, patient: Patient) -> MedicationFactsRow | None:
    """The patient's newest screening facts (None if never recorded): one record of a chart the
    caller has loaded, read when the policy allows it and audited as a read."""
    access.require(Permission.READ, FACTS, patient_ref(patient))
    row = access.db.scalar(
        select(MedicationFactsRow)
        .where(MedicationFactsRow.patient_id == patient.id)
        .order_by(MedicationFactsRow.recorded_at.desc(), MedicationFactsRow.id.desc())
        .limit(1)
    )
    if row is not None:
        access.audit(
            "read", resource_type=FACTS, resource_id=f"facts-{row.id}", patient_id=patient.id
        )
    return row


def facts_history(access: Access, patient: Patient, limit: int = 20) -> list[MedicationFactsRow]:
    """The patient's recorded versions of the facts, newest first."""
    return patient_rows(
        access,
        FACTS,
        MedicationFactsRow,
        select(MedicationFactsRow)
        .order_by(MedicationFactsRow.recorded_at.desc(), MedicationFactsRow.id.desc())
        .limit(limit),
        patient,
        "medication facts history",
    )


def record_facts(
    access: Access, patient_id: str, values: FactsInput, now: datetime | None = None
) -> MedicationFactsRow:
    """Save a new version of the patient's screening facts. Impossible values are refused."""
    now = now or utcnow()
    patient = load_patient(access, patient_id, (Permission.CREATE, FACTS))
    checked = check_facts(
        values,
        today=program_today(patient.program.time_zone, now),
        now=now,
        birth_date=patient.birth_date,
        gender=patient.gender,
    )
    row = MedicationFactsRow(
        patient_id=patient.id,
        program_id=patient.program_id,
        recorded_at=now,
        recorded_by=access.actor.user_id,
        note=checked.note,
        taking=None if checked.taking is None else ",".join(checked.taking),
        **{name: getattr(checked, name) for name in _COPIED},
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
