"""The alert table, shared by every domain that raises one (withdrawal escalations, missed doses,
risk flags, crisis signals). An alert is never deleted: it is acknowledged, by someone, with a note.
An alert about no patient (`patient_id` empty) is about something sent to the program: a crisis
signal in a question from a visitor who is not a patient (`related_type` names it)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tandem.storage.db import UTCDateTime, utcnow
from tandem.storage.models import Base


class Alert(Base):
    __tablename__ = "alerts"
    __table_args__ = (
        Index("ix_alerts_program_open", "program_id", "acknowledged_at"),
        Index("ix_alerts_patient", "patient_id", "raised_at"),
        Index("ix_alerts_for_user", "for_user_id", "acknowledged_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[str | None] = mapped_column(
        ForeignKey("patients.id", ondelete="RESTRICT"), nullable=True
    )
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id", ondelete="RESTRICT"))
    kind: Mapped[str] = mapped_column(String(40))  # e.g. withdrawal_escalation, missed_doses
    rule_id: Mapped[str] = mapped_column(String(80), default="")
    severity: Mapped[str] = mapped_column(String(10))  # high | medium | low
    for_role: Mapped[str] = mapped_column(String(20), default="prescriber")
    # A member of staff it is addressed to besides the role: the counselor of the patient's care
    # plan, for a PHQ-9 item 9 answer. They see it marked "for you", counted in their menu.
    for_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="RESTRICT"), nullable=True
    )
    title: Mapped[str] = mapped_column(String(200))
    detail: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(Text, default="")
    related_type: Mapped[str | None] = mapped_column(String(40), nullable=True)
    related_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    raised_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    acknowledged_by: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="RESTRICT"), nullable=True
    )
    acknowledgement_note: Mapped[str] = mapped_column(Text, default="")
