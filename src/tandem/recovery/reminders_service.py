"""Reminders: what a patient is reminded of in the app (their portal's list), their choices, and
the scheduled job that e-mails due reminders once each.

Once, across server processes: the scheduler already runs the job once a period across every
process (`tandem.scheduler`), but a run may be repeated (a process that died mid-run is taken
over after its lease) and a reminder stays due over several runs. So each reminder is claimed
by inserting its key into `reminders_sent` (unique) and committing, before its e-mail is sent;
a claimer that finds the key taken sends nothing. A failed send is recorded, not retried: a
reminder is sent at most once, never twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from tandem.access.guard import Access, system_access
from tandem.access.policy import Permission
from tandem.access.queries import load_patient, visible
from tandem.clock import program_today, zone
from tandem.medications.dose_calendar import plan_doses, recorded_doses
from tandem.medications.monograph import load_monograph
from tandem.medications.plans import effective_status
from tandem.medications.search import patient_rows
from tandem.medications.storage import DosePlanRow
from tandem.recovery.portal_checkin import portal_data
from tandem.recovery.portal_service import care_plan
from tandem.recovery.portal_storage import (
    PortalSettingRow,
    ReminderPreferenceRow,
    ReminderSentRow,
)
from tandem.recovery.reminders_core import (
    EMAIL_SUBJECT,
    DoseDue,
    Preferences,
    Reminder,
    SessionDue,
    due_reminders,
    email_text,
    parse_clock,
)
from tandem.recovery.reminders_mail import SmtpConfig, send_mail, smtp_config
from tandem.recovery.storage import CarePlanRow, CheckInRow, TherapySessionRow
from tandem.scheduler import process_name
from tandem.storage.db import session_scope
from tandem.storage.models import Episode, Patient, User

log = logging.getLogger("tandem.recovery.reminders")

JOB = "recovery.reminders"
PREFERENCE = "ReminderPreference"
APPOINTMENT = "Appointment"
PLAN = "MedicationRequest"
SERVICE_LABELS = {
    "individual_counseling": "Counseling session",
    "group_therapy": "Group session",
    "family_sessions": "Family session",
    "family_session": "Family session",
    "medication_management": "Medication appointment",
    "peer_support": "Peer support meeting",
}


def session_label(service: str) -> str:
    return SERVICE_LABELS.get(service, "Session")


# --- preferences ------------------------------------------------------------------------------


def _preferences_of(row: ReminderPreferenceRow | None) -> Preferences:
    if row is None:
        return Preferences()
    return Preferences(row.check_in, row.doses, row.sessions, row.email)


def preferences(access: Access, patient: Patient) -> Preferences:
    """The patient's reminder choices (every reminder on until they choose)."""
    rows = patient_rows(
        access,
        PREFERENCE,
        ReminderPreferenceRow,
        select(ReminderPreferenceRow),
        patient,
        "reminder preferences",
    )
    return _preferences_of(rows[0] if rows else None)


def save_preferences(
    access: Access, patient_id: str, chosen: Preferences, now: datetime
) -> Preferences:
    """Keep the patient's reminder choices (the patient, or staff with them)."""
    patient = load_patient(
        access,
        patient_id,
        (Permission.CREATE, PREFERENCE),
        (Permission.UPDATE, PREFERENCE),
        audit=False,
    )
    row = access.db.get(ReminderPreferenceRow, patient.id)
    operation = "update"
    if row is None:
        row = ReminderPreferenceRow(patient_id=patient.id, program_id=patient.program_id)
        access.db.add(row)
        operation = "create"
    row.check_in, row.doses, row.sessions, row.email = (
        chosen.check_in,
        chosen.doses,
        chosen.sessions,
        chosen.email,
    )
    row.updated_at, row.updated_by = now, access.actor.user_id or None
    access.db.flush()
    access.audit(
        operation,
        resource_type=PREFERENCE,
        resource_id=patient.id,
        patient_id=patient.id,
        detail=", ".join(
            f"{name} {'on' if on else 'off'}"
            for name, on in (
                ("check-in", chosen.check_in),
                ("doses", chosen.doses),
                ("sessions", chosen.sessions),
                ("e-mail", chosen.email),
            )
        ),
    )
    return chosen


# --- the program's times ----------------------------------------------------------------------


def program_times(db: Session, program_id: int) -> tuple[str, int]:
    """The program's check-in reminder time ("18:00") and session reminder lead (hours)."""
    row = db.get(PortalSettingRow, program_id)
    if row is not None:
        return row.check_in_reminder_at, row.session_reminder_hours
    defaults = portal_data().reminders
    return defaults.check_in_at, defaults.session_hours


