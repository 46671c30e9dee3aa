"""Medication records shared by detox and the medication plan: a dose given (MedicationAdministration).

Detox records as-needed doses linked to the assessment that prompted them; the medication plan
records scheduled doses linked to the dose plan. Below it, the medication plan's own tables:
screening facts, dose plans (MedicationRequest), patient reports (MedicationStatement) and side
effects (AdverseEvent). Tables hold our values, not FHIR JSON.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from tandem.storage.db import UTCDateTime, utcnow
from tandem.storage.models import Base


class MedicationAdministrationRow(Base):
    __tablename__ = "medication_administrations"
    __table_args__ = (
        Index("ix_medadmin_patient_at", "patient_id", "administered_at"),
        # A plan's doses given around a time (the unit's list, the missed-dose sweep).
        Index("ix_medadmin_plan_at", "dose_plan_id", "administered_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id", ondelete="RESTRICT"))
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id", ondelete="RESTRICT"))
    medication_id: Mapped[str] = mapped_column(String(60))  # monograph id, e.g. baclofen, lorazepam
    medication_text: Mapped[str] = mapped_column(String(200))
    dose_value: Mapped[float] = mapped_column(Numeric(10, 3))
    dose_unit: Mapped[str] = mapped_column(String(20), default="mg")
    route: Mapped[str] = mapped_column(String(40), default="oral")
    status: Mapped[str] = mapped_column(String(20), default="completed")  # completed | not-done
    status_reason: Mapped[str] = mapped_column(Text, default="")
    indication: Mapped[str] = mapped_column(Text, default="")
    administered_at: Mapped[datetime] = mapped_column(UTCDateTime)
    performer_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    # What prompted it: a withdrawal assessment (as-needed dose) or a dose plan (scheduled dose).
    assessment_id: Mapped[int | None] = mapped_column(
        ForeignKey(
            "withdrawal_assessments.id", ondelete="RESTRICT", name="fk_medadmin_assessment_id"
        ),
        nullable=True,
        index=True,
    )
    dose_plan_id: Mapped[int | None] = mapped_column(
        ForeignKey(
            "medication_dose_plans.id", ondelete="RESTRICT", name="fk_medadmin_dose_plan_id"
        ),
        nullable=True,
    )
    note: Mapped[str] = mapped_column(Text, default="")
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # A dose a guard would refuse (a second as-needed dose for one assessment, a dose over the
    # protocol's 24-hour maximum), given on a prescriber's override: who, and why.
    override_by: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="RESTRICT", name="fk_medadmin_override_by"),
        nullable=True,
    )
    # Server default only: bulk loads and older revisions' inserts leave it out.
    override_reason: Mapped[str] = mapped_column(Text, server_default="")


# --- the medication plan's own tables ---------------------------------------------------------


class MedicationFactsRow(Base):
    """What is known about a patient for medication safety screening, as recorded at one time.

    Append-only: each save adds a row, and the newest row is the patient's current facts, so
    the record shows who recorded what and when. None means not recorded, never "no".
    """

    __tablename__ = "medication_facts"
    __table_args__ = (Index("ix_medication_facts_patient_at", "patient_id", "recorded_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id", ondelete="RESTRICT"))
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id", ondelete="RESTRICT"))
    # The sex the kidney equations use (female | male), when the record's gender is neither.
    sex_for_kidney: Mapped[str | None] = mapped_column(String(10), nullable=True)
    weight_kg: Mapped[float | None] = mapped_column(Numeric(6, 2, asdecimal=False), nullable=True)
    weight_basis: Mapped[str] = mapped_column(String(10), default="actual")  # actual|ideal|adjusted
    ideal_weight_kg: Mapped[float | None] = mapped_column(
        Numeric(6, 2, asdecimal=False), nullable=True
    )
    weighed_on: Mapped[date | None] = mapped_column(Date, nullable=True)
    creatinine_mg_dl: Mapped[float | None] = mapped_column(
        Numeric(6, 3, asdecimal=False), nullable=True
    )
    creatinine_on: Mapped[date | None] = mapped_column(Date, nullable=True)
    on_dialysis: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    pregnant: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    breastfeeding: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    seizure_history: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    psychosis_history: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    stroke_history: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    respiratory_disease: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    alt_u_l: Mapped[float | None] = mapped_column(Numeric(7, 1, asdecimal=False), nullable=True)
    ast_u_l: Mapped[float | None] = mapped_column(Numeric(7, 1, asdecimal=False), nullable=True)
    liver_tests_on: Mapped[date | None] = mapped_column(Date, nullable=True)
    acute_hepatitis: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    liver_failure: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    severe_heart_disease: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    hepatic_impairment: Mapped[str | None] = mapped_column(String(10), nullable=True)
    qtc_ms: Mapped[float | None] = mapped_column(Numeric(5, 1, asdecimal=False), nullable=True)
    qtc_prolonged: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    ecg_on: Mapped[date | None] = mapped_column(Date, nullable=True)
    # Current medication/substance classes, comma-separated; "" = recorded none; NULL = unknown.
    taking: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_opioid_use_on: Mapped[date | None] = mapped_column(Date, nullable=True)
    opioid_withdrawal_signs: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    opioid_positive_test: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    intoxicated: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    last_drink_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    note: Mapped[str] = mapped_column(Text, default="")
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    recorded_by: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))


def plan_digest(plan: dict[str, Any]) -> str:
    """A digest of a stored calendar's content: the key its parsed form is kept under in each
    process (`plans.plans_by_id`), so a list of plans need not read the calendars it has
    already parsed."""
    text = json.dumps(plan, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(text.encode(), digest_size=20).hexdigest()


def _plan_digest_default(context: Any) -> str | None:
    plan = context.get_current_parameters().get("plan")
    return plan_digest(plan) if isinstance(plan, dict) else None


class DosePlanRow(Base):
    """A dose plan as prescribed (a MedicationRequest): the calendar exactly as computed, the
    bounds it was checked against, and what became of it."""

    __tablename__ = "medication_dose_plans"
    __table_args__ = (Index("ix_dose_plans_patient", "patient_id", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id", ondelete="RESTRICT"))
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id", ondelete="RESTRICT"))
    medication_id: Mapped[str] = mapped_column(String(60))
    kind: Mapped[str] = mapped_column(String(20))  # titration | taper | maintenance
    status: Mapped[str] = mapped_column(
        String(20), default="active"
    )  # active | stopped | completed
    status_reason: Mapped[str] = mapped_column(Text, default="")
    start_date: Mapped[date] = mapped_column(Date)
    # The first day without doses from this plan: the taper's stop date, or the day a stopped
    # or replaced plan gave way. NULL while a continuing plan goes on.
    ends_on: Mapped[date | None] = mapped_column(Date, nullable=True)
    plan: Mapped[dict[str, Any]] = mapped_column(JSON)  # DosePlan.to_dict()
    # `plan_digest(plan)`, set on insert (a stored calendar never changes); NULL on rows a bulk
    # load wrote without it (then the calendar is read to parse it).
    plan_digest: Mapped[str | None] = mapped_column(
        String(40), nullable=True, default=_plan_digest_default
    )
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON)  # what the prescriber asked for
    protocol_max_mg_day: Mapped[float | None] = mapped_column(
        Numeric(10, 3, asdecimal=False), nullable=True
    )
    ceiling_mg_day: Mapped[float | None] = mapped_column(
        Numeric(10, 4, asdecimal=False), nullable=True
    )
    # The kidney function the plan was bounded by, and the facts it came from.
    crcl_ml_min: Mapped[float | None] = mapped_column(Numeric(6, 1, asdecimal=False), nullable=True)
    egfr: Mapped[float | None] = mapped_column(Numeric(6, 1, asdecimal=False), nullable=True)
    weight_basis: Mapped[str | None] = mapped_column(String(10), nullable=True)
    facts_id: Mapped[int | None] = mapped_column(
        ForeignKey("medication_facts.id", ondelete="RESTRICT"), nullable=True
    )
    replaces_id: Mapped[int | None] = mapped_column(
        ForeignKey("medication_dose_plans.id", ondelete="RESTRICT"), nullable=True
    )
    prescriber_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    status_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    status_changed_by: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="RESTRICT"), nullable=True
    )


class MedicationStatementRow(Base):
    """A patient's report that a planned dose was taken or missed (a MedicationStatement).

    One row per planned dose; a later report about the same dose replaces the answer and is
    audited as an update."""

    __tablename__ = "medication_statements"
    __table_args__ = (
        UniqueConstraint("dose_plan_id", "due_at"),
        Index("ix_medication_statements_patient", "patient_id", "due_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id", ondelete="RESTRICT"))
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id", ondelete="RESTRICT"))
    dose_plan_id: Mapped[int] = mapped_column(
        ForeignKey("medication_dose_plans.id", ondelete="RESTRICT")
    )
    medication_id: Mapped[str] = mapped_column(String(60))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    time_slot: Mapped[str] = mapped_column(String(20))
    dose_mg: Mapped[float] = mapped_column(Numeric(10, 3, asdecimal=False))
    taken: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(Text, default="")
    reported_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    recorded_by: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))


class SideEffectRow(Base):
    """A side effect the patient has, with its severity (an AdverseEvent)."""

    __tablename__ = "medication_side_effects"
    __table_args__ = (Index("ix_medication_side_effects_patient", "patient_id", "onset_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id", ondelete="RESTRICT"))
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id", ondelete="RESTRICT"))
    medication_id: Mapped[str] = mapped_column(String(60))
    dose_plan_id: Mapped[int | None] = mapped_column(
        ForeignKey("medication_dose_plans.id", ondelete="RESTRICT"), nullable=True
    )
    effect: Mapped[str] = mapped_column(
        String(40)
    )  # see tandem.medications.validation.SIDE_EFFECTS
    severity: Mapped[str] = mapped_column(String(10))  # mild | moderate | severe
    detail: Mapped[str] = mapped_column(Text, default="")
    onset_at: Mapped[datetime] = mapped_column(UTCDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    recorded_by: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))


class AdministrationDueRow(Base):
    """Which planned dose of a plan a nurse's administration was (the shared table records when
    a dose was given, not which planned dose it was; a late dose may fall on the next day)."""

    __tablename__ = "medication_administration_dues"
    __table_args__ = (Index("ix_medication_administration_dues_plan", "dose_plan_id", "due_at"),)

    administration_id: Mapped[int] = mapped_column(
        ForeignKey("medication_administrations.id", ondelete="RESTRICT"), primary_key=True
    )
    dose_plan_id: Mapped[int] = mapped_column(
        ForeignKey("medication_dose_plans.id", ondelete="RESTRICT")
    )
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PlanRecordsRow(Base):
    """How many times the records of a plan's doses were written: counted up by triggers
    (migration 0026) whenever a row of medication_administrations,
    medication_administration_dues or medication_statements naming the plan is inserted,
    updated or deleted, whatever wrote it (no row: never). The missed-dose sweep's stored
    checks hold only for the version they were computed from. Never written by the app; a
    table of its own, so that a record written does not rewrite the plan's wide row. A
    migration that rebuilds one of those tables on SQLite (batch mode) must create the
    triggers again (as 0013's `_sqlite_triggers` does for its table)."""

    __tablename__ = "medication_plan_records"

    dose_plan_id: Mapped[int] = mapped_column(
        ForeignKey("medication_dose_plans.id", ondelete="CASCADE"), primary_key=True
    )
    records_version: Mapped[int] = mapped_column(Integer)


class MissedDoseCheckRow(Base):
    """When the missed-dose sweep next needs to look at a plan (`missed_doses`): no missed-run
    alert can fall due before `next_check_at`, as computed at `checked_at` from the plan and
    its records as of `records_version` (`PlanRecordsRow`; 0 while it has none), on the clock of `time_zone` (the patient's program's),
    under the sweep's rules of then (`basis`). Valid only while all three still hold. Only the
    sweep reads and writes it."""

    __tablename__ = "medication_missed_checks"

    dose_plan_id: Mapped[int] = mapped_column(
        ForeignKey("medication_dose_plans.id", ondelete="CASCADE"), primary_key=True
    )
    checked_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # No missed-run alert can be due before this, while `basis` holds.
    next_check_at: Mapped[datetime] = mapped_column(UTCDateTime)
    records_version: Mapped[int] = mapped_column(Integer)
    time_zone: Mapped[str] = mapped_column(String(64))  # the clock the doses fell on
    basis: Mapped[str] = mapped_column(String(400))


class ShiftSettingRow(Base):
    """A program's nursing shift start times (e.g. "07:00 19:00", on the program's clock), for
    the unit's medication administration record; a program setting, with where it came from."""

    __tablename__ = "medication_shift_settings"

    program_id: Mapped[int] = mapped_column(
        ForeignKey("programs.id", ondelete="RESTRICT"), primary_key=True
    )
    shift_starts: Mapped[str] = mapped_column(String(100))
    source: Mapped[str] = mapped_column(String(200), default="program setting")
    set_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    set_by: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="RESTRICT"), nullable=True
    )
