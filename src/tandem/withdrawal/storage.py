"""Withdrawal-monitoring tables: protocol versions, episode context, assessments, observations,
and one denormalised monitoring row per episode and instrument that the census reads.

Tables hold our own values, not FHIR JSON; `withdrawal/fhir.py` maps them at the edge. Medication
given is the shared `medication_administrations` table; alerts are the shared `alerts` table.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    insert,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from tandem.storage.db import UTCDateTime, utcnow
from tandem.storage.models import Base, Episode


class ProtocolVersionRow(Base):
    """One version of a program's protocol, exactly as validated; assessments point at it."""

    __tablename__ = "withdrawal_protocol_versions"
    __table_args__ = (
        UniqueConstraint("program_id", "content_hash"),
        Index("ix_withdrawal_protocol_current", "program_id", "is_current"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id", ondelete="RESTRICT"))
    protocol_id: Mapped[str] = mapped_column(String(80))
    version: Mapped[str] = mapped_column(String(40))
    content_hash: Mapped[str] = mapped_column(String(64))
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    origin: Mapped[str] = mapped_column(String(20))  # example | program
    is_current: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="RESTRICT"), nullable=True
    )


class WithdrawalContextRow(Base):
    """What is known about this episode's withdrawal; None means not recorded."""

    __tablename__ = "withdrawal_contexts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    episode_id: Mapped[int] = mapped_column(
        ForeignKey("episodes.id", ondelete="RESTRICT"), unique=True
    )
    patient_id: Mapped[str] = mapped_column(
        ForeignKey("patients.id", ondelete="RESTRICT"), index=True
    )
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id", ondelete="RESTRICT"))
    substance: Mapped[str] = mapped_column(String(10))  # alcohol | opioid | other
    last_use_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    opioid_half_life_class: Mapped[str | None] = mapped_column(String(5), nullable=True)
    history_withdrawal_seizures: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    history_delirium_tremens: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    liver_failure: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    elderly: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    note: Mapped[str] = mapped_column(Text, default="")
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    recorded_by: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="RESTRICT"), nullable=True
    )


class AssessmentRow(Base):
    """One scored withdrawal assessment (a QuestionnaireResponse), under one protocol version."""

    __tablename__ = "withdrawal_assessments"
    __table_args__ = (
        Index("ix_withdrawal_assessments_patient_at", "patient_id", "assessed_at"),
        Index("ix_withdrawal_assessments_episode", "episode_id", "instrument_id", "assessed_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id", ondelete="RESTRICT"))
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id", ondelete="RESTRICT"))
    episode_id: Mapped[int | None] = mapped_column(
        ForeignKey("episodes.id", ondelete="RESTRICT"), nullable=True
    )
    instrument_id: Mapped[str] = mapped_column(String(40))
    instrument_version: Mapped[str] = mapped_column(String(40))
    total: Mapped[int] = mapped_column(Integer)
    band_scheme_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    band_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    band_label: Mapped[str | None] = mapped_column(String(80), nullable=True)
    item_values: Mapped[dict[str, int]] = mapped_column(JSON)
    flags: Mapped[list[str]] = mapped_column(JSON, default=list)
    protocol_version_id: Mapped[int] = mapped_column(
        ForeignKey("withdrawal_protocol_versions.id", ondelete="RESTRICT")
    )
    protocol_version: Mapped[str] = mapped_column(String(40))
    # The reassessment time this assessment set (None when the protocol sets no interval).
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    interval_minutes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    assessed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    recorded_by: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="RESTRICT"), nullable=True
    )
    channel: Mapped[str] = mapped_column(String(10), default="web")  # web | api | demo


