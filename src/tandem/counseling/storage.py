"""Questions to a counselor, their messages, the counselors' notes, and how many questions each
address has sent (the public form's rate limit, held in the database so that it holds across
server processes). A question of a signed-in patient is part of their record (`patient_id`); a
visitor's has none and is reached by its private link (only the link's hash is stored)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from tandem.storage.db import UTCDateTime
from tandem.storage.models import Base


class QuestionRow(Base):
    __tablename__ = "counseling_questions"
    __table_args__ = (
        # The queue: a program's questions in a state, urgent first, then the oldest.
        Index("ix_counseling_questions_queue", "program_id", "status", "urgent", "asked_at"),
        Index("ix_counseling_questions_patient", "patient_id", "asked_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id", ondelete="RESTRICT"))
    patient_id: Mapped[str | None] = mapped_column(
        ForeignKey("patients.id", ondelete="RESTRICT"), nullable=True
    )
    asked_by: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="RESTRICT"), nullable=True
    )
    kind: Mapped[str] = mapped_column(String(10))  # question | callback
    status: Mapped[str] = mapped_column(String(10))  # new | assigned | answered | closed
    urgent: Mapped[bool] = mapped_column(Boolean, default=False)
    crisis: Mapped[str] = mapped_column(Text, default="")  # the phrases that made it urgent
    preview: Mapped[str] = mapped_column(String(160), default="")
    name: Mapped[str] = mapped_column(String(100), default="")
    phone: Mapped[str] = mapped_column(String(30), default="")
    window_start: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    window_end: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    token_hash: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    asked_at: Mapped[datetime] = mapped_column(UTCDateTime)
    assigned_to: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="RESTRICT"), nullable=True
    )
    assigned_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    call_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    call_by: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="RESTRICT"), nullable=True
    )
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # When the asker last opened the conversation (their record's Questions, or the private
    # link): a counselor's reply sent later is new to them (flagged on their Today page, and
    # e-mailed once to a patient who has e-mail on).
    asker_read_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    messages: Mapped[list[MessageRow]] = relationship(
        order_by="MessageRow.id", back_populates="question", lazy="raise"
    )


class MessageRow(Base):
    """A message of the conversation: the asker's question, a counselor's reply. Seen by the
    asker (FHIR Communication)."""

    __tablename__ = "counseling_messages"
    __table_args__ = (
        Index("ix_counseling_messages_question", "question_id", "id"),
        Index("ix_counseling_messages_patient", "patient_id", "sent_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    question_id: Mapped[int] = mapped_column(
        ForeignKey("counseling_questions.id", ondelete="RESTRICT")
    )
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id", ondelete="RESTRICT"))
    patient_id: Mapped[str | None] = mapped_column(
        ForeignKey("patients.id", ondelete="RESTRICT"), nullable=True
    )
    author: Mapped[str] = mapped_column(String(10))  # asker | counselor
    author_user: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="RESTRICT"), nullable=True
    )
    body: Mapped[str] = mapped_column(Text)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime)

    question: Mapped[QuestionRow] = relationship(back_populates="messages", lazy="raise")


class NoteRow(Base):
    """A counselor's internal note on a question: never shown to the asker."""

    __tablename__ = "counseling_notes"
    __table_args__ = (Index("ix_counseling_notes_question", "question_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    question_id: Mapped[int] = mapped_column(
        ForeignKey("counseling_questions.id", ondelete="RESTRICT")
    )
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id", ondelete="RESTRICT"))
    patient_id: Mapped[str | None] = mapped_column(
        ForeignKey("patients.id", ondelete="RESTRICT"), nullable=True
    )
    author_user: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    body: Mapped[str] = mapped_column(Text)
    written_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AskCountRow(Base):
    """Posts of the public form per client address and hour (`counseling.limits`)."""

    __tablename__ = "counseling_ask_counts"

    source_ip: Mapped[str] = mapped_column(String(64), primary_key=True)
    hour: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=1)
