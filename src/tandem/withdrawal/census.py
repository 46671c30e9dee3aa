"""The detox census: a unit's patients in monitoring, most urgent first, in one statement; and
the overdue-reassessment escalations, raised when the census is read and by a scheduled job."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, ScalarSelect, Select, and_, case, func, select
from sqlalchemy.orm import Session, sessionmaker

from tandem.access.guard import Access, system_access
from tandem.access.policy import Permission
from tandem.access.queries import audit_shown
from tandem.alerts import service as alerts
from tandem.alerts.models import Alert
from tandem.clock import local, utcnow
from tandem.errors import NotFound
from tandem.scheduler import JobRun, last_run
from tandem.storage.db import session_scope
from tandem.storage.models import Patient, Program, Unit
from tandem.withdrawal.assessments import QR
from tandem.withdrawal.monitoring import census_key
from tandem.withdrawal.protocol import OverdueRule
from tandem.withdrawal.protocols import citation_text, protocol_version
from tandem.withdrawal.storage import BASELINE, MonitoringRow, WithdrawalContextRow

OVERDUE_KIND = "withdrawal_overdue"


@dataclass(frozen=True)
class CensusRow:
    patient_id: str
    name: str
    episode_id: int
    admitted_at: datetime
    instrument_id: str | None  # None: no assessment yet, the baseline is due
    total: int | None
    band_id: str | None
    band_label: str | None
    band_rank: int
    assessed_at: datetime | None
    due_at: datetime | None
    interval_set: bool
    overdue_by: timedelta | None
    trend: list[list[int]]
    substance: str | None
    seizure_or_dt_history: bool
    alert_count: int
    alert_rank: int | None
    may_end: bool
    monitoring_id: int

    @property
    def overdue(self) -> bool:
        return self.overdue_by is not None

    @property
    def baseline_due(self) -> bool:
        return self.instrument_id is None

    @property
    def sort_key(self) -> tuple[Any, ...]:
        """The monitoring core's census key, then the tie-break the census statement uses."""
        return census_key(
            self.alert_rank, self.overdue_by, self.band_rank, self.due_at
        ), self.monitoring_id


OVERDUE_JOB = "withdrawal.overdue"  # the scheduled sweep (withdrawal/domain.py)
OVERDUE_EVERY = timedelta(minutes=1)


@dataclass
class Census:
    unit: Unit
    program: Program
    rows: list[CensusRow]  # this page, most urgent first
    now: datetime
    in_monitoring: int = 0  # the whole unit, not only this page
    overdue_count: int = 0
    alert_rows: int = 0
    page: int = 1
    page_size: int | None = None
    sweep: JobRun | None = None  # the overdue sweep's last run, as the schedule records it

    @property
    def sweep_stale(self) -> bool:
        """The overdue sweep has not finished for several periods: escalations are raised only
        when someone opens this page or saves an assessment."""
        return self.sweep is None or self.sweep.stale(OVERDUE_EVERY, self.now)

    @property
    def has_more(self) -> bool:
        return self.page_size is not None and self.page * self.page_size < self.in_monitoring


def detox_units(access: Access) -> list[Unit]:
    return list(
        access.db.scalars(
            select(Unit)
            .where(Unit.program_id.in_(sorted(access.actor.program_ids)), Unit.kind == "detox")
            .order_by(Unit.program_id, Unit.name)
        )
    )


def census_statement(
    unit_id: int, now: datetime, limit: int | None = None, offset: int = 0
) -> Select[*tuple[Any, ...]]:
    """The census as ONE statement: a page of the unit's monitoring rows, most urgent first,
    joined to names and context, with the unit's counts. No query per patient.

    The order is the monitoring core's `census_key` written in SQL (a randomized test holds the
    two equal): unacknowledged alerts (most severe first), then overdue (longest first), then
    highest band, then soonest due with an unset due time first. Every key is a column of the
    monitoring row, so the database sorts the unit from one covering index
    (`ix_withdrawal_monitoring_unit`) and joins only the page.
    """
    m, c = MonitoringRow, WithdrawalContextRow
    overdue = m.due_at < now
    in_unit = and_(m.unit_id == unit_id, m.active.is_(True))
    urgent_first = (
        m.alert_rank.desc(),
        case((overdue, 0), else_=1),
        case((overdue, m.due_at), else_=None),
        m.band_rank.desc(),
        case((m.due_at.is_(None), 0), else_=1),
        m.due_at,
        m.id,
    )
    page = (
        select(m.id.label("id"))
        .where(in_unit)
        .order_by(*urgent_first)
        .limit(limit)
        .offset(offset)
        .subquery("page")
    )

    def count(*where: ColumnElement[bool]) -> ScalarSelect[int]:
        return select(func.count()).select_from(m).where(in_unit, *where).scalar_subquery()

    return (
        select(
            m.id,
            m.episode_id,
            m.patient_id,
            m.admitted_at,
            Patient.family,
            Patient.given,
            m.instrument_id,
            m.last_total,
            m.band_id,
            m.band_label,
            m.band_rank,
            m.last_assessed_at,
            m.due_at,
            m.interval_minutes,
            m.trend,
            m.may_end,
            m.alert_count,
            m.alert_rank,
            c.substance,
            c.history_withdrawal_seizures,
            c.history_delirium_tremens,
            count().label("in_monitoring"),
            count(overdue).label("overdue"),
            count(m.alert_rank >= 0).label("alert_rows"),
        )
        .select_from(page)
        .join(m, m.id == page.c.id)
        .join(Patient, Patient.id == m.patient_id)
        .outerjoin(c, c.episode_id == m.episode_id)
        .order_by(*urgent_first)
    )


