"""Ongoing-therapy tables: what the patient reports and what the rehab program provides.

- `questionnaire_responses`: a self-report scale answered and scored (PHQ-9, GAD-7, PACS, AUDIT,
  DAST-10...), item answers as given, the total, band and flags the instrument engine computed.
- `recovery_check_ins`: a patient's daily check-in (from the portal or with a staff member);
  its parts land in the tables below (craving ratings, use days) and in the medication
  domain's `medication_statements` (doses taken or missed).
- `craving_ratings`: a single 0-10 craving rating for one substance.
- `use_days`: timeline follow-back, one row a patient, substance and program day: used or not,
  standard drinks for alcohol; a later report about the same day replaces the answer.
- `drug_screens` / `drug_screen_results`: a specimen collected, and its result per substance.
- `care_plans` / `care_plan_services` / `retention_events`: the services a patient receives,
  who their counselor is, and whether they are still in treatment (with the history).
- `therapy_sessions`: a scheduled session (Appointment) and whether it happened (Encounter).

Every patient-data table has `patient_id` and `program_id`, read only through
`tandem.access.queries`. Days are the program's calendar days (`tandem.clock.program_today`).
Tables hold our own values, not FHIR JSON.
"""

from __future__ import annotations

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

# Where a record came from: the patient's portal, a staff member's form, or the FHIR API.
SOURCES = ("portal", "staff", "api", "demo")


def _patient() -> Any:
    return mapped_column(ForeignKey("patients.id", ondelete="RESTRICT"))


def _program() -> Any:
    return mapped_column(ForeignKey("programs.id", ondelete="RESTRICT"))


def _user(nullable: bool = True) -> Any:
    return mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), nullable=nullable)


