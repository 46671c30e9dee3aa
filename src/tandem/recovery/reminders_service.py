"""Reminders: what a patient is reminded of in the app (their portal's list), their choices, and
the scheduled job that e-mails due reminders once each.

Set-based: each run reads, per program, only the patients with something that may be due (a
check-in not yet done nor reminded after the program's time, an active dose plan, a booked
session coming up not yet reminded), in a few statements for all of them, never patient by
patient; a patient who checked in or was already reminded costs nothing.

Once, across server processes: the scheduler already runs the job once a period across every
process (`tandem.scheduler`), but a run may be repeated (a process that died mid-run is taken
over after its lease) and a reminder stays due over several runs. So each reminder is claimed
by inserting its key into `reminders_sent` (unique) and committing, before its e-mail is sent;
a claimer that finds the key taken sends nothing. A failed send is recorded, not retried: a
reminder is sent at most once, never twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, false, or_, select, update
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
from tandem.storage.models import Episode, Patient, Program, User

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
    times: tuple[str, int] | None = None,
) -> list[Reminder]:
    check_in_at, hours = times or program_times(db, patient.program_id)
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


@dataclass(frozen=True)
class _Candidate:
    patient: Patient
    address: str
    preferences: Preferences
    check_in_due: bool  # in treatment, no check-in today, past the time, not yet reminded


def _wanted(column: Any) -> ColumnElement[bool]:
    """A reminder choice that is on: no choices saved yet (every reminder on), or this one on."""
    return or_(ReminderPreferenceRow.patient_id.is_(None), column.is_(True))


def _candidates(access: Access, program: Program, now: datetime) -> list[_Candidate]:
    """The program's patients with something that may be due now, in one statement: a portal
    account, e-mail reminders on, and a check-in due and not yet reminded today, an active dose
    plan, or a booked session coming up that was not reminded yet. Everyone else (checked in,
    already reminded, nothing planned) is not read at all."""
    today = program_today(program.time_zone, now)
    check_in_at, hours = program_times(access.db, program.id)
    check_in_due = datetime.combine(today, parse_clock(check_in_at), tzinfo=zone(program.time_zone))
    pref, sent = ReminderPreferenceRow, ReminderSentRow
    if now >= check_in_due:
        check_in: ColumnElement[bool] = and_(
            _wanted(pref.check_in),
            or_(
                exists().where(Episode.patient_id == Patient.id, Episode.discharged_at.is_(None)),
                exists().where(
                    CarePlanRow.patient_id == Patient.id, CarePlanRow.retention == "active"
                ),
            ),
            ~exists().where(CheckInRow.patient_id == Patient.id, CheckInRow.day == today),
            ~exists().where(
                sent.patient_id == Patient.id, sent.kind == "check_in", sent.due_at == check_in_due
            ),
        )
    else:
        check_in = false()
    dose = and_(
        _wanted(pref.doses),
        exists().where(DosePlanRow.patient_id == Patient.id, DosePlanRow.status == "active"),
    )
    session = and_(
        _wanted(pref.sessions),
        exists().where(
            TherapySessionRow.patient_id == Patient.id,
            TherapySessionRow.status == "booked",
            TherapySessionRow.starts_at > now,
            TherapySessionRow.starts_at <= now + timedelta(hours=hours),
            ~exists().where(
                sent.patient_id == Patient.id,
                sent.kind == "session",
                sent.due_at == TherapySessionRow.starts_at,
            ),
        ),
    )
    statement = (
        select(Patient, User.email, pref, check_in.label("check_in_due"))
        .join(User, User.patient_id == Patient.id)
        .outerjoin(pref, pref.patient_id == Patient.id)
        .where(
            Patient.program_id == program.id,
            User.active.is_(True),
            _wanted(pref.email),
            visible(access, "Patient", Patient.id, Patient.program_id),
            or_(check_in, dose, session),
        )
        .order_by(Patient.id)
    )
    out: list[_Candidate] = []
    seen: set[str] = set()
    for patient, login_email, row, due in access.db.execute(statement).all():
        address = patient.email or login_email
        if patient.id in seen or not address:
            continue
        seen.add(patient.id)
        out.append(_Candidate(patient, address, _preferences_of(row), bool(due)))
    return out


def _by_patient(rows: Sequence[Any]) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for row in rows:
        found.setdefault(row.patient_id, []).append(row)
    return found


def _due_in_program(access: Access, program: Program, now: datetime) -> list[_Due]:
    """Every reminder due now for the program's candidates: their plans and sessions are read
    in one statement each for all of them, not patient by patient."""
    candidates = _candidates(access, program, now)
    if not candidates:
        return []
    ids = sorted(c.patient.id for c in candidates)
    times = program_times(access.db, program.id)
    plans = _by_patient(
        access.db.scalars(
            select(DosePlanRow)
            .where(DosePlanRow.patient_id.in_(ids), DosePlanRow.status == "active")
            .order_by(DosePlanRow.id)
        ).all()
    )
    booked = _by_patient(
        access.db.scalars(
            select(TherapySessionRow)
            .where(
                TherapySessionRow.patient_id.in_(ids),
                TherapySessionRow.status == "booked",
                TherapySessionRow.starts_at > now,
                TherapySessionRow.starts_at <= now + timedelta(hours=times[1]),
            )
            .order_by(TherapySessionRow.starts_at, TherapySessionRow.id)
        ).all()
    )
    due: list[_Due] = []
    for c in candidates:
        reminders = _compute(
            access.db,
            c.patient,
            now,
            c.preferences,
            plans.get(c.patient.id, []),
            booked.get(c.patient.id, []),
            checked_in_today=not c.check_in_due,
            in_treatment=c.check_in_due,
            times=times,
        )
        due += [_Due(c.patient, c.address, r) for r in reminders]
    return due


@dataclass(frozen=True)
class _Due:
    patient: Patient
    address: str
    reminder: Reminder


def claim_once(
    sessions: sessionmaker[Session],
    *,
    key: str,
    patient_id: str,
    program_id: int,
    kind: str,
    due_at: datetime,
    now: datetime,
    me: str,
) -> bool:
    """Insert an e-mail's key, committed, before sending it; False when another process (or an
    earlier run) has it. The send-once of every e-mail to a patient (reminders, reply notices)."""
    with sessions() as db:
        insert = postgresql.insert if db.get_bind().dialect.name == "postgresql" else sqlite.insert
        result = db.execute(
            insert(ReminderSentRow)
            .values(
                key=key,
                patient_id=patient_id,
                program_id=program_id,
                kind=kind,
                due_at=due_at,
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


def _claim(
    sessions: sessionmaker[Session], patient: Patient, reminder: Reminder, now: datetime, me: str
) -> bool:
    return claim_once(
        sessions,
        key=reminder.key,
        patient_id=patient.id,
        program_id=patient.program_id,
        kind=reminder.kind,
        due_at=reminder.due_at,
        now=now,
        me=me,
    )


def finished(
    sessions: sessionmaker[Session], key: str, sent_at: datetime | None, status: str
) -> None:
    """How a claimed e-mail's sending ended: sent, or the error (never retried)."""
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
    due: list[_Due] = []
    with session_scope(sessions) as db:
        access = system_access(db, sessions, JOB)
        access.require(Permission.SEARCH, "Patient")
        programs = db.scalars(
            select(Program)
            .where(Program.id.in_(sorted(access.actor.program_ids)))
            .order_by(Program.id)
        ).all()
        for program in programs:
            due += _due_in_program(access, program, now)
        db.expunge_all()
        # The sweep read the plans, sessions and check-ins of the patients with something due
        # to decide; it showed them to nobody. Each e-mail sent is audited below, naming its
        # patient.
        access.audit("search", resource_type="Patient", query="reminder sweep")
    sent = 0
    for item in due:
        patient, address, reminder = item.patient, item.address, item.reminder
        if not _claim(sessions, patient, reminder, now, me):
            continue
        try:
            mailer(address, EMAIL_SUBJECT, email_text(reminder.kind))
        except Exception as exc:  # a mail server's refusal is recorded; the reminder is not retried
            log.warning("reminder %s not sent: %s", reminder.key, exc)
            finished(sessions, reminder.key, None, f"error: {type(exc).__name__}: {exc}")
            continue
        finished(sessions, reminder.key, now, "sent")
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
