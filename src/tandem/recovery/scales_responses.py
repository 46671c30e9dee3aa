"""Self-report scales answered (PHQ-9, GAD-7, PACS, AUDIT, AUDIT-C, DAST-10): the one save path
(the staff form, the patient's own form and the FHIR API alike), reads and searches.

Scoring is the instrument engine's; which scales exist and which flags are urgent is data
(`scales_catalog`). Every read and write goes through `tandem.access.queries` and is audited in
the caller's unit of work; the caller commits. An urgent flag (PHQ-9 item 9 above 0) marks the
response urgent and raises an alert to the care team in the same unit of work: both are stored,
or neither.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select

from tandem.access.guard import Access
from tandem.access.policy import Permission, Role
from tandem.access.queries import Page, load_patient, read_row, search_page
from tandem.alerts import service as alerts
from tandem.alerts.models import Alert
from tandem.clock import check_recorded_at, program_today, utcnow
from tandem.instruments.engine import Score, score
from tandem.recovery.care_plans import care_team_counselor
from tandem.recovery.scales_catalog import Scale, scale
from tandem.recovery.storage import QuestionnaireResponseRow
from tandem.storage.models import Patient

QR = "QuestionnaireResponse"
ALERT_KIND = "self_report_urgent"
ALERT_SEVERITY = "critical"  # the top of the shared ladder (alerts.service.SEVERITY_RANK)


@dataclass
class SavedResponse:
    row: QuestionnaireResponseRow
    result: Score
    scale: Scale
    alerts: list[Alert] = field(default_factory=list)

    @property
    def urgent(self) -> bool:
        return self.row.urgent


def source_of(access: Access, channel: str) -> str:
    """Where a response came from: the API, the patient's own form, or a staff member's."""
    if channel == "api":
        return "api"
    return "portal" if access.actor.role is Role.PATIENT else "staff"


def save_response(
    access: Access,
    patient_id: str,
    instrument_id: str,
    answers: Mapping[str, object],
    authored_at: datetime | None = None,
    *,
    now: datetime | None = None,
    channel: str = "web",
) -> SavedResponse:
    """Validate, score and store one response; raise the urgent alert when a flag calls for it.
    Raises InvalidAnswers (naming every bad item) or InvalidInput before anything is stored."""
    now = now or utcnow()
    patient = load_patient(access, patient_id, (Permission.CREATE, QR), audit=False)
    chosen = scale(instrument_id)
    instrument = chosen.definition
    result = score(instrument, answers)
    authored = check_recorded_at("authored", authored_at or now, now)
    urgent = chosen.urgent(result)
    row = QuestionnaireResponseRow(
        patient_id=patient.id,
        program_id=patient.program_id,
        instrument_id=instrument.id,
        instrument_version=instrument.version,
        answers=dict(result.item_values),
        total=result.total,
        scheme_id=result.scheme_id,
        band_id=result.band.id if result.band else None,
        flags=[f.id for f in result.flags],
        urgent=bool(urgent),
        authored_at=authored,
        day=program_today(patient.program.time_zone, authored),
        source=source_of(access, channel),
        recorded_at=now,
        recorded_by=access.actor.user_id,
    )
    access.db.add(row)
    access.db.flush()
    access.audit(
        "create",
        resource_type=QR,
        resource_id=str(row.id),
        patient_id=patient.id,
        detail=f"{instrument.id} total {result.total}" + (" URGENT" if urgent else ""),
    )
    raised = [
        _raise_urgent(access, patient, chosen, result, row, flag_id, now) for flag_id in urgent
    ]
    return SavedResponse(row, result, chosen, raised)


def _raise_urgent(
    access: Access,
    patient: Patient,
    chosen: Scale,
    result: Score,
    row: QuestionnaireResponseRow,
    flag_id: str,
    now: datetime,
) -> Alert:
    flag = next(f for f in result.flags if f.id == flag_id)
    who = "the patient" if row.source == "portal" else "a staff member with the patient"
    return alerts.raise_alert(
        access,
        patient_id=patient.id,
        program_id=patient.program_id,
        kind=ALERT_KIND,
        severity=ALERT_SEVERITY,
        title=f"URGENT: {chosen.short} answer needs a suicide-risk assessment now"[:200]
        if flag_id == "suicide_risk_screen"
        else f"URGENT: {chosen.short} {flag_id.replace('_', ' ')}",
        detail=f"{flag.message} Answered by {who}; {chosen.short} total {result.total}.",
        source=flag.source,
        rule_id=f"{chosen.instrument}.{flag_id}",
        related_type=QR,
        related_id=public_id(row.id),
        # The patient's counselor hears of it too, not only the prescriber on duty.
        for_user_id=care_team_counselor(access, patient),
        raised_at=now,
    )


# --------------------------------------------------------------------------- reads

# A self-report response's FHIR id: "scale-<row id>", so it never collides with a withdrawal
# assessment's numeric QuestionnaireResponse id.
ID_PREFIX = "scale-"


def public_id(row_id: int) -> str:
    return f"{ID_PREFIX}{row_id}"


def row_id_of(public: str) -> int | None:
    """The row id of `scale-<n>`, or None when `public` is not a self-report response's id."""
    if not public.startswith(ID_PREFIX):
        return None
    tail = public[len(ID_PREFIX) :]
    if not tail.isascii() or not tail.isdigit() or len(tail) > 12:
        return None
    return int(tail)


def get_response(access: Access, row_id: int) -> QuestionnaireResponseRow:
    return read_row(access, QR, QuestionnaireResponseRow, row_id)


@dataclass(frozen=True)
class ResponseQuery:
    patient_id: str | None = None
    instrument_ids: Sequence[str] = ()  # empty: every scale
    authored_ge: datetime | None = None
    authored_lt: datetime | None = None
    count: int = 20
    offset: int = 0


def search_responses(
    access: Access,
    query: ResponseQuery,
    *,
    resource_type: str = QR,
    query_text: str = "",
) -> Page[QuestionnaireResponseRow]:
    """Responses the actor may see, newest first; one patient's when `patient_id` is given
    (refused and audited when that patient is out of reach)."""
    r = QuestionnaireResponseRow
    statement = select(r)
    if query.instrument_ids:
        statement = statement.where(r.instrument_id.in_(sorted(set(query.instrument_ids))))
    if query.authored_ge is not None:
        statement = statement.where(r.authored_at >= query.authored_ge)
    if query.authored_lt is not None:
        statement = statement.where(r.authored_at < query.authored_lt)
    return search_page(
        access,
        resource_type,
        statement,
        patient_column=r.patient_id,
        program_column=r.program_id,
        patient_of=lambda row: row.patient_id,
        order=(r.authored_at.desc(), r.id.desc()),
        patient_id=query.patient_id,
        count=query.count,
        offset=query.offset,
        query_text=query_text,
    )