def set_program_times(
    db: Session, program_id: int, check_in_at: str, session_hours: int, set_by: int | None = None
) -> None:
    """A program's own reminder times (an administrator's setting, from the CLI)."""
    parse_clock(check_in_at)
    if not 1 <= session_hours <= 24 * 7:
        raise ValueError("session reminder hours must be from 1 to 168")
    row = db.get(PortalSettingRow, program_id)
    if row is None:
        row = PortalSettingRow(program_id=program_id)
        db.add(row)
    row.check_in_reminder_at, row.session_reminder_hours, row.set_by = (
        check_in_at,
        session_hours,
        set_by,
    )
    db.flush()


# --- what is due ------------------------------------------------------------------------------


def _doses_due(
    db: Session, patient: Patient, plans: list[DosePlanRow], now: datetime
) -> list[DoseDue]:
    today = program_today(patient.program.time_zone, now)
    out = []
    for row in plans:
        if effective_status(row, today) != "active":
            continue
        name = load_monograph(row.medication_id).name
        for dose in plan_doses(row, patient, today, recorded_doses(db, row), now):
            out.append(
                DoseDue(
                    row.id,
                    dose.planned.due_at,
                    f"{name} {dose.planned.mg:g} mg",
                    dose.record is not None,
                )
            )
    return out


def _compute(
    db: Session,
    patient: Patient,
    now: datetime,
    prefs: Preferences,
    plans: list[DosePlanRow],
    sessions: list[TherapySessionRow],
    checked_in_today: bool,
    in_treatment: bool,
) -> list[Reminder]:
    check_in_at, hours = program_times(db, patient.program_id)
    return due_reminders(
        patient_id=patient.id,
        now=now,
        zone=zone(patient.program.time_zone),
        check_in_at=parse_clock(check_in_at),
        checked_in_today=checked_in_today,
        in_treatment=in_treatment,
        doses=_doses_due(db, patient, plans, now),
        sessions=[SessionDue(s.id, s.starts_at, session_label(s.service)) for s in sessions],
        session_hours=hours,
        dose_window=timedelta(minutes=portal_data().reminders.dose_window_minutes),
        preferences=prefs,
    )


def reminders_for(access: Access, patient: Patient, now: datetime) -> list[Reminder]:
    """The reminders the patient's portal lists now (read through the policy, audited)."""
    prefs = preferences(access, patient)
    today = program_today(patient.program.time_zone, now)
    _, hours = program_times(access.db, patient.program_id)
    plans = patient_rows(
        access,
        PLAN,
        DosePlanRow,
        select(DosePlanRow).where(DosePlanRow.status == "active"),
        patient,
        "reminders: dose plans",
    )
    sessions = patient_rows(
        access,
        APPOINTMENT,
        TherapySessionRow,
        select(TherapySessionRow).where(
            TherapySessionRow.status == "booked",
            TherapySessionRow.starts_at > now,
            TherapySessionRow.starts_at <= now + timedelta(hours=hours),
        ),
        patient,
        "reminders: sessions",
    )
    checked = patient_rows(
        access,
        "CheckIn",
        CheckInRow,
        select(CheckInRow.id).where(CheckInRow.day == today).limit(1),
        patient,
        "reminders: check-in today",
    )
    in_treatment = (
        any(e.is_open for e in patient.episodes) or care_plan(access, patient) is not None
    )
    return _compute(access.db, patient, now, prefs, plans, sessions, bool(checked), in_treatment)


# --- the scheduled job ------------------------------------------------------------------------

Mailer = Callable[[str, str, str], None]  # (to, subject, body)


def send_due(sessions: sessionmaker[Session], now: datetime) -> int:
    """The scheduled job: e-mail the reminders due now, when SMTP is configured."""
    from tandem.settings import get_settings

    config = smtp_config(get_settings())
    if config is None:
        return 0
    return send_reminders(sessions, now, smtp_mailer(config))


def smtp_mailer(config: SmtpConfig) -> Mailer:
    return lambda to, subject, body: send_mail(config, to, subject, body)