def census_rows(
    db: Session, unit_id: int, now: datetime, limit: int | None = None, offset: int = 0
) -> tuple[list[CensusRow], dict[str, int]]:
    """One page of the census (every row when `limit` is None) and the unit's counts. The
    caller has been allowed the unit's census and audits what it shows."""
    rows: list[CensusRow] = []
    counts = {"in_monitoring": 0, "overdue_count": 0, "alert_rows": 0}
    for (
        monitoring_id,
        episode_id,
        patient_id,
        admitted_at,
        family,
        given,
        instrument_id,
        total,
        band_id,
        band_label,
        band_rank,
        assessed_at,
        due_at,
        interval,
        trend,
        may_end,
        n_alerts,
        alert_rank,
        substance,
        seizures,
        dts,
        in_monitoring,
        overdue_count,
        alert_rows,
    ) in db.execute(census_statement(unit_id, now, limit, offset)):
        counts = {
            "in_monitoring": in_monitoring,
            "overdue_count": overdue_count,
            "alert_rows": alert_rows,
        }
        baseline = instrument_id == BASELINE
        rows.append(
            CensusRow(
                patient_id=patient_id,
                name=f"{family.upper()}, {given}".strip(", "),
                episode_id=episode_id,
                admitted_at=admitted_at,
                instrument_id=None if baseline else instrument_id,
                total=total,
                band_id=band_id,
                band_label=band_label,
                band_rank=band_rank,
                assessed_at=assessed_at,
                due_at=due_at,
                interval_set=baseline or interval is not None,
                overdue_by=now - due_at if due_at is not None and due_at < now else None,
                trend=trend or [],
                substance=substance,
                seizure_or_dt_history=bool(seizures or dts),
                alert_count=n_alerts,
                alert_rank=alert_rank if alert_rank >= 0 else None,
                may_end=bool(may_end),
                monitoring_id=monitoring_id,
            )
        )
    return rows, counts


def census(
    access: Access,
    unit_id: int,
    now: datetime | None = None,
    query_text: str = "",
    page: int = 1,
    page_size: int | None = 200,
) -> Census:
    """One page of a detox unit's census, most urgent first, after raising the overdue
    escalations that have come due on the unit. Audited with every patient the page shows."""
    now = now or utcnow()
    unit = access.db.get(Unit, unit_id)
    if unit is None:
        raise NotFound(f"unit {unit_id} is not known")
    access.require(Permission.SEARCH, "Patient", program_id=unit.program_id)
    access.require(Permission.SEARCH, QR, program_id=unit.program_id)
    program = access.db.get(Program, unit.program_id)
    assert program is not None
    raise_overdue(access, unit.id, now)
    page = max(1, page)
    rows, counts = census_rows(
        access.db, unit.id, now, page_size, (page - 1) * page_size if page_size else 0
    )
    audit_shown(access, QR, (r.patient_id for r in rows), query_text or f"census unit={unit.id}")
    sweep = last_run(access.db, OVERDUE_JOB)
    return Census(unit, program, rows, now, page=page, page_size=page_size, sweep=sweep, **counts)


def raise_overdue(access: Access, unit_id: int, now: datetime) -> list[Alert]:
    """Reassessments on the unit overdue past the protocol's grace period reach the prescriber,
    once per assessment (one indexed statement finds them; usually there is nothing to do)."""
    due = access.db.scalars(
        select(MonitoringRow).where(
            MonitoringRow.overdue_alerted.is_(False),
            MonitoringRow.overdue_alert_at <= now,
            MonitoringRow.unit_id == unit_id,
            MonitoringRow.active.is_(True),
        )
    ).all()
    raised = []
    for monitoring in due:
        monitoring.overdue_alerted = True
        if monitoring.due_at is None or monitoring.protocol_version_id is None:
            continue
        protocol = protocol_version(access.db, monitoring.protocol_version_id)
        rule = next(
            (
                r
                for r in protocol.instrument(monitoring.instrument_id).escalations
                if isinstance(r, OverdueRule) and r.minutes is not None
            ),
            None,
        )
        if (
            rule is None
            or access.db.scalar(
                select(Alert.id).where(
                    Alert.patient_id == monitoring.patient_id,
                    Alert.related_type == QR,
                    Alert.related_id == str(monitoring.last_assessment_id),
                    Alert.rule_id == rule.id,
                )
            )
            is not None
        ):
            continue
        late = int((now - monitoring.due_at).total_seconds() // 60)
        program = access.db.get(Program, monitoring.program_id)
        due_local = local(monitoring.due_at, program.time_zone if program else "UTC")
        raised.append(
            alerts.raise_alert(
                access,
                patient_id=monitoring.patient_id,
                program_id=monitoring.program_id,
                kind=OVERDUE_KIND,
                severity=rule.severity,
                title=rule.message,
                detail=f"due {due_local:%Y-%m-%d %H:%M %Z}, overdue by {late} min "
                f"(threshold {rule.minutes} min)",
                source=citation_text(protocol, protocol.cite(rule.source)),
                rule_id=rule.id,
                related_type=QR,
                related_id=str(monitoring.last_assessment_id),
                raised_at=now,
            )
        )
    if due:
        access.db.flush()
    return raised


def raise_overdue_everywhere(sessions: sessionmaker[Session], now: datetime) -> int:
    """The scheduled job: overdue escalations on every detox unit, without waiting for someone
    to open the census. Returns how many alerts it raised."""
    with session_scope(sessions) as db:
        access = system_access(db, sessions, "withdrawal.overdue")
        units = db.scalars(select(Unit.id).where(Unit.kind == "detox").order_by(Unit.id)).all()
        return sum(len(raise_overdue(access, unit_id, now)) for unit_id in units)
