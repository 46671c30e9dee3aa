"""Which reminders are due for one patient at `now`, pure: a check-in not yet done after the
program's time, a planned dose due now with nothing recorded, a booked session coming up. Each
reminder has a key that names it for good ("dose:12:2026-03-04T13:00:00+00:00"), so that it is
sent once whoever computes it, however often. Times are the program's (its time zone passed in).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

KINDS = ("check_in", "dose", "session")


@dataclass(frozen=True)
class Preferences:
    check_in: bool = True
    doses: bool = True
    sessions: bool = True
    email: bool = True

    def wants(self, kind: str) -> bool:
        return {"check_in": self.check_in, "dose": self.doses, "session": self.sessions}[kind]


@dataclass(frozen=True)
class DoseDue:
    plan_id: int
    due_at: datetime
    label: str  # "Baclofen 5 mg, morning": shown in the app only, never e-mailed
    recorded: bool


@dataclass(frozen=True)
class SessionDue:
    session_id: int
    starts_at: datetime
    label: str  # "Group therapy": shown in the app only


@dataclass(frozen=True)
class Reminder:
    kind: str  # check_in | dose | session
    key: str
    due_at: datetime
    text: str  # what the signed-in patient reads in the app


def _utc(at: datetime) -> str:
    return at.astimezone(ZoneInfo("UTC")).isoformat()


def parse_clock(value: str) -> time:
    """ "18:00" -> 18:00; ValueError otherwise."""
    hours, _, minutes = value.partition(":")
    if not (hours.isdigit() and minutes.isdigit() and len(minutes) == 2):
        raise ValueError(f"a time of day as HH:MM, got {value!r}")
    return time(int(hours), int(minutes))


def due_reminders(
    *,
    patient_id: str,
    now: datetime,
    zone: ZoneInfo,
    check_in_at: time,
    checked_in_today: bool,
    in_treatment: bool,
    doses: Sequence[DoseDue],
    sessions: Sequence[SessionDue],
    session_hours: int,
    dose_window: timedelta,
    preferences: Preferences,
) -> list[Reminder]:
    """The reminders due at `now` that the patient has not turned off, soonest first. A daily
    check-in is expected only while the patient is `in_treatment` (an open episode of care or an
    active care plan): nobody discharged is reminded every evening for ever."""
    local_now = now.astimezone(zone)
    today: date = local_now.date()
    found: list[Reminder] = []
    check_in_due = datetime.combine(today, check_in_at, tzinfo=zone)
    if in_treatment and not checked_in_today and local_now >= check_in_due:
        found.append(
            Reminder(
                "check_in",
                f"check_in:{patient_id}:{today.isoformat()}",
                check_in_due,
                "Time for your check-in.",
            )
        )
    for dose in doses:
        if not dose.recorded and dose.due_at <= now < dose.due_at + dose_window:
            at = dose.due_at.astimezone(zone)
            found.append(
                Reminder(
                    "dose",
                    f"dose:{dose.plan_id}:{_utc(dose.due_at)}",
                    dose.due_at,
                    f"Dose due at {at:%H:%M}: {dose.label}. Tell us if you took it.",
                )
            )
    for session in sessions:
        if session.starts_at - timedelta(hours=session_hours) <= now < session.starts_at:
            at = session.starts_at.astimezone(zone)
            when = (
                "today"
                if at.date() == today
                else "tomorrow"
                if at.date() == today + timedelta(days=1)
                else f"on {at:%a %d %b}"
            )
            found.append(
                Reminder(
                    "session",
                    # The start time is part of the key: a session moved is reminded again.
                    f"session:{session.session_id}:{_utc(session.starts_at)}:{session_hours}h",
                    session.starts_at,
                    f"{session.label} {when} at {at:%H:%M}.",
                )
            )
    return sorted((r for r in found if preferences.wants(r.kind)), key=lambda r: (r.due_at, r.key))


# What a reminder e-mail says. Nothing clinical: no medication, dose, session type, program or
# clinic name. An e-mail travels and rests outside Tandem (mail servers, shared inboxes, a
# phone's lock screen), and under 42 CFR Part 2 even the fact that a person is in treatment for
# a substance use disorder is protected: a reminder must not disclose it. The patient reads the
# detail after signing in.
EMAIL_SUBJECT = "A reminder from Tandem"
EMAIL_BODY = {
    "check_in": "Time for your check-in.",
    "dose": "Time for your check-in.",
    "session": "Time for your check-in.",
}
EMAIL_FOOTER = (
    "\n\nSign in to Tandem to see it. You can turn these e-mails off in Tandem under Reminders.\n"
)


def email_text(kind: str) -> str:
    return EMAIL_BODY[kind] + EMAIL_FOOTER
