"""The patient portal's own tables: which reminders a patient wants, the program's reminder
times, and every reminder sent by e-mail (one row a reminder, its key unique).

- `reminder_preferences`: one row a patient (none: every reminder on). A patient turns each kind
  off, and e-mail off, in their portal.
- `portal_settings`: one row a program (none: the defaults of data/portal.yaml): the time of day
  after which a patient with no check-in is reminded, and how long before a session.
- `reminders_sent`: a reminder claimed for sending. The key names the reminder ("check_in:
  <patient>:<day>", "dose:<plan>:<due time>", "session:<id>"); it is inserted, and committed,
  before the e-mail goes out, so that with several server processes (or a job run again after a
  crash) each reminder is sent at most once.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from tandem.storage.db import UTCDateTime, utcnow
from tandem.storage.models import Base


class ReminderPreferenceRow(Base):
    """What a patient wants to be reminded of, and whether by e-mail too."""

    __tablename__ = "reminder_preferences"

    patient_id: Mapped[str] = mapped_column(
        ForeignKey("patients.id", ondelete="RESTRICT"), primary_key=True
    )
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id", ondelete="RESTRICT"))
    check_in: Mapped[bool] = mapped_column(Boolean, default=True)
    doses: Mapped[bool] = mapped_column(Boolean, default=True)
    sessions: Mapped[bool] = mapped_column(Boolean, default=True)
    email: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="RESTRICT"), nullable=True
    )


class PortalSettingRow(Base):
    """A program's reminder times, on the program's clock ("19:00"); a program setting."""

    __tablename__ = "portal_settings"

    program_id: Mapped[int] = mapped_column(
        ForeignKey("programs.id", ondelete="RESTRICT"), primary_key=True
    )
    check_in_reminder_at: Mapped[str] = mapped_column(String(5))
    session_reminder_hours: Mapped[int] = mapped_column(Integer)
    set_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    set_by: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="RESTRICT"), nullable=True
    )


class ReminderSentRow(Base):
    """One reminder claimed for sending by e-mail, and how the sending ended."""

    __tablename__ = "reminders_sent"
    __table_args__ = (Index("ix_reminders_sent_patient", "patient_id", "claimed_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(120), unique=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id", ondelete="RESTRICT"))
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id", ondelete="RESTRICT"))
    kind: Mapped[str] = mapped_column(String(12))  # check_in | dose | session
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str] = mapped_column(String(120))
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    status: Mapped[str] = mapped_column(String(200), default="claimed")
