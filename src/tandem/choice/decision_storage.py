"""The patient's treatment decisions: one row per decision recorded, never updated, so the
history of what the patient chose, when, and with whom is kept. The newest row is the current
choice."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tandem.storage.db import UTCDateTime, utcnow
from tandem.storage.models import Base


class TreatmentDecisionRow(Base):
    __tablename__ = "choice_treatment_decisions"
    __table_args__ = (Index("ix_choice_decisions_patient", "patient_id", "recorded_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id", ondelete="RESTRICT"))
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id", ondelete="RESTRICT"))
    substance: Mapped[str] = mapped_column(String(40))  # see data/decision_options.yaml
    phase: Mapped[str] = mapped_column(String(40))
    # An option id (a medication option), "no_medication" or "undecided".
    choice: Mapped[str] = mapped_column(String(60))
    preferences: Mapped[str] = mapped_column(Text, default="")
    notes: Mapped[str] = mapped_column(Text, default="")
    discussed_on: Mapped[date] = mapped_column(Date)
    discussed_by: Mapped[str] = mapped_column(String(200))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    recorded_by: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
