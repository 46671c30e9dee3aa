"""Raise, list and acknowledge alerts. Every read and change asks the policy and is audited.

An alert is never deleted or edited after acknowledgement: acknowledging records who, when and
their note. Lists put unacknowledged alerts first, most severe first, newest first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Case, ColumnElement, case, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from tandem.access.guard import Access
from tandem.access.policy import PatientRef, Permission, decide
from tandem.access.queries import audit_shown
from tandem.alerts.models import Alert
from tandem.errors import InvalidInput, NotFound
from tandem.storage.db import utcnow
from tandem.storage.models import Patient, User

RESOURCE = "Alert"
# Alert severities, most severe last: the withdrawal protocol's (info..critical) and the
# shared table's (low..high) on one ladder, so a list can sort them together.
SEVERITY_RANK = {"info": 0, "low": 0, "warning": 1, "medium": 1, "high": 2, "critical": 3}
MAX_NOTE = 2000


def severity_rank(severity: str) -> int:
    return SEVERITY_RANK.get(severity, 1)


def severity_rank_sql(column: ColumnElement[str] | InstrumentedAttribute[str]) -> Case[int]:
    """The same ladder as a SQL expression, for sorting and aggregating in one query."""
    return case(*((column == name, rank) for name, rank in SEVERITY_RANK.items()), else_=1)


def _changed(db: Session, patient_id: str | None) -> None:
    """Domains that keep a summary of a patient's open alerts (e.g. the detox census) list a
    listener in their DOMAIN; it runs in the same unit of work."""
    from tandem.domains import alert_listeners

    if patient_id is None:
        return
    for listener in alert_listeners():
        listener(db, patient_id)


def raise_alert(
    access: Access,
    *,
    patient_id: str | None,
    program_id: int,
    kind: str,
    severity: str,
    title: str,
    detail: str = "",
    source: str = "",
    rule_id: str = "",
    related_type: str | None = None,
    related_id: str | None = None,
    for_role: str = "prescriber",
    for_user_id: int | None = None,
    raised_at: datetime | None = None,
) -> Alert:
    """Add an alert to the caller's unit of work. The caller has already been allowed the change
    that raised it (e.g. saving an assessment); raising is a consequence, audited here.
    `patient_id` None: an alert about no patient's record (a visitor's crisis message).
    `for_user_id`: a member of staff it is addressed to as well as `for_role` (a counselor of
    the patient's care team)."""
    alert = Alert(
        patient_id=patient_id,
        program_id=program_id,
        kind=kind,
        rule_id=rule_id[:80],
        severity=severity,
        for_role=for_role,
        for_user_id=for_user_id,
        title=title[:200],
        detail=detail,
        source=source,
        related_type=related_type,
        related_id=related_id,
        raised_at=raised_at or utcnow(),
        acknowledgement_note="",
    )
    access.db.add(alert)
    access.db.flush()
    access.audit(
        "create",
        resource_type=RESOURCE,
        resource_id=str(alert.id),
        patient_id=patient_id,
        detail=(
            f"{kind} {rule_id}: {title} (for the {for_role}"
            + (f" and user {for_user_id})" if for_user_id is not None else ")")
        )[:2000],
    )
    _changed(access.db, patient_id)
    return alert


ROLE_WORDS = {"prescriber": "the prescriber on duty", "counselor": "the counselors"}


@dataclass(frozen=True)
class AlertView:
    alert: Alert
    patient_name: str  # "" for an alert about no patient
    acknowledged_by_name: str | None
    addressee_name: str | None = None  # the member of staff it is addressed to, if any

    @property
    def about(self) -> str:
        return self.patient_name or "Not a patient (a visitor)"

    @property
    def addressed_to(self) -> str:
        """Who the alert is for, in words: "the prescriber on duty and Casey Counselor"."""
        role = ROLE_WORDS.get(self.alert.for_role, f"the {self.alert.for_role}")
        if self.addressee_name:
            return f"{role} and {self.addressee_name}"
        return role

    def is_for(self, user_id: int) -> bool:
        return self.alert.for_user_id is not None and self.alert.for_user_id == user_id


def open_for_me(access: Access) -> int:
    """How many unacknowledged alerts of the actor's programs are addressed to them by name
    (the number beside Alerts in their menu; a count, no record shown; see `Access.count`)."""
    if not access.actor.program_ids or not access.actor.user_id:
        return 0
    programs = sorted(access.actor.program_ids)
    if not any(decide(access.actor, Permission.SEARCH, RESOURCE, program_id=p) for p in programs):
        return 0
    count = (
        select(func.count())
        .select_from(Alert)
        .where(
            Alert.for_user_id == access.actor.user_id,
            Alert.acknowledged_at.is_(None),
            Alert.program_id.in_(programs),
        )
    )
    return access.count(count)


def list_alerts(
    access: Access,
    program_id: int,
    *,
    include_acknowledged: bool = True,
    limit: int = 200,
    query_text: str = "",
) -> list[AlertView]:
    """A program's alerts: unacknowledged first (most severe, then newest), then acknowledged."""
    access.require(Permission.SEARCH, RESOURCE, program_id=program_id)
    acknowledger = (
        select(User.display_name).where(User.id == Alert.acknowledged_by).scalar_subquery()
    )
    addressee = select(User.display_name).where(User.id == Alert.for_user_id).scalar_subquery()
    stmt = (
        select(Alert, Patient.family, Patient.given, acknowledger, addressee)
        .outerjoin(Patient, Patient.id == Alert.patient_id)
        .where(Alert.program_id == program_id)
        .order_by(
            Alert.acknowledged_at.is_not(None),
            severity_rank_sql(Alert.severity).desc(),
            Alert.raised_at.desc(),
            Alert.id.desc(),
        )
        .limit(limit)
    )
    if not include_acknowledged:
        stmt = stmt.where(Alert.acknowledged_at.is_(None))
    views = [
        AlertView(alert, f"{(family or '').upper()}, {given or ''}".strip(", "), by, to)
        for alert, family, given, by, to in access.db.execute(stmt)
    ]
    patients = {v.alert.patient_id for v in views if v.alert.patient_id is not None}
    audit_shown(access, RESOURCE, patients, query_text or f"program={program_id}")
    return views


def open_alerts_for_patient(access: Access, patient: Patient) -> Sequence[Alert]:
    """The patient's unacknowledged alerts, most severe first (the caller has read the chart)."""
    access.require(Permission.SEARCH, RESOURCE, PatientRef(patient.id, patient.program_id))
    rows = access.db.scalars(
        select(Alert)
        .where(Alert.patient_id == patient.id, Alert.acknowledged_at.is_(None))
        .order_by(severity_rank_sql(Alert.severity).desc(), Alert.raised_at.desc())
    ).all()
    access.audit("search", resource_type=RESOURCE, patient_id=patient.id, query="open")
    return rows


def acknowledge(access: Access, alert_id: int, note: str, now: datetime | None = None) -> Alert:
    """Record that the actor has seen the alert, with their note. Audited; never undone."""
    now = now or utcnow()
    alert = access.db.get(Alert, alert_id)
    if alert is None:
        raise NotFound(f"alert {alert_id} is not known")
    if alert.patient_id is None:
        access.require(
            Permission.UPDATE, RESOURCE, program_id=alert.program_id, resource_id=str(alert_id)
        )
    else:
        access.require(
            Permission.UPDATE,
            RESOURCE,
            PatientRef(alert.patient_id, alert.program_id),
            resource_id=str(alert_id),
        )
    if alert.acknowledged_at is not None:
        raise InvalidInput("alert", "this alert has already been acknowledged")
    note = note.strip()
    if not note:
        # The acknowledgement is the record of what the prescriber did about the alert.
        raise InvalidInput("note", "say what you did about the alert (e.g. 'reviewed, no change')")
    if len(note) > MAX_NOTE:
        raise InvalidInput("note", f"keep the note under {MAX_NOTE} characters")
    alert.acknowledged_at = now
    alert.acknowledged_by = access.actor.user_id
    alert.acknowledgement_note = note
    access.db.flush()
    access.audit(
        "update",
        resource_type=RESOURCE,
        resource_id=str(alert.id),
        patient_id=alert.patient_id,
        detail=f"acknowledged: {note}"[:2000],
    )
    _changed(access.db, alert.patient_id)
    return alert
