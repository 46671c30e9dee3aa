"""The missed-dose alert: raised for the prescriber when a plan's doses go missed (or
unrecorded) in a run as long as the monograph's threshold, once per run. Checked whenever a
dose is recorded, and swept over every active plan on a schedule (`sweep_missed_doses_everywhere`,
a job in the medications DOMAIN; `tandem med sweep` runs it by hand)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from tandem.access.guard import Access, system_access
from tandem.access.policy import Permission
from tandem.access.queries import visible
from tandem.alerts.models import Alert
from tandem.alerts.service import raise_alert
from tandem.clock import local, program_today, utcnow
from tandem.medications.dose_calendar import plan_doses, recorded_doses
from tandem.medications.monograph import load_monograph
from tandem.medications.plans import effective_status
from tandem.medications.resources import ALERT, PLAN
from tandem.medications.schedule import check_missed_run
from tandem.medications.search import patient_rows
from tandem.medications.storage import DosePlanRow
from tandem.storage.db import session_scope
from tandem.storage.models import Patient

__all__ = [
    "JOB",
    "open_missed_dose_alerts",
    "raise_missed_dose_alert",
    "sweep_missed_doses",
    "sweep_missed_doses_everywhere",
]

JOB = "medications.missed_doses"
KIND = "missed_doses"


def raise_missed_dose_alert(
    access: Access, patient: Patient, row: DosePlanRow, now: datetime
) -> Alert | None:
    """Raise the monograph's missed-run alert for the prescriber, once per run of missed doses.
    A consequence of a change the caller was allowed (a dose recorded) or of the sweep."""
    today = program_today(patient.program.time_zone, now)
    if effective_status(row, today) != "active":
        return None
    doses = plan_doses(row, patient, today, recorded_doses(access.db, row), now)
    found = check_missed_run(row.medication_id, doses, now)
    if found is None:
        return None
    already = access.db.scalar(
        select(Alert.id).where(
            Alert.kind == KIND,
            Alert.related_type == PLAN,
            Alert.related_id == str(row.id),
            Alert.raised_at >= found.since,
        )
    )
    if already is not None:
        return None
    mono = load_monograph(row.medication_id)
    time_zone = patient.program.time_zone
    title = f"{mono.name}: {found.missed} doses in a row missed or not recorded"
    detail = (
        f"{found.reason} From {local(found.since, time_zone):%d %b %H:%M} to "
        f"{local(found.last_missed, time_zone):%d %b %H:%M} ({time_zone}), no dose of "
        f"plan {row.id} was recorded as given or taken (a dose with no record 12 hours after it "
        f"was due counts as missed)."
    )
    if found.threshold_unverified and found.note:
        detail += f" Threshold {found.threshold} is unverified: {found.note}"
    return raise_alert(
        access,
        patient_id=patient.id,
        program_id=patient.program_id,
        kind=KIND,
        severity="high",
        title=title,
        detail=detail,
        source="; ".join(s.citation for s in found.source),
        rule_id=f"{row.medication_id}.missed_run",
        related_type=PLAN,
        related_id=str(row.id),
        for_role="prescriber",
        raised_at=now,
    )


def sweep_missed_doses(access: Access, now: datetime | None = None) -> list[Alert]:
    """Check every active plan the actor may see for a missed run (run it on a schedule).
    Audited as one search of plans; it shows nobody a record (each alert raised is audited)."""
    now = now or utcnow()
    access.require(Permission.SEARCH, PLAN)
    statement = (
        select(DosePlanRow, Patient)
        .join(Patient, Patient.id == DosePlanRow.patient_id)
        .where(
            DosePlanRow.status == "active",
            visible(access, PLAN, DosePlanRow.patient_id, DosePlanRow.program_id),
        )
        .order_by(DosePlanRow.id)
        .options(selectinload(Patient.program))
    )
    raised = []
    for row, patient in access.db.execute(statement).all():
        alert = raise_missed_dose_alert(access, patient, row, now)
        if alert is not None:
            raised.append(alert)
    access.audit("search", resource_type=PLAN, query="missed-dose sweep")
    return raised


def sweep_missed_doses_everywhere(sessions: sessionmaker[Session], now: datetime) -> int:
    """The scheduled job: `sweep_missed_doses` over every program. Returns alerts raised."""
    with session_scope(sessions) as db:
        return len(sweep_missed_doses(system_access(db, sessions, JOB), now))


def open_missed_dose_alerts(access: Access, patient: Patient) -> list[Alert]:
    """The patient's unacknowledged missed-dose alerts, newest first."""
    return patient_rows(
        access,
        ALERT,
        Alert,
        select(Alert)
        .where(Alert.kind == KIND, Alert.acknowledged_at.is_(None))
        .order_by(Alert.raised_at.desc()),
        patient,
        "missed_doses open",
    )
