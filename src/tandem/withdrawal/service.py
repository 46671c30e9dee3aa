"""Withdrawal monitoring in storage: the form, the FHIR API and the demo all save through here.

Each function asks the policy through `Access` and audits what it reads or writes in the
caller's unit of work; the caller commits. Scoring is the instrument engine's, due times and
escalations are the pure monitoring core's; this module only loads, stores and connects them.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from tandem.access.guard import Access, system_access
from tandem.access.policy import PatientRef, Permission, decide
from tandem.access.queries import load_patient, patient_ref, read_row, search_page
from tandem.alerts import service as alerts
from tandem.alerts.models import Alert
from tandem.errors import InvalidInput, NotFound
from tandem.instruments.engine import get_instrument, score
from tandem.instruments.models import Instrument
from tandem.medications.storage import MedicationAdministrationRow
from tandem.patients.service import open_episode
from tandem.storage.db import session_scope, utcnow
from tandem.storage.models import Episode, Patient, Program, Unit, User
from tandem.withdrawal.monitoring import (
    Flag,
    MedicationOption,
    MonitoringState,
    ScoredAssessment,
    WithdrawalContext,
    census_key,
    context_flags,
    escalation_key,
    evaluate,
)
from tandem.withdrawal.prn import ROUTES, DoseRefused, check_dose
from tandem.withdrawal.protocol import (
    OverdueRule,
    Protocol,
    load_protocol,
    protocol_from_mapping,
)
from tandem.withdrawal.storage import (
    BASELINE,
    AssessmentRow,
    MonitoringRow,
    ObservationRow,
    ProtocolVersionRow,
    WithdrawalContextRow,
)

QR = "QuestionnaireResponse"
TREND_POINTS = 24
ALERT_KIND = "withdrawal_escalation"
OVERDUE_KIND = "withdrawal_overdue"
SUBSTANCES = {"alcohol": "Alcohol", "opioid": "Opioid", "other": "Other"}
HALF_LIFE = {"short": "Short-acting opioid", "long": "Long-acting opioid (e.g. methadone)"}
# A clock a little ahead of the server's is not a future assessment.
CLOCK_SKEW = timedelta(minutes=2)


def short_name(instrument: Instrument) -> str:
    """The abbreviation a ward uses ("CIWA-Ar"), from the end of the instrument's name."""
    match = re.search(r"\(([^()]+)\)\s*$", instrument.name)
    return match.group(1) if match else instrument.name


# --------------------------------------------------------------------------- protocols

_parsed: dict[str, Protocol] = {}
_parsed_lock = threading.Lock()


def _protocol_of(row: ProtocolVersionRow) -> Protocol:
    with _parsed_lock:
        protocol = _parsed.get(row.content_hash)
    if protocol is None:
        protocol = protocol_from_mapping(row.document, f"protocol version {row.id}")
        with _parsed_lock:
            _parsed[row.content_hash] = protocol
    return protocol


@dataclass(frozen=True)
class ProgramProtocol:
    version_id: int | None  # None: the shipped example, not yet stored for this program
    protocol: Protocol
    origin: str  # example | program


def set_program_protocol(
    db: Session,
    program_id: int,
    protocol: Protocol,
    *,
    origin: str = "program",
    by: int | None = None,
) -> ProgramProtocol:
    """Make `protocol` the program's current version (kept beside every earlier version)."""
    existing = db.scalar(
        select(ProtocolVersionRow).where(
            ProtocolVersionRow.program_id == program_id,
            ProtocolVersionRow.content_hash == protocol.content_hash,
        )
    )
    db.execute(
        update(ProtocolVersionRow)
        .where(ProtocolVersionRow.program_id == program_id)
        .values(is_current=False)
    )
    if existing is None:
        existing = ProtocolVersionRow(
            program_id=program_id,
            protocol_id=protocol.id,
            version=protocol.version,
            content_hash=protocol.content_hash,
            document=protocol.model_dump(mode="json"),
            origin=origin,
            is_current=True,
            created_at=utcnow(),
            created_by=by,
        )
        db.add(existing)
    existing.is_current = True
    db.flush()
    with _parsed_lock:
        _parsed[protocol.content_hash] = protocol
    return ProgramProtocol(existing.id, protocol, existing.origin)


@functools.cache
def _example() -> Protocol:
    return load_protocol()


