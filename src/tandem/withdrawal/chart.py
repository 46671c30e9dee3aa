"""The withdrawal tab of a patient's chart: per instrument the series, the monitoring core's
reading of it (due time, band, escalations), the doses given and the open alerts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from tandem.access.accounts import display_names
from tandem.access.guard import Access
from tandem.access.policy import Permission, decide
from tandem.access.queries import patient_ref
from tandem.alerts import service as alerts
from tandem.alerts.models import Alert
from tandem.clock import utcnow
from tandem.instruments.engine import get_instrument
from tandem.instruments.models import Instrument
from tandem.medications.administrations import ADMINISTRATION, given_since
from tandem.medications.storage import MedicationAdministrationRow
from tandem.patients.service import open_episode
from tandem.storage.models import Episode, Patient
from tandem.withdrawal.assessments import QR, acknowledged, episode_assessments, scored
from tandem.withdrawal.context import as_context, context_row
from tandem.withdrawal.monitoring import Flag, MonitoringState, context_flags, evaluate
from tandem.withdrawal.protocols import ProgramProtocol, program_protocol
from tandem.withdrawal.storage import AssessmentRow, WithdrawalContextRow

QUERY = "withdrawal chart"


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
    access.require(Permission.SEARCH, ADMINISTRATION, ref)
    episode = open_episode(patient)
    current = program_protocol(access.db, patient.program_id)
    row = context_row(access.db, episode.id) if episode else None
    context = as_context(row)
    flags = context_flags(current.protocol, context, now=now) if context else []
    views: list[InstrumentView] = []
    doses: list[MedicationAdministrationRow] = []
    if episode is not None:
        rows = episode_assessments(access.db, episode.id)
        for instrument_id in current.protocol.instruments:
            series = [a for a in rows if a.instrument_id == instrument_id]
            if not series:
                continue
            view = InstrumentView(get_instrument(instrument_id), None, series)
            try:
                view.state = evaluate(
                    current.protocol,
                    instrument_id,
                    [scored(a) for a in series],
                    now,
                    context=context,
                    acknowledged=acknowledged(access.db, patient.id, instrument_id, series[-1].id),
                )
            except ValueError as exc:  # MonitoringError: told on the page, not hidden
                view.error = str(exc)
            views.append(view)
        doses = given_since(access, patient, episode.admitted_at, QUERY)
    recorders = {a.recorded_by for v in views for a in v.assessments if a.recorded_by is not None}
    performers = display_names(access.db, {d.performer_id for d in doses} | recorders)
    may_see_alerts = decide(access.actor, Permission.SEARCH, alerts.RESOURCE, ref)
    open_alerts = alerts.open_alerts_for_patient(access, patient) if may_see_alerts else []
    access.audit("search", resource_type=QR, patient_id=patient.id, query=QUERY)
    return WithdrawalChart(
        patient,
        episode,
        current,
        row,
        flags,
        views,
        doses,
        performers,
        open_alerts,
        patient.program.time_zone,
    )
