"""Withdrawal assessments in storage: the one save path (the form, the FHIR API and the tests
alike), the episode's monitoring row the census reads, and the escalation alerts.

Scoring is the instrument engine's, input checks are `withdrawal.checks`, due times and
escalations are the monitoring core's; this module loads, stores and connects them. Each
function asks the policy through `Access` and audits in the caller's unit of work; the caller
commits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol as Structural

from sqlalchemy import and_, func, select, update
from sqlalchemy.orm import Session

from tandem.access.guard import Access
from tandem.access.policy import Permission
from tandem.access.queries import load_patient, read_row
from tandem.alerts import service as alerts
from tandem.alerts.models import Alert
from tandem.clock import utcnow
from tandem.instruments.engine import get_instrument, score
from tandem.storage.models import Episode, Patient
from tandem.withdrawal.checks import (
    check_assessed_at,
    check_instrument,
    check_monitoring_can_start,
)
from tandem.withdrawal.context import as_context, context_row, open_episode_of
from tandem.withdrawal.monitoring import (
    MonitoringState,
    ScoredAssessment,
    escalation_key,
    evaluate,
)
from tandem.withdrawal.protocol import OverdueRule, Protocol
from tandem.withdrawal.protocols import (
    band_label,
    citation_text,
    program_protocol,
    stored_version,
)
from tandem.withdrawal.storage import BASELINE, AssessmentRow, MonitoringRow, ObservationRow

QR = "QuestionnaireResponse"
OBSERVATION = "Observation"
TREND_POINTS = 24
ALERT_KIND = "withdrawal_escalation"


@dataclass
class SavedAssessment:
    assessment: AssessmentRow
    state: MonitoringState
    alerts: list[Alert] = field(default_factory=list)
    observations: list[ObservationRow] = field(default_factory=list)


class Assessed(Structural):
    """What the monitoring row keeps of an assessment (a stored row, or the demo's values)."""

    @property
    def id(self) -> int: ...
    @property
    def instrument_id(self) -> str: ...
    @property
    def total(self) -> int: ...
    @property
    def assessed_at(self) -> datetime: ...


def scored(row: AssessmentRow) -> ScoredAssessment:
    """A stored assessment as the monitoring core reads it."""
    return ScoredAssessment(
        instrument_id=row.instrument_id,
        total=row.total,
        band_id=row.band_id,
        scored_at=row.assessed_at,
        band_scheme_id=row.band_scheme_id,
        protocol_version=row.protocol_version,
        assessment_id=str(row.id),
    )


def series(db: Session, episode_id: int, instrument_id: str) -> list[AssessmentRow]:
    """The episode's assessments on one instrument, oldest first (by the episode index)."""
    return list(
        db.scalars(
            select(AssessmentRow)
            .where(
                AssessmentRow.episode_id == episode_id, AssessmentRow.instrument_id == instrument_id
            )
            .order_by(AssessmentRow.assessed_at, AssessmentRow.id)
        )
    )


def episode_assessments(db: Session, episode_id: int) -> list[AssessmentRow]:
    """Every assessment of the episode, oldest first (the caller has read the chart)."""
    return list(
        db.scalars(
            select(AssessmentRow)
            .where(AssessmentRow.episode_id == episode_id)
            .order_by(AssessmentRow.assessed_at, AssessmentRow.id)
        )
    )


def acknowledged(db: Session, patient_id: str, instrument_id: str, assessment_id: int) -> set[str]:
    """The escalation keys of the assessment's alerts someone has acknowledged."""
    rules = db.scalars(
        select(Alert.rule_id).where(
            Alert.patient_id == patient_id,
            Alert.related_type == QR,
            Alert.related_id == str(assessment_id),
            Alert.acknowledged_at.is_not(None),
        )
    )
    return {escalation_key(instrument_id, r, str(assessment_id)) for r in rules}


def save_assessment(
    access: Access,
    patient_id: str,
    instrument_id: str,
    answers: Mapping[str, object],
    assessed_at: datetime | None = None,
    *,
    now: datetime | None = None,
    channel: str = "web",
) -> SavedAssessment:
    """Validate, score and store one assessment with its Observations, then recompute the due
    time, the monitoring row and the alerts. Raises InvalidAnswers (naming every bad item) or
    InvalidInput before anything is stored."""
    now = now or utcnow()
    patient = load_patient(
        access,
        patient_id,
        (Permission.CREATE, QR),
        (Permission.CREATE, OBSERVATION),
        audit=False,
    )
    episode = open_episode_of(patient)
    current = program_protocol(access.db, patient.program_id)
    protocol = current.protocol
    check_instrument(protocol, instrument_id)
    check_monitoring_can_start(protocol, instrument_id)
    instrument = get_instrument(instrument_id)
    result = score(instrument, answers, protocol.scheme_for(instrument_id))
    assessed_at = check_assessed_at(assessed_at or now, now, episode.admitted_at)
    version_id = stored_version(access.db, patient.program_id, current)

    row = AssessmentRow(
        patient_id=patient.id,
        program_id=patient.program_id,
        episode_id=episode.id,
        instrument_id=instrument.id,
        instrument_version=instrument.version,
        total=result.total,
        band_scheme_id=result.scheme_id,
        band_id=result.band.id if result.band else None,
        band_label=band_label(protocol, instrument.id, result.total, result.band),
        item_values=dict(result.item_values),
        flags=[f.id for f in result.flags],
        protocol_version_id=version_id,
        protocol_version=protocol.version,
        assessed_at=assessed_at,
        recorded_at=now,
        recorded_by=access.actor.user_id,
        channel=channel,
    )
    access.db.add(row)
    access.db.flush()
    observations = [
        ObservationRow(
            assessment_id=row.id,
            patient_id=patient.id,
            instrument_id=instrument.id,
            code="total",
            value=result.total,
            effective_at=assessed_at,
        )
    ]
    observations += [
        ObservationRow(
            assessment_id=row.id,
            patient_id=patient.id,
            instrument_id=instrument.id,
            code=item_id,
            value=value,
            effective_at=assessed_at,
        )
        for item_id, value in result.item_values.items()
    ]
    access.db.add_all(observations)

    done = series(access.db, episode.id, instrument.id)
    latest = done[-1]
    state = evaluate(
        protocol,
        instrument.id,
        [scored(a) for a in done],
        now,
        context=as_context(context_row(access.db, episode.id)),
        acknowledged=acknowledged(access.db, patient.id, instrument.id, latest.id),
    )
    if latest.id == row.id:
        row.due_at = state.due_at
        row.interval_minutes = state.interval.minutes
    _write_monitoring(access.db, episode, protocol, version_id, done, state, now)
    raised = _raise_escalations(access, patient, protocol, state, latest.id, now)
    access.db.flush()
    access.audit(
        "create",
        resource_type=QR,
        resource_id=str(row.id),
        patient_id=patient.id,
        detail=f"{instrument.id} total {result.total}",
    )
    access.audit(
        "create",
        resource_type=OBSERVATION,
        resource_id=f"{row.id}-total",
        patient_id=patient.id,
        detail=f"{len(observations)} observations of assessment {row.id}",
    )
    return SavedAssessment(row, state, raised, observations)


def get_assessment(access: Access, assessment_id: int) -> AssessmentRow:
    return read_row(access, QR, AssessmentRow, assessment_id)


def assessment_of(access: Access, patient: Patient, assessment_id: int) -> AssessmentRow | None:
    """One of this patient's assessments (the caller has been allowed the patient), or None."""
    return access.db.scalar(
        select(AssessmentRow).where(
            AssessmentRow.id == assessment_id, AssessmentRow.patient_id == patient.id
        )
    )


# --------------------------------------------------------------------------- monitoring row


def _write_monitoring(
    db: Session,
    episode: Episode,
    protocol: Protocol,
    version_id: int,
    done: Sequence[AssessmentRow],
    state: MonitoringState,
    now: datetime,
) -> None:
    latest = done[-1]
    rows = {
        r.instrument_id: r
        for r in db.scalars(
            select(MonitoringRow).where(
                MonitoringRow.episode_id == episode.id,
                MonitoringRow.instrument_id.in_([latest.instrument_id, BASELINE]),
            )
        )
    }
    monitoring = rows.get(latest.instrument_id) or rows.get(BASELINE)
    if monitoring is None:
        monitoring = MonitoringRow(
            episode_id=episode.id,
            patient_id=episode.patient_id,
            program_id=episode.program_id,
            alert_rank=-1,
            alert_count=0,
        )
        db.add(monitoring)
    monitoring.instrument_id = latest.instrument_id  # the baseline row becomes this instrument's
    monitoring.unit_id = episode.unit_id
    monitoring.active = episode.phase == "detox" and episode.discharged_at is None
    monitoring.admitted_at = episode.phase_started_at
    fill_monitoring(monitoring, protocol, version_id, done, state, now)
    db.flush()
    refresh_alerts(db, episode.patient_id)


def refresh_alerts(db: Session, patient_id: str | None = None) -> None:
    """Copy the open-alert summary (count, most severe) onto the patient's monitoring rows, or
    onto every monitoring row when `patient_id` is None (after a bulk load). One statement.
    The alerts domain calls it (through the domain list) whenever a patient's alerts change."""
    m = MonitoringRow
    open_alerts = and_(Alert.patient_id == m.patient_id, Alert.acknowledged_at.is_(None))
    stmt = update(m).values(
        alert_count=select(func.count()).where(open_alerts).scalar_subquery(),
        alert_rank=func.coalesce(
            select(func.max(alerts.severity_rank_sql(Alert.severity)))
            .where(open_alerts)
            .scalar_subquery(),
            -1,
        ),
    )
    if patient_id is not None:
        stmt = stmt.where(m.patient_id == patient_id)
    db.execute(stmt.execution_options(synchronize_session=False))


def overdue_rule_minutes(protocol: Protocol, instrument_id: str) -> int | None:
    minutes = [
        r.minutes
        for r in protocol.instrument(instrument_id).escalations
        if isinstance(r, OverdueRule) and r.minutes is not None
    ]
    return min(minutes) if minutes else None


def fill_monitoring(
    monitoring: MonitoringRow,
    protocol: Protocol,
    version_id: int,
    done: Sequence[Assessed],
    state: MonitoringState,
    now: datetime,
) -> None:
    """Copy what the census shows from the evaluated state into the denormalised row."""
    latest = done[-1]
    due = state.due_at
    grace = overdue_rule_minutes(protocol, latest.instrument_id)
    monitoring.last_assessment_id = latest.id
    monitoring.last_total = latest.total
    monitoring.band_id = state.band_id
    monitoring.band_label = state.band_label
    monitoring.band_rank = state.band_rank
    monitoring.last_assessed_at = latest.assessed_at
    monitoring.due_at = due
    monitoring.interval_minutes = state.interval.minutes
    monitoring.overdue_alert_at = (
        due + timedelta(minutes=grace) if due is not None and grace is not None else None
    )
    monitoring.overdue_alerted = False
    monitoring.may_end = state.monitoring_may_end
    monitoring.trend = [
        [int(a.assessed_at.timestamp() // 60), a.total] for a in done[-TREND_POINTS:]
    ]
    monitoring.protocol_version_id = version_id
    monitoring.updated_at = now


def _raise_escalations(
    access: Access,
    patient: Patient,
    protocol: Protocol,
    state: MonitoringState,
    latest_id: int,
    now: datetime,
) -> list[Alert]:
    """One alert per escalation rule fired by the latest assessment, never twice."""
    if not state.escalations:
        return []
    already = set(
        access.db.scalars(
            select(Alert.rule_id).where(
                Alert.patient_id == patient.id,
                Alert.related_type == QR,
                Alert.related_id == str(latest_id),
            )
        )
    )
    raised = []
    for esc in state.escalations:
        if esc.rule_id in already or esc.acknowledged:
            continue
        raised.append(
            alerts.raise_alert(
                access,
                patient_id=patient.id,
                program_id=patient.program_id,
                kind=ALERT_KIND,
                severity=esc.severity,
                title=esc.message,
                detail=esc.detail,
                source=citation_text(protocol, esc.source),
                rule_id=esc.rule_id,
                related_type=QR,
                related_id=str(latest_id),
                raised_at=now,
            )
        )
    return raised