def program_protocol(db: Session, program_id: int) -> ProgramProtocol:
    """The program's current protocol; the shipped example for a program without its own.
    Reads only: `stored_version` keeps the example for the program when something is scored."""
    row = db.scalar(
        select(ProtocolVersionRow)
        .where(ProtocolVersionRow.program_id == program_id, ProtocolVersionRow.is_current)
        .order_by(ProtocolVersionRow.id.desc())
        .limit(1)
    )
    if row is None:
        return ProgramProtocol(None, _example(), "example")
    return ProgramProtocol(row.id, _protocol_of(row), row.origin)


def stored_version(db: Session, program_id: int, current: ProgramProtocol) -> int:
    """The version id to record on an assessment, storing the example for the program if need be."""
    if current.version_id is not None:
        return current.version_id
    stored = set_program_protocol(db, program_id, current.protocol, origin=current.origin)
    assert stored.version_id is not None
    return stored.version_id


def protocol_version(db: Session, version_id: int) -> Protocol:
    row = db.get(ProtocolVersionRow, version_id)
    if row is None:
        raise NotFound(f"protocol version {version_id} is not known")
    return _protocol_of(row)


def withdrawal_instruments(protocol: Protocol) -> list[Instrument]:
    return [get_instrument(i) for i in protocol.instruments]


# --------------------------------------------------------------------------- context


def _patient(access: Access, patient_id: str, *wanted: tuple[Permission, str]) -> Patient:
    """The patient, once the policy allows every `wanted` operation (the operation itself is
    audited by the caller)."""
    return load_patient(access, patient_id, *wanted, audit=False)


def _open_episode(patient: Patient) -> Episode:
    episode = open_episode(patient)
    if episode is None:
        raise InvalidInput("episode", "the patient has no open episode of care: admit them first")
    return episode


def as_context(row: WithdrawalContextRow | None) -> WithdrawalContext | None:
    if row is None:
        return None
    return WithdrawalContext(
        substance=row.substance,  # type: ignore[arg-type]
        last_use_at=row.last_use_at,
        opioid_half_life_class=row.opioid_half_life_class,  # type: ignore[arg-type]
        history_withdrawal_seizures=row.history_withdrawal_seizures,
        history_delirium_tremens=row.history_delirium_tremens,
        liver_failure=row.liver_failure,
        elderly=row.elderly,
    )


def _context_row(db: Session, episode_id: int) -> WithdrawalContextRow | None:
    return db.scalar(
        select(WithdrawalContextRow).where(WithdrawalContextRow.episode_id == episode_id)
    )


@dataclass(frozen=True)
class ContextInput:
    substance: str
    last_use_at: datetime | None = None
    opioid_half_life_class: str | None = None
    history_withdrawal_seizures: bool | None = None
    history_delirium_tremens: bool | None = None
    liver_failure: bool | None = None
    elderly: bool | None = None
    note: str = ""


def record_context(
    access: Access, patient_id: str, values: ContextInput, now: datetime | None = None
) -> WithdrawalContextRow:
    """Record (or correct) the open episode's withdrawal context."""
    now = now or utcnow()
    patient = _patient(access, patient_id, (Permission.UPDATE, "Condition"))
    episode = _open_episode(patient)
    if values.substance not in SUBSTANCES:
        raise InvalidInput("substance", f"choose one of {', '.join(SUBSTANCES)}")
    half_life = values.opioid_half_life_class or None
    if half_life is not None and half_life not in HALF_LIFE:
        raise InvalidInput("opioid_half_life_class", "choose short or long acting")
    if half_life is not None and values.substance != "opioid":
        raise InvalidInput("opioid_half_life_class", "only for an opioid")
    if values.last_use_at is not None:
        if values.last_use_at.tzinfo is None:
            raise InvalidInput("last_use_at", "needs a time zone")
        if values.last_use_at > now + CLOCK_SKEW:
            raise InvalidInput("last_use_at", "cannot be in the future")
    if len(values.note) > 2000:
        raise InvalidInput("note", "keep the note under 2000 characters")
    row = _context_row(access.db, episode.id)
    created = row is None
    if row is None:
        row = WithdrawalContextRow(
            episode_id=episode.id, patient_id=patient.id, program_id=patient.program_id
        )
        access.db.add(row)
    row.substance = values.substance
    row.last_use_at = values.last_use_at
    row.opioid_half_life_class = half_life
    row.history_withdrawal_seizures = values.history_withdrawal_seizures
    row.history_delirium_tremens = values.history_delirium_tremens
    row.liver_failure = values.liver_failure
    row.elderly = values.elderly
    row.note = values.note.strip()
    row.recorded_at = now
    row.recorded_by = access.actor.user_id
    access.db.flush()
    access.audit(
        "create" if created else "update",
        resource_type="Condition",
        resource_id=f"withdrawal-context-{row.id}",
        patient_id=patient.id,
    )
    return row


