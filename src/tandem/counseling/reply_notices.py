"""Telling a patient by e-mail that a counselor replied to their question: the scheduled job.

When SMTP is configured, each counselor's reply to a patient's question that the patient has not
opened yet is announced once by e-mail to the patient's address (their record's, else their
sign-in's), unless they turned reminder e-mails off. The e-mail says only that there is a reply
and where to read it (their Questions page, behind sign-in): never the reply, the question, a
counselor's name or the program (42 CFR Part 2: even being in treatment is protected).

Once: each notice is claimed with the reminders' send-once (`claim_once`, key `reply:<message
id>`) before it is sent, so several server processes, or a run taken over after a crash, never
send it twice; a failed send is recorded, not retried. Set-based: one statement finds every reply
to announce; replies older than `LOOK_BACK` (sent before SMTP was set up) are not announced.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, String, cast, exists, literal, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker

from tandem.access.guard import system_access
from tandem.access.policy import Permission
from tandem.access.queries import visible
from tandem.counseling.questions import MESSAGE
from tandem.counseling.storage import MessageRow, QuestionRow
from tandem.recovery.portal_storage import ReminderPreferenceRow, ReminderSentRow
from tandem.recovery.reminders_mail import send_mail, smtp_config
from tandem.recovery.reminders_service import claim_once, finished
from tandem.scheduler import process_name
from tandem.storage.db import session_scope
from tandem.storage.models import Patient, User

log = logging.getLogger("tandem.counseling.reply_notices")

JOB = "counseling.reply_notices"
KIND = "reply"
LOOK_BACK = timedelta(days=2)
SUBJECT = "A message from Tandem"

Mailer = Callable[[str, str, str], None]  # (to, subject, body)


def notice_key(message_id: int) -> str:
    return f"{KIND}:{message_id}"


def notice_key_sql(
    message_id: ColumnElement[int] | InstrumentedAttribute[int],
) -> ColumnElement[str]:
    """`notice_key` in SQL, so a notice already claimed is not read again."""
    return literal(f"{KIND}:") + cast(message_id, String)


def notice_text(link: str) -> str:
    """What the e-mail says: that there is a reply, and where to read it. Nothing else."""
    where = (
        f"Read it here (you will be asked to sign in):\n{link}"
        if link
        else ("Sign in to Tandem and open Questions to read it.")
    )
    return (
        "You have a reply to your question.\n\n"
        f"{where}\n\n"
        "You can turn these e-mails off in Tandem under Reminders.\n"
    )


def question_link(public_url: str, patient_id: str, question_id: int) -> str:
    if not public_url:
        return ""
    return f"{public_url}/patients/{patient_id}/questions#question-{question_id}"


@dataclass(frozen=True)
class Notice:
    message_id: int
    question_id: int
    patient_id: str
    program_id: int
    sent_at: datetime
    address: str


def due_notices(db: Session, sessions: sessionmaker[Session], now: datetime) -> list[Notice]:
    """Every counselor's reply to announce now, in one statement: to a patient's question, not
    yet opened by the patient, not yet claimed, sent within `LOOK_BACK`, to a patient with an
    active portal account and e-mails on."""
    access = system_access(db, sessions, JOB)
    access.require(Permission.SEARCH, MESSAGE)
    m, q, pref, sent = MessageRow, QuestionRow, ReminderPreferenceRow, ReminderSentRow
    statement = (
        select(m.id, q.id, q.patient_id, q.program_id, m.sent_at, Patient.email, User.email)
        .join(q, q.id == m.question_id)
        .join(Patient, Patient.id == q.patient_id)
        .join(User, User.patient_id == Patient.id)
        .outerjoin(pref, pref.patient_id == Patient.id)
        .where(
            m.author == "counselor",
            m.sent_at >= now - LOOK_BACK,
            m.sent_at <= now,
            or_(q.asker_read_at.is_(None), m.sent_at > q.asker_read_at),
            User.active.is_(True),
            or_(pref.patient_id.is_(None), pref.email.is_(True)),
            ~exists().where(sent.key == notice_key_sql(m.id)),
            visible(access, MESSAGE, q.patient_id, q.program_id),
        )
        .order_by(m.id)
    )
    found: dict[int, Notice] = {}
    for message_id, question_id, patient_id, program_id, sent_at, own, login in db.execute(
        statement
    ):
        address = own or login
        if message_id in found or not address or patient_id is None:
            continue
        found[message_id] = Notice(
            message_id, question_id, patient_id, program_id, sent_at, address
        )
    access.audit("search", resource_type=MESSAGE, query="reply notice sweep")
    return list(found.values())


def send_notices(
    sessions: sessionmaker[Session],
    now: datetime,
    mailer: Mailer,
    public_url: str = "",
    me: str | None = None,
) -> int:
    """E-mail every reply notice due at `now` that nobody has claimed yet; how many were sent."""
    me = me or process_name()
    with session_scope(sessions) as db:
        notices = due_notices(db, sessions, now)
    sent = 0
    for notice in notices:
        key = notice_key(notice.message_id)
        if not claim_once(
            sessions,
            key=key,
            patient_id=notice.patient_id,
            program_id=notice.program_id,
            kind=KIND,
            due_at=notice.sent_at,
            now=now,
            me=me,
        ):
            continue
        link = question_link(public_url, notice.patient_id, notice.question_id)
        try:
            mailer(notice.address, SUBJECT, notice_text(link))
        except Exception as exc:  # a mail server's refusal is recorded; the notice is not retried
            log.warning("reply notice %s not sent: %s", key, exc)
            finished(sessions, key, None, f"error: {type(exc).__name__}: {exc}")
            continue
        finished(sessions, key, now, "sent")
        with session_scope(sessions) as db:
            system_access(db, sessions, JOB).audit(
                "notify",
                resource_type=MESSAGE,
                resource_id=str(notice.question_id),
                patient_id=notice.patient_id,
                detail="reply notice e-mailed (no content)",
            )
        sent += 1
    return sent


def send_due(sessions: sessionmaker[Session], now: datetime) -> int:
    """The scheduled job: e-mail the reply notices due now, when SMTP is configured."""
    from tandem.settings import get_settings

    settings = get_settings()
    config = smtp_config(settings)
    if config is None:
        return 0
    return send_notices(
        sessions,
        now,
        lambda to, subject, body: send_mail(config, to, subject, body),
        settings.public_url,
    )