class ObservationRow(Base):
    """One Observation of an assessment: its total (`code` "total") or one item (the item id)."""

    __tablename__ = "withdrawal_observations"
    __table_args__ = (
        Index(
            "ix_withdrawal_obs_patient_code_at",
            "patient_id",
            "instrument_id",
            "code",
            "effective_at",
        ),
        Index("ix_withdrawal_obs_patient_at", "patient_id", "effective_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    assessment_id: Mapped[int] = mapped_column(
        ForeignKey("withdrawal_assessments.id", ondelete="RESTRICT"), index=True
    )
    patient_id: Mapped[str] = mapped_column(String(36))
    instrument_id: Mapped[str] = mapped_column(String(40))
    code: Mapped[str] = mapped_column(String(60))
    value: Mapped[int] = mapped_column(Integer)
    effective_at: Mapped[datetime] = mapped_column(UTCDateTime)


class MonitoringRow(Base):
    """Where one episode's monitoring on one instrument stands, rewritten on every save, so the
    census reads one row per patient from this table alone instead of each patient's history.

    A detox admission starts with a baseline row (`instrument_id` "", due since admission; see
    `keep_in_step_with_episodes`); the first assessment turns it into that instrument's row.
    `alert_rank`/`alert_count` summarise the patient's open alerts (kept by `refresh_alerts`).
    """

    __tablename__ = "withdrawal_monitoring"
    __table_args__ = (
        UniqueConstraint("episode_id", "instrument_id"),
        # The census orders every patient of a unit on these: read them from the index alone.
        Index(
            "ix_withdrawal_monitoring_unit",
            "unit_id",
            "active",
            "alert_rank",
            "due_at",
            "band_rank",
            "id",
        ),
        Index("ix_withdrawal_monitoring_overdue", "overdue_alerted", "overdue_alert_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    episode_id: Mapped[int] = mapped_column(ForeignKey("episodes.id", ondelete="RESTRICT"))
    patient_id: Mapped[str] = mapped_column(
        ForeignKey("patients.id", ondelete="RESTRICT"), index=True
    )
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id", ondelete="RESTRICT"))
    unit_id: Mapped[int | None] = mapped_column(
        ForeignKey("units.id", ondelete="RESTRICT"), nullable=True
    )
    active: Mapped[bool] = mapped_column(Boolean, default=True)  # the episode is open and in detox
    admitted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    instrument_id: Mapped[str] = mapped_column(String(40))  # "" until the first assessment
    last_assessment_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_total: Mapped[int | None] = mapped_column(Integer, nullable=True)
    band_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    band_label: Mapped[str | None] = mapped_column(String(80), nullable=True)
    band_rank: Mapped[int] = mapped_column(Integer, default=-1)
    last_assessed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # When the next assessment is due: the admission for the baseline; None when the protocol
    # sets no interval for the latest score.
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    interval_minutes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # When an overdue reassessment escalates (the protocol's overdue rule), and whether it has.
    overdue_alert_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    overdue_alerted: Mapped[bool] = mapped_column(Boolean, default=False)
    may_end: Mapped[bool] = mapped_column(Boolean, default=False)
    # The latest totals, oldest first, as [[minutes since epoch, total], ...] for the sparkline.
    trend: Mapped[list[list[int]]] = mapped_column(JSON, default=list)
    alert_rank: Mapped[int] = mapped_column(Integer, default=-1)  # most severe open alert, -1 none
    alert_count: Mapped[int] = mapped_column(Integer, default=0)
    protocol_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("withdrawal_protocol_versions.id", ondelete="RESTRICT"), nullable=True
    )
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


BASELINE = ""  # instrument_id of a monitoring row before the first assessment


def episode_changed(db: Session, episode: Episode) -> None:
    """Keep the census in step with an episode that was admitted, moved or discharged (the
    patients domain calls this, through the domain list, after every such change): a
    discharge or a move out of detox ends the monitoring rows; a move into detox starts a
    baseline; a change of unit moves them."""
    in_detox = episode.phase == "detox" and episode.discharged_at is None
    table = _monitoring_table()
    db.execute(
        update(table)
        .where(table.c.episode_id == episode.id)
        .values(active=in_detox, unit_id=episode.unit_id)
    )
    if (
        in_detox
        and db.execute(select(table.c.id).where(table.c.episode_id == episode.id)).first() is None
    ):
        _baseline(db, episode)


def _monitoring_table() -> Table:
    # The Core table (not the ORM entity): these statements run inside another domain's flush.
    return MonitoringRow.metadata.tables[MonitoringRow.__tablename__]


def _baseline(db: Session, episode: Episode) -> None:
    db.execute(
        insert(_monitoring_table()).values(
            episode_id=episode.id,
            patient_id=episode.patient_id,
            program_id=episode.program_id,
            unit_id=episode.unit_id,
            active=True,
            admitted_at=episode.phase_started_at or episode.admitted_at,
            instrument_id=BASELINE,
            band_rank=-1,
            due_at=episode.phase_started_at or episode.admitted_at,
            overdue_alerted=False,
            may_end=False,
            trend=[],
            alert_rank=-1,
            alert_count=0,
            updated_at=utcnow(),
        )
    )