# --------------------------------------------------------------------------- assessments


@dataclass
class SavedAssessment:
    assessment: AssessmentRow
    state: MonitoringState
    alerts: list[Alert] = field(default_factory=list)
    observations: list[ObservationRow] = field(default_factory=list)


def _scored(row: AssessmentRow) -> ScoredAssessment:
    return ScoredAssessment(
        instrument_id=row.instrument_id,
        total=row.total,
        band_id=row.band_id,
        scored_at=row.assessed_at,
        band_scheme_id=row.band_scheme_id,
        protocol_version=row.protocol_version,
        assessment_id=str(row.id),
    )


def _series(db: Session, episode_id: int, instrument_id: str) -> list[AssessmentRow]:
    return list(
        db.scalars(
            select(AssessmentRow)
            .where(
                AssessmentRow.episode_id == episode_id, AssessmentRow.instrument_id == instrument_id
            )
            .order_by(AssessmentRow.assessed_at, AssessmentRow.id)
        )
    )


def _acknowledged(db: Session, patient_id: str, instrument_id: str, assessment_id: int) -> set[str]:
    rules = db.scalars(
        select(Alert.rule_id).where(
            Alert.patient_id == patient_id,
            Alert.related_type == QR,
            Alert.related_id == str(assessment_id),
            Alert.acknowledged_at.is_not(None),
        )
    )
    return {escalation_key(instrument_id, r, str(assessment_id)) for r in rules}


def citation_text(protocol: Protocol, cited: Any) -> str:
    if cited is None:
        return ""
    text = cited.citation + (f' ("{cited.quote}")' if cited.quote else "")
    if cited.unverified:
        text += " [unverified: " + " ".join(dict.fromkeys(cited.notes)) + "]"
    return text + f" - protocol {protocol.id} v{protocol.version}"


def band_label(protocol: Protocol, instrument_id: str, total: int, band: Any) -> str | None:
    """The program's wording for the band (its protocol's scheme), else the instrument's."""
    scheme = protocol.instrument(instrument_id).band_scheme
    found = scheme.band_for(total) if scheme else None
    if found is not None:
        return found.label
    return band.label if band is not None else None


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
    assessed_at = assessed_at or now
    patient = _patient(
        access, patient_id, (Permission.CREATE, QR), (Permission.CREATE, "Observation")
    )
    episode = _open_episode(patient)
    current = program_protocol(access.db, patient.program_id)
    protocol = current.protocol
    if instrument_id not in protocol.instruments:
        covered = ", ".join(protocol.instruments)
        raise InvalidInput(
            "questionnaire",
            f"{instrument_id!r} is not a withdrawal instrument of this "
            f"program's protocol (it covers: {covered})",
        )
    instrument = get_instrument(instrument_id)
    scheme = protocol.instrument(instrument_id).band_scheme
    result = score(instrument, answers, scheme.id if scheme else None)
    if assessed_at.tzinfo is None:
        raise InvalidInput("assessed_at", "needs a time zone")
    if assessed_at > now + CLOCK_SKEW:
        raise InvalidInput("assessed_at", "cannot be in the future")
    if assessed_at < episode.admitted_at:
        raise InvalidInput("assessed_at", "cannot be before the patient was admitted")
    assessed_at = min(assessed_at, now)
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

    series = _series(access.db, episode.id, instrument.id)
    latest = series[-1]
    context = as_context(_context_row(access.db, episode.id))
    state = evaluate(
        protocol,
        instrument.id,
        [_scored(a) for a in series],
        now,
        context=context,
        acknowledged=_acknowledged(access.db, patient.id, instrument.id, latest.id),
    )
    if latest.id == row.id:
        row.due_at = state.due_at
        row.interval_minutes = state.interval.minutes
    _write_monitoring(access.db, episode, protocol, version_id, series, state, now)
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
        resource_type="Observation",
        resource_id=f"{row.id}-total",
        patient_id=patient.id,
        detail=f"{len(observations)} observations of assessment {row.id}",
    )
    return SavedAssessment(row, state, raised, observations)


def _write_monitoring(
    db: Session,
    episode: Episode,
    protocol: Protocol,
    version_id: int,
    series: Sequence[AssessmentRow],
    state: MonitoringState,
    now: datetime,
) -> None:
    latest = series[-1]
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
    fill_monitoring(monitoring, protocol, version_id, series, state, now)
    db.flush()
    refresh_alerts(db, episode.patient_id)


