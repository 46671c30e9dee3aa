"""Consent tables: the consents patients sign (FHIR Consent) and the disclosures made under
them (the accounting of §2.25). Neither is ever deleted: a consent is revoked or ends, a
disclosure stays listed."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tandem.storage.db import UTCDateTime, utcnow
from tandem.storage.models import Base


class ConsentRow(Base):
    __tablename__ = "consents"
    __table_args__ = (
        Index("ix_consents_patient", "patient_id", "signed_at"),
        Index("ix_consents_recipient_program", "recipient_program_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id", ondelete="RESTRICT"))
    # The program that holds the records and makes the disclosure (§2.31(a)(2)).
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id", ondelete="RESTRICT"))
    # The recipient: another program of Tandem, or someone outside named in words.
    recipient_program_id: Mapped[int | None] = mapped_column(
        ForeignKey("programs.id", ondelete="RESTRICT", name="fk_consents_recipient_program"),
        nullable=True,
    )
    recipient_name: Mapped[str] = mapped_column(String(200))
    purpose: Mapped[str] = mapped_column(String(20))  # HL7 v3 PurposeOfUse code
    purpose_text: Mapped[str] = mapped_column(Text, default="")
    information: Mapped[str] = mapped_column(String(200))  # category ids, "all" for every record
    expires_on: Mapped[date | None] = mapped_column(Date, nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    expiry_event: Mapped[str] = mapped_column(Text, default="")
    # When staff recorded that the expiry event happened.
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    signed_on: Mapped[date] = mapped_column(Date)
    signed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    signed_by: Mapped[str] = mapped_column(String(200))
    signer_role: Mapped[str] = mapped_column(String(20), default="patient")
    recorded_by: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_by: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="RESTRICT", name="fk_consents_revoked_by"), nullable=True
    )
    revocation_note: Mapped[str] = mapped_column(Text, default="")


class DisclosureRow(Base):
    """One release of records outside the program: the accounting of disclosures."""

    __tablename__ = "consent_disclosures"
    __table_args__ = (Index("ix_consent_disclosures_patient", "patient_id", "disclosed_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id", ondelete="RESTRICT"))
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id", ondelete="RESTRICT"))
    consent_id: Mapped[int] = mapped_column(ForeignKey("consents.id", ondelete="RESTRICT"))
    recipient_name: Mapped[str] = mapped_column(String(200))
    purpose: Mapped[str] = mapped_column(String(20))
    information: Mapped[str] = mapped_column(String(200))
    # What was released, in words ("Patient 1, QuestionnaireResponse 3"), and how.
    contents: Mapped[str] = mapped_column(Text, default="")
    form: Mapped[str] = mapped_column(String(10))  # pdf | bundle
    disclosed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    disclosed_by: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"))