def _recipients(access: Access) -> list[tuple[Patient, str, Preferences]]:
    """Patients with a portal account and e-mail reminders on: the patient, the address, and
    their choices. One query, limited to what the job's access may see."""
    statement = (
        select(Patient, User.email, ReminderPreferenceRow)
        .join(User, User.patient_id == Patient.id)
        .outerjoin(ReminderPreferenceRow, ReminderPreferenceRow.patient_id == Patient.id)
        .where(
            User.active.is_(True),
            visible(access, "Patient", Patient.id, Patient.program_id),
        )
        .order_by(Patient.id)
    )
    out = []
    seen: set[str] = set()
    for patient, login_email, pref in access.db.execute(statement).all():
        prefs = _preferences_of(pref)
        if patient.id in seen or not prefs.email:
            continue
        seen.add(patient.id)
        out.append((patient, patient.email or login_email, prefs))
    return out


def _claim(
    sessions: sessionmaker[Session], patient: Patient, reminder: Reminder, now: datetime, me: str
) -> bool:
    """Insert the reminder's key, committed, before sending; False when another has it."""
    with sessions() as db:
        insert = postgresql.insert if db.get_bind().dialect.name == "postgresql" else sqlite.insert
        result = db.execute(
            insert(ReminderSentRow)
            .values(
                key=reminder.key,
                patient_id=patient.id,
                program_id=patient.program_id,
                kind=reminder.kind,
                due_at=reminder.due_at,
                claimed_at=now,
                claimed_by=me,
                status="claimed",
            )
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(ReminderSentRow.id)
        )
        claimed = result.first() is not None  # no row back: the key was taken
        db.commit()
        return claimed


def _finished(
    sessions: sessionmaker[Session], key: str, sent_at: datetime | None, status: str
) -> None:
    with sessions() as db:
        db.execute(
            update(ReminderSentRow)
            .where(ReminderSentRow.key == key)
            .values(sent_at=sent_at, status=status[:200])
        )
        db.commit()


def send_reminders(
    sessions: sessionmaker[Session], now: datetime, mailer: Mailer, me: str | None = None
) -> int:
    """E-mail every reminder due at `now` that nobody has claimed yet; how many were sent."""
    me = me or process_name()
    due: list[tuple[Patient, str, Reminder]] = []
    with session_scope(sessions) as db:
        access = system_access(db, sessions, JOB)
        access.require(Permission.SEARCH, "Patient")
        for patient, address, prefs in _recipients(access):
            if not address:
                continue
            today = program_today(patient.program.time_zone, now)
            plans = list(
                db.scalars(
                    select(DosePlanRow).where(
                        DosePlanRow.patient_id == patient.id, DosePlanRow.status == "active"
                    )
                )
            )
            _, hours = program_times(db, patient.program_id)
            booked = list(
                db.scalars(
                    select(TherapySessionRow).where(
                        TherapySessionRow.patient_id == patient.id,
                        TherapySessionRow.status == "booked",
                        TherapySessionRow.starts_at > now,
                        TherapySessionRow.starts_at <= now + timedelta(hours=hours),
                    )
                )
            )
            checked = db.scalar(
                select(CheckInRow.id)
                .where(CheckInRow.patient_id == patient.id, CheckInRow.day == today)
                .limit(1)
            )
            in_treatment = (
                db.scalar(
                    select(Episode.id)
                    .where(Episode.patient_id == patient.id, Episode.discharged_at.is_(None))
                    .limit(1)
                )
                is not None
                or db.scalar(
                    select(CarePlanRow.id)
                    .where(CarePlanRow.patient_id == patient.id, CarePlanRow.retention == "active")
                    .limit(1)
                )
                is not None
            )
            reminders = _compute(
                db, patient, now, prefs, plans, booked, checked is not None, in_treatment
            )
            for reminder in reminders:
                due.append((patient, address, reminder))
        db.expunge_all()
        # The sweep read every patient's plans, sessions and check-ins to decide; it showed
        # them to nobody. Each e-mail sent is audited below, naming its patient.
        access.audit("search", resource_type="Patient", query="reminder sweep")
    sent = 0
    for patient, address, reminder in due:
        if not _claim(sessions, patient, reminder, now, me):
            continue
        try:
            mailer(address, EMAIL_SUBJECT, email_text(reminder.kind))
        except Exception as exc:  # a mail server's refusal is recorded; the reminder is not retried
            log.warning("reminder %s not sent: %s", reminder.key, exc)
            _finished(sessions, reminder.key, None, f"error: {type(exc).__name__}: {exc}")
            continue
        _finished(sessions, reminder.key, now, "sent")
        with session_scope(sessions) as db:
            system_access(db, sessions, JOB).audit(
                "notify",
                resource_type="Reminder",
                resource_id=reminder.key[:64],
                patient_id=patient.id,
                detail=f"{reminder.kind} reminder e-mailed",
            )
        sent += 1
    return sent