def refresh_alerts(db: Session, patient_id: str | None = None) -> None:
    """Copy the open-alert summary (count, most severe) onto the patient's monitoring rows, or
    onto every monitoring row when `patient_id` is None (after a bulk load). One statement."""
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
    series: Sequence[AssessmentRow],
    state: MonitoringState,
    now: datetime,
) -> None:
    """Copy what the census shows from the evaluated state into the denormalised row."""
    latest = series[-1]
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
        [int(a.assessed_at.timestamp() // 60), a.total] for a in series[-TREND_POINTS:]
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


def get_assessment(access: Access, assessment_id: int) -> AssessmentRow:
    return read_row(access, QR, AssessmentRow, assessment_id)


# --------------------------------------------------------------------------- doses given


def dose_options(db: Session, assessment: AssessmentRow) -> tuple[MedicationOption, ...]:
    """The protocol's suggestions for this assessment's total, under the version it was scored by."""
    protocol = protocol_version(db, assessment.protocol_version_id)
    row = protocol.instrument(assessment.instrument_id).row_for(assessment.total)
    if row is None:
        return ()
    return tuple(
        MedicationOption(
            drug=m.drug,
            dose_text=m.dose_text,
            route=m.route,
            repeat=m.repeat,
            note=m.note,
            source=protocol.cite(m.source),
        )
        for m in row.medication
    )


@dataclass(frozen=True)
class DoseInput:
    assessment_id: int
    suggestion: int
    dose: str
    route: str
    administered_at: datetime
    indication: str = ""
    note: str = ""


def record_dose(
    access: Access, patient_id: str, given: DoseInput, now: datetime | None = None
) -> MedicationAdministrationRow:
    """Record an as-needed dose given, linked to the assessment that prompted it. Only a dose the
    protocol suggests for that assessment's score, within its range, is accepted."""
    now = now or utcnow()
    patient = _patient(access, patient_id, (Permission.CREATE, "MedicationAdministration"))
    assessment = access.db.get(AssessmentRow, given.assessment_id)
    if assessment is None or assessment.patient_id != patient.id:
        raise InvalidInput("assessment", "choose an assessment of this patient")
    options = dose_options(access.db, assessment)
    if not options:
        raise InvalidInput(
            "suggestion",
            f"the protocol suggests no medication for "
            f"{assessment.instrument_id} {assessment.total}",
        )
    if not 0 <= given.suggestion < len(options):
        raise InvalidInput("suggestion", "choose one of the protocol's suggestions")
    option = options[given.suggestion]
    try:
        value, unit = check_dose(option.dose_text, given.dose)
    except DoseRefused as exc:
        raise InvalidInput(exc.field, exc.message) from None
    route = option.route or given.route
    if route not in ROUTES:
        raise InvalidInput("route", f"choose one of {', '.join(ROUTES)}")
    when = given.administered_at
    if when.tzinfo is None:
        raise InvalidInput("administered_at", "needs a time zone")
    if when > now + CLOCK_SKEW:
        raise InvalidInput("administered_at", "cannot be in the future")
    if when < assessment.assessed_at:
        raise InvalidInput("administered_at", "cannot be before the assessment that prompted it")
    indication = given.indication.strip() or (
        f"{short_name(get_instrument(assessment.instrument_id))} {assessment.total}"
        + (f" ({assessment.band_label})" if assessment.band_label else "")
    )
    row = MedicationAdministrationRow(
        patient_id=patient.id,
        program_id=patient.program_id,
        medication_id=option.drug,
        medication_text=f"{option.drug} {_plain(value)} {unit}",
        dose_value=value,
        dose_unit=unit,
        route=route,
        status="completed",
        status_reason="",
        indication=indication[:2000],
        administered_at=min(when, now),
        performer_id=access.actor.user_id,
        assessment_id=assessment.id,
        note=(
            given.note.strip() + f"\nProtocol suggestion: {option.drug} {option.dose_text}; "
            f"{option.source.citation}"
        ).strip()[:4000],
        recorded_at=now,
    )
    access.db.add(row)
    access.db.flush()
    access.audit(
        "create",
        resource_type="MedicationAdministration",
        resource_id=str(row.id),
        patient_id=patient.id,
    )
    return row


def _plain(value: Decimal) -> str:
    return format(value.normalize(), "f")


# --------------------------------------------------------------------------- the chart


@dataclass
class InstrumentView:
    instrument: Instrument
    state: MonitoringState | None
    assessments: list[AssessmentRow]
    error: str | None = None


@dataclass
class WithdrawalChart:
    patient: Patient
    episode: Episode | None
    protocol: ProgramProtocol
    context: WithdrawalContextRow | None
    flags: list[Flag]
    views: list[InstrumentView]
    doses: list[MedicationAdministrationRow]
    performers: dict[int, str]
    alerts: Sequence[Alert]
    zone: str

    @property
    def assessments(self) -> list[AssessmentRow]:
        return sorted((a for v in self.views for a in v.assessments), key=lambda a: a.assessed_at)


def withdrawal_chart(
    access: Access, patient: Patient, now: datetime | None = None
) -> WithdrawalChart:
    """Everything the withdrawal tab shows for the open episode (the caller has read the chart)."""
    now = now or utcnow()
    ref = patient_ref(patient)
    access.require(Permission.SEARCH, QR, ref)
    access.require(Permission.SEARCH, "MedicationAdministration", ref)
    episode = open_episode(patient)
    current = program_protocol(access.db, patient.program_id)
    context_row = _context_row(access.db, episode.id) if episode else None
    context = as_context(context_row)
    flags = context_flags(current.protocol, context, now=now) if context else []
    views: list[InstrumentView] = []
    doses: list[MedicationAdministrationRow] = []
    if episode is not None:
        rows = list(
            access.db.scalars(
                select(AssessmentRow)
                .where(AssessmentRow.episode_id == episode.id)
                .order_by(AssessmentRow.assessed_at, AssessmentRow.id)
            )
        )
        for instrument_id in current.protocol.instruments:
            series = [a for a in rows if a.instrument_id == instrument_id]
            if not series:
                continue
            view = InstrumentView(get_instrument(instrument_id), None, series)
            try:
                view.state = evaluate(
                    current.protocol,
                    instrument_id,
                    [_scored(a) for a in series],
                    now,
                    context=context,
                    acknowledged=_acknowledged(access.db, patient.id, instrument_id, series[-1].id),
                )
            except ValueError as exc:  # MonitoringError: told on the page, not hidden
                view.error = str(exc)
            views.append(view)
        doses = list(
            access.db.scalars(
                select(MedicationAdministrationRow)
                .where(
                    MedicationAdministrationRow.patient_id == patient.id,
                    MedicationAdministrationRow.administered_at >= episode.admitted_at,
                )
                .order_by(MedicationAdministrationRow.administered_at)
            )
        )
    performers = dict(
        access.db.execute(
            select(User.id, User.display_name).where(
                User.id.in_(
                    {d.performer_id for d in doses}
                    | {
                        a.recorded_by
                        for v in views
                        for a in v.assessments
                        if a.recorded_by is not None
                    }
                )
            )
        ).all()
    )
    may_see_alerts = decide(access.actor, Permission.SEARCH, alerts.RESOURCE, ref)
    open_alerts = alerts.open_alerts_for_patient(access, patient) if may_see_alerts else []
    access.audit("search", resource_type=QR, patient_id=patient.id, query="withdrawal chart")
    return WithdrawalChart(
        patient,
        episode,
        current,
        context_row,
        flags,
        views,
        doses,
        performers,
        open_alerts,
        patient.program.time_zone,
    )


# --------------------------------------------------------------------------- census


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


def census_statement(unit_id: int, now: datetime, limit: int | None = None, offset: int = 0):  # type: ignore[no-untyped-def]
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
    page = (
        select(m.id.label("id"))
        .where(in_unit)
        .order_by(
            m.alert_rank.desc(),
            case((overdue, 0), else_=1),
            case((overdue, m.due_at), else_=None),
            m.band_rank.desc(),
            case((m.due_at.is_(None), 0), else_=1),
            m.due_at,
            m.id,
        )
        .limit(limit)
        .offset(offset)
        .subquery("page")
    )

    def count(*where):  # type: ignore[no-untyped-def]
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
        .order_by(
            m.alert_rank.desc(),
            case((overdue, 0), else_=1),
            case((overdue, m.due_at), else_=None),
            m.band_rank.desc(),
            case((m.due_at.is_(None), 0), else_=1),
            m.due_at,
            m.id,
        )
    )


def census_rows(
    db: Session, unit_id: int, now: datetime, limit: int | None = None, offset: int = 0
) -> tuple[list[CensusRow], dict[str, int]]:
    """One page of the census (every row when `limit` is None) and the unit's counts."""
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
    escalations that have come due on the unit."""
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
    access.audit("search", resource_type=QR, query=query_text or f"census unit={unit.id}")
    return Census(unit, program, rows, now, page=page, page_size=page_size, **counts)


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
        local = monitoring.due_at.astimezone(ZoneInfo(program.time_zone if program else "UTC"))
        raised.append(
            alerts.raise_alert(
                access,
                patient_id=monitoring.patient_id,
                program_id=monitoring.program_id,
                kind=OVERDUE_KIND,
                severity=rule.severity,
                title=rule.message,
                detail=f"due {local:%Y-%m-%d %H:%M %Z}, overdue by {late} min (threshold {rule.minutes} min)",
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


# --------------------------------------------------------------------------- FHIR searches


@dataclass(frozen=True)
class ObservationQuery:
    patient_id: str | None = None
    codes: tuple[tuple[str, str | None], ...] = ()  # (instrument id, code or None for every code)
    date_ge: datetime | None = None
    date_gt: datetime | None = None
    date_le: datetime | None = None
    date_lt: datetime | None = None
    count: int = 20
    offset: int = 0


def search_observations(
    access: Access, query: ObservationQuery, query_text: str = ""
) -> tuple[list[tuple[ObservationRow, AssessmentRow]], bool]:
    o, a = ObservationRow, AssessmentRow
    stmt = select(o, a).join(a, a.id == o.assessment_id)
    if query.codes:
        stmt = stmt.where(
            or_(
                *(
                    and_(o.instrument_id == inst, o.code == code)
                    if code is not None
                    else o.instrument_id == inst
                    for inst, code in query.codes
                )
            )
        )
    for bound, op in (
        (query.date_ge, "__ge__"),
        (query.date_gt, "__gt__"),
        (query.date_le, "__le__"),
        (query.date_lt, "__lt__"),
    ):
        if bound is not None:
            stmt = stmt.where(getattr(o.effective_at, op)(bound))
    page = search_page(
        access,
        "Observation",
        stmt,
        patient_column=a.patient_id,
        program_column=a.program_id,
        patient_of=lambda row: row[0].patient_id,
        order=(o.effective_at.desc(), o.id),
        patient_id=query.patient_id,
        count=query.count,
        offset=query.offset,
        query_text=query_text,
        scalars=False,
    )
    return [(obs, assessment) for obs, assessment in page.rows], page.has_more


def get_observation(access: Access, observation_id: int) -> tuple[ObservationRow, AssessmentRow]:
    found = access.db.execute(
        select(ObservationRow, AssessmentRow)
        .join(AssessmentRow, AssessmentRow.id == ObservationRow.assessment_id)
        .where(ObservationRow.id == observation_id)
    ).first()
    if found is None:
        raise NotFound(f"Observation/{observation_id} is not known")
    obs, assessment = found
    access.require(
        Permission.READ,
        "Observation",
        PatientRef(assessment.patient_id, assessment.program_id),
        resource_id=str(observation_id),
    )
    access.audit(
        "read", resource_type="Observation", resource_id=str(obs.id), patient_id=obs.patient_id
    )
    return obs, assessment


def search_administrations(
    access: Access, patient_id: str | None, count: int, offset: int, query_text: str = ""
) -> tuple[list[MedicationAdministrationRow], bool]:
    m = MedicationAdministrationRow
    page = search_page(
        access,
        "MedicationAdministration",
        select(m),
        patient_column=m.patient_id,
        program_column=m.program_id,
        patient_of=lambda row: row.patient_id,
        order=(m.administered_at.desc(), m.id),
        patient_id=patient_id,
        count=count,
        offset=offset,
        query_text=query_text,
    )
    return page.rows, page.has_more


def get_administration(access: Access, administration_id: int) -> MedicationAdministrationRow:
    return read_row(
        access, "MedicationAdministration", MedicationAdministrationRow, administration_id
    )


def raise_overdue_everywhere(sessions: sessionmaker[Session], now: datetime) -> int:
    """The scheduled job: overdue escalations on every detox unit, without waiting for someone
    to open the census. Returns how many alerts it raised."""
    with session_scope(sessions) as db:
        access = system_access(db, sessions, "withdrawal.overdue")
        units = db.scalars(select(Unit.id).where(Unit.kind == "detox").order_by(Unit.id)).all()
        return sum(len(raise_overdue(access, unit_id, now)) for unit_id in units)