class QuestionnaireResponseRow(Base):
    """One self-report scale answered: answers as given, scored by the instrument engine."""

    __tablename__ = "questionnaire_responses"
    __table_args__ = (
        Index("ix_questionnaire_responses_patient", "patient_id", "instrument_id", "authored_at"),
        Index("ix_questionnaire_responses_urgent", "program_id", "urgent", "authored_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[str] = _patient()
    program_id: Mapped[int] = _program()
    instrument_id: Mapped[str] = mapped_column(String(40))
    instrument_version: Mapped[str] = mapped_column(String(20))
    answers: Mapped[dict[str, int]] = mapped_column(JSON)
    total: Mapped[int] = mapped_column(Integer)
    scheme_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    band_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    flags: Mapped[list[str]] = mapped_column(JSON, default=list)
    # A flag the care team must see at once (PHQ-9 item 9 above 0).
    urgent: Mapped[bool] = mapped_column(Boolean, default=False)
    authored_at: Mapped[datetime] = mapped_column(UTCDateTime)
    day: Mapped[date] = mapped_column(Date)
    source: Mapped[str] = mapped_column(String(10))
    check_in_id: Mapped[int | None] = mapped_column(
        ForeignKey("recovery_check_ins.id", ondelete="RESTRICT"), nullable=True
    )
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    recorded_by: Mapped[int | None] = _user()


class CheckInRow(Base):
    """A patient's daily check-in: how they feel in one word, side effects, a note."""

    __tablename__ = "recovery_check_ins"
    __table_args__ = (Index("ix_recovery_check_ins_patient", "patient_id", "day"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[str] = _patient()
    program_id: Mapped[int] = _program()
    day: Mapped[date] = mapped_column(Date)
    checked_in_at: Mapped[datetime] = mapped_column(UTCDateTime)
    mood: Mapped[str | None] = mapped_column(String(40), nullable=True)
    side_effects: Mapped[str] = mapped_column(Text, default="")
    note: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(String(10))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    recorded_by: Mapped[int | None] = _user()
    # How much the side effects bother the patient (mild | moderate | severe; migration 0019).
    side_effect_severity: Mapped[str | None] = mapped_column(String(10), nullable=True)


class CravingRatingRow(Base):
    """A single 0-10 craving rating for one substance (0 none, 10 the strongest imaginable)."""

    __tablename__ = "craving_ratings"
    # The rating and program beside (patient_id, day): the caseload's "craving rising" flag and
    # the timeline's craving lane read the index alone (migration 0026).
    __table_args__ = (
        Index("ix_craving_ratings_patient_rating", "patient_id", "day", "program_id", "rating"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[str] = _patient()
    program_id: Mapped[int] = _program()
    substance: Mapped[str] = mapped_column(String(20))
    rating: Mapped[int] = mapped_column(Integer)
    rated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    day: Mapped[date] = mapped_column(Date)
    source: Mapped[str] = mapped_column(String(10))
    check_in_id: Mapped[int | None] = mapped_column(
        ForeignKey("recovery_check_ins.id", ondelete="RESTRICT"), nullable=True
    )
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    recorded_by: Mapped[int | None] = _user()


class UseDayRow(Base):
    """Timeline follow-back: on this program day, did the patient use this substance?"""

    __tablename__ = "use_days"
    __table_args__ = (
        UniqueConstraint("patient_id", "substance", "day", name="uq_use_days_patient_day"),
        Index("ix_use_days_patient_day", "patient_id", "day"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[str] = _patient()
    program_id: Mapped[int] = _program()
    day: Mapped[date] = mapped_column(Date)
    substance: Mapped[str] = mapped_column(String(20))
    used: Mapped[bool] = mapped_column(Boolean)
    # Alcohol only: standard drinks that day (None when not asked or not alcohol).
    standard_drinks: Mapped[float | None] = mapped_column(
        Numeric(5, 1, asdecimal=False), nullable=True
    )
    source: Mapped[str] = mapped_column(String(10))
    check_in_id: Mapped[int | None] = mapped_column(
        ForeignKey("recovery_check_ins.id", ondelete="RESTRICT"), nullable=True
    )
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    recorded_by: Mapped[int | None] = _user()


class DrugScreenRow(Base):
    """A specimen collected for a drug screen (urine unless said otherwise)."""

    __tablename__ = "drug_screens"
    __table_args__ = (Index("ix_drug_screens_patient", "patient_id", "day"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[str] = _patient()
    program_id: Mapped[int] = _program()
    collected_at: Mapped[datetime] = mapped_column(UTCDateTime)
    day: Mapped[date] = mapped_column(Date)
    specimen: Mapped[str] = mapped_column(String(20), default="urine")
    note: Mapped[str] = mapped_column(Text, default="")
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    recorded_by: Mapped[int | None] = _user()


class DrugScreenResultRow(Base):
    """One substance's result of a screen: positive, negative or invalid."""

    __tablename__ = "drug_screen_results"
    __table_args__ = (
        UniqueConstraint("screen_id", "substance", name="uq_drug_screen_results_substance"),
        Index("ix_drug_screen_results_patient", "patient_id", "result"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    screen_id: Mapped[int] = mapped_column(ForeignKey("drug_screens.id", ondelete="RESTRICT"))
    patient_id: Mapped[str] = _patient()
    program_id: Mapped[int] = _program()
    substance: Mapped[str] = mapped_column(String(30))
    result: Mapped[str] = mapped_column(String(10))  # positive | negative | invalid


class CarePlanRow(Base):
    """The rehab program for one patient: who their counselor is and whether they are still in
    treatment (`retention`: active, dropped_out, completed; `retention_on` the day it changed)."""

    __tablename__ = "care_plans"
    __table_args__ = (
        Index("ix_care_plans_patient", "patient_id"),
        Index("ix_care_plans_program", "program_id", "retention"),
        Index("ix_care_plans_counselor", "counselor_id", "retention"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[str] = _patient()
    program_id: Mapped[int] = _program()
    episode_id: Mapped[int | None] = mapped_column(
        ForeignKey("episodes.id", ondelete="RESTRICT"), nullable=True
    )
    title: Mapped[str] = mapped_column(String(200), default="")
    # The substances the plan addresses (ids of recovery/data/substances.yaml), in the order the
    # patient's check-in asks about them.
    substances: Mapped[list[str]] = mapped_column(JSON, default=list)
    counselor_id: Mapped[int | None] = _user()
    started_on: Mapped[date] = mapped_column(Date)
    retention: Mapped[str] = mapped_column(String(12), default="active")
    retention_on: Mapped[date | None] = mapped_column(Date, nullable=True)
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[int | None] = _user()


class CarePlanServiceRow(Base):
    """A service of a care plan: individual counseling, group therapy, family sessions,
    medication management, peer support; how often, by whom, from when to when."""

    __tablename__ = "care_plan_services"
    __table_args__ = (Index("ix_care_plan_services_plan", "care_plan_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    care_plan_id: Mapped[int] = mapped_column(ForeignKey("care_plans.id", ondelete="RESTRICT"))
    patient_id: Mapped[str] = _patient()
    program_id: Mapped[int] = _program()
    service: Mapped[str] = mapped_column(String(30))
    frequency: Mapped[str] = mapped_column(String(80), default="")
    staff_id: Mapped[int | None] = _user()
    started_on: Mapped[date] = mapped_column(Date)
    ended_on: Mapped[date | None] = mapped_column(Date, nullable=True)


class RetentionEventRow(Base):
    """A change of a care plan's retention status, kept as history."""

    __tablename__ = "retention_events"
    __table_args__ = (Index("ix_retention_events_plan", "care_plan_id", "on_day"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    care_plan_id: Mapped[int] = mapped_column(ForeignKey("care_plans.id", ondelete="RESTRICT"))
    patient_id: Mapped[str] = _patient()
    program_id: Mapped[int] = _program()
    retention: Mapped[str] = mapped_column(String(12))
    on_day: Mapped[date] = mapped_column(Date)
    note: Mapped[str] = mapped_column(Text, default="")
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    recorded_by: Mapped[int | None] = _user()


class TherapySessionRow(Base):
    """A scheduled session (FHIR Appointment) and whether it took place (Encounter):
    `status` booked, attended, missed or cancelled."""

    __tablename__ = "therapy_sessions"
    __table_args__ = (
        Index("ix_therapy_sessions_patient", "patient_id", "starts_at"),
        Index("ix_therapy_sessions_program", "program_id", "starts_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[str] = _patient()
    program_id: Mapped[int] = _program()
    care_plan_id: Mapped[int | None] = mapped_column(
        ForeignKey("care_plans.id", ondelete="RESTRICT"), nullable=True
    )
    service: Mapped[str] = mapped_column(String(30))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    minutes: Mapped[int] = mapped_column(Integer, default=50)
    staff_id: Mapped[int | None] = _user()
    status: Mapped[str] = mapped_column(String(12), default="booked")
    status_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    status_by: Mapped[int | None] = _user()
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[int | None] = _user()
