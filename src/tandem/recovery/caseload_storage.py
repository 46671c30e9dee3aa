"""The caseload's stored parts: each program's risk-flag rules, every version kept (one current),
like a program's withdrawal protocol. A program without its own reads the shipped example.
And the index the caseload's flags read the recovery tables by (migration 0019_caseload)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, UniqueConstraint, true
from sqlalchemy.orm import Mapped, mapped_column

from tandem.recovery.storage import UseDayRow
from tandem.storage.db import UTCDateTime, utcnow
from tandem.storage.models import Base


class RiskFlagVersionRow(Base):
    """One version of a program's caseload risk-flag rules, exactly as validated."""

    __tablename__ = "recovery_risk_flag_versions"
    __table_args__ = (
        UniqueConstraint("program_id", "content_hash", name="uq_risk_flag_versions_hash"),
        Index("ix_risk_flag_versions_current", "program_id", "is_current"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id", ondelete="RESTRICT"))
    rules_id: Mapped[str] = mapped_column(String(80))
    version: Mapped[str] = mapped_column(String(40))
    content_hash: Mapped[str] = mapped_column(String(64))
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    is_current: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="RESTRICT"), nullable=True
    )


# A patient's use days only (a few a month among a year of reported days): the previous use
# before a lapse, and the lapses of a caseload, without reading every day reported.
USE_DAYS_USED = Index(
    "ix_use_days_used",
    UseDayRow.patient_id,
    UseDayRow.day,
    # `used = 1` on SQLite: the term a query on a boolean column is written with there, which
    # the planner must find word for word to use a partial index.
    postgresql_where=UseDayRow.used,
    sqlite_where=UseDayRow.used == true(),
)
