"""Medication records shared by detox and the medication plan: a dose given (MedicationAdministration).

Detox records as-needed doses linked to the assessment that prompted them; the medication plan
records scheduled doses linked to the dose plan. Domain-specific tables live beside their domain.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, Numeric, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tandem.storage.db import UTCDateTime, utcnow
from tandem.storage.models import Base


class MedicationAdministrationRow(Base):
    __tablename__ = "medication_administrations"
    __table_args__ = (Index("ix_medadmin_patient_at", "patient_id", "administered_at"),)

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
    assessment_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    dose_plan_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    note: Mapped[str] = mapped_column(Text, default="")
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
