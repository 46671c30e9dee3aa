"""Therapy sessions: booked ahead (FHIR Appointment), rescheduled or cancelled, and attendance
recorded by staff once the time has come (attended, missed; an attended session is also an
Encounter). Pure checks first, then the services; services never commit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from tandem.access.guard import Access
from tandem.access.policy import Permission
from tandem.access.queries import load_patient, read_row
from tandem.clock import CLOCK_SKEW
from tandem.errors import InvalidInput
from tandem.recovery.care_plans import check_service, staff_member
from tandem.recovery.storage import CarePlanRow, TherapySessionRow
from tandem.recovery.use_records import patient_rows
from tandem.storage.models import Patient

APPOINTMENT = "Appointment"
STATUSES = ("booked", "attended", "missed", "cancelled")
STATUS_LABELS = {
    "booked": "Booked",
    "attended": "Attended",
    "missed": "Missed",
    "cancelled": "Cancelled",
}
MIN_MINUTES, MAX_MINUTES = 5, 480
# How far ahead a session may be booked: a typing error in the year is refused.
MAX_AHEAD = timedelta(days=366)


# --------------------------------------------------------------------------- pure checks


def check_booking(
    starts_at: datetime, minutes: int, now: datetime, field: str = "starts_at"
) -> None:
    if starts_at.tzinfo is None or starts_at.utcoffset() is None:
        raise InvalidInput(field, "needs a time zone")
    if starts_at < now - CLOCK_SKEW:
        raise InvalidInput(field, "a session is booked ahead: choose a time from now on")
    if starts_at > now + MAX_AHEAD:
        raise InvalidInput(field, "at most a year ahead")
    if not MIN_MINUTES <= minutes <= MAX_MINUTES:
        raise InvalidInput("minutes", f"between {MIN_MINUTES} and {MAX_MINUTES} minutes")


def check_attendance(status: str, wanted: str, starts_at: datetime, now: datetime) -> None:
    """Attended or missed once the session's time has come; cancelled while still booked."""
    if wanted not in ("attended", "missed", "cancelled"):
        raise InvalidInput("status", "attended, missed or cancelled")
    if status == "cancelled":
        raise InvalidInput("status", "the session was cancelled")
    if wanted == "cancelled":
        if status != "booked":
            raise InvalidInput("status", f"the session is already recorded as {status}")
        return
    if starts_at > now + CLOCK_SKEW:
        raise InvalidInput("status", "attendance is recorded once the session has started")
    if status == wanted:
        raise InvalidInput("status", f"already recorded as {wanted}")


# --------------------------------------------------------------------------- services


def _active_plan_id(access: Access, patient: Patient) -> int | None:
    return access.db.scalar(
        select(CarePlanRow.id).where(
            CarePlanRow.patient_id == patient.id, CarePlanRow.retention == "active"
        )
    )


def book_session(
    access: Access,
    patient_id: str,
    *,
    service: str,
    starts_at: datetime,
    minutes: int,
    now: datetime,
    staff_id: int | None = None,
    note: str = "",
) -> TherapySessionRow:
    patient = load_patient(access, patient_id, (Permission.CREATE, APPOINTMENT), audit=False)
    check_service(service)
    check_booking(starts_at, minutes, now)
    staff = staff_member(access, staff_id, patient.program_id, "staff")
    row = TherapySessionRow(
        patient_id=patient.id,
        program_id=patient.program_id,
        care_plan_id=_active_plan_id(access, patient),
        service=service,
        starts_at=starts_at,
        minutes=minutes,
        staff_id=staff,
        status="booked",
        note=note.strip()[:2000],
        created_at=now,
        created_by=access.actor.user_id or None,
    )
    access.db.add(row)
    access.db.flush()
    access.audit(
        "create",
        resource_type=APPOINTMENT,
        resource_id=str(row.id),
        patient_id=patient.id,
        detail=f"{service} at {starts_at.isoformat()}",
    )
    return row


def _session_for_update(
    access: Access, patient_id: str, session_id: int
) -> tuple[Patient, TherapySessionRow]:
    patient = load_patient(access, patient_id, (Permission.UPDATE, APPOINTMENT), audit=False)
    row = access.db.get(TherapySessionRow, session_id)
    if row is None or row.patient_id != patient.id:
        raise InvalidInput("session", "choose one of this patient's sessions")
    return patient, row


def reschedule_session(
    access: Access,
    patient_id: str,
    session_id: int,
    *,
    starts_at: datetime,
    minutes: int,
    now: datetime,
) -> TherapySessionRow:
    patient, row = _session_for_update(access, patient_id, session_id)
    if row.status != "booked":
        raise InvalidInput("starts_at", f"a session {row.status} cannot be moved")
    check_booking(starts_at, minutes, now)
    before = row.starts_at
    row.starts_at = starts_at
    row.minutes = minutes
    access.db.flush()
    access.audit(
        "update",
        resource_type=APPOINTMENT,
        resource_id=str(row.id),
        patient_id=patient.id,
        detail=f"moved from {before.isoformat()} to {starts_at.isoformat()}",
    )
    return row


def record_attendance(
    access: Access,
    patient_id: str,
    session_id: int,
    *,
    status: str,
    now: datetime,
    note: str = "",
) -> TherapySessionRow:
    patient, row = _session_for_update(access, patient_id, session_id)
    check_attendance(row.status, status, row.starts_at, now)
    before = row.status
    row.status = status
    row.status_at = now
    row.status_by = access.actor.user_id or None
    if note.strip():
        row.note = note.strip()[:2000]
    access.db.flush()
    access.audit(
        "update",
        resource_type=APPOINTMENT,
        resource_id=str(row.id),
        patient_id=patient.id,
        detail=f"{before} → {status}",
    )
    return row


def patient_sessions(access: Access, patient: Patient) -> list[TherapySessionRow]:
    """The patient's sessions, the latest first."""
    return patient_rows(
        access,
        APPOINTMENT,
        TherapySessionRow,
        select(TherapySessionRow).order_by(
            TherapySessionRow.starts_at.desc(), TherapySessionRow.id.desc()
        ),
        patient,
        f"patient={patient.id}",
    )


def get_session(
    access: Access, session_id: int, resource_type: str = APPOINTMENT
) -> TherapySessionRow:
    return read_row(access, resource_type, TherapySessionRow, session_id)


@dataclass(frozen=True)
class Attendance:
    attended: int
    missed: int
    cancelled: int
    booked: int

    @property
    def percent_attended(self) -> float | None:
        held = self.attended + self.missed
        return None if held == 0 else round(100 * self.attended / held, 1)


def attendance(rows: list[TherapySessionRow]) -> Attendance:
    """Counts of a patient's sessions by status (pure over the rows)."""
    count = {s: 0 for s in STATUSES}
    for r in rows:
        count[r.status] = count.get(r.status, 0) + 1
    return Attendance(count["attended"], count["missed"], count["cancelled"], count["booked"])
