"""Questions to a counselor: asking (a visitor on the public page, a patient from their record),
the private link, the counselors' queue and their work on a question. Every read and change of a
question asks the one policy (`tandem.access.policy`, resource types Communication and
CommunicationRequest) and is audited; services never commit."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, exists, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from tandem.access import audit
from tandem.access.accounts import display_names
from tandem.access.guard import Access
from tandem.access.policy import Actor, Decision, PatientRef, Permission, Role, decide
from tandem.access.queries import audit_shown, load_patient, visible
from tandem.alerts import service as alerts
from tandem.clock import utcnow
from tandem.counseling import crisis, triage
from tandem.counseling.storage import MessageRow, NoteRow, QuestionRow
from tandem.errors import InvalidInput, NotFound
from tandem.storage.models import Patient, Program
from tandem.web.forms import local_datetime

MESSAGE = "Communication"  # a question or a reply
CALLBACK = "CommunicationRequest"  # a request to be called back
QUEUE_LIMIT = 1000
# A private link's secret: 192 random bits, stored only as its SHA-256.
TOKEN_BYTES = 24
# How the alert and the audit trail name someone who asked on the public page.
VISITOR = Actor(user_id=0, label="visitor (Ask a counselor page)", role=Role.PATIENT)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def programs_taking_questions(db: Session) -> list[Program]:
    return list(db.scalars(select(Program).order_by(Program.name, Program.id)))


@dataclass(frozen=True)
class Asked:
    question: QuestionRow
    signal: crisis.Signal
    token: str | None  # the private link's secret, shown once (a visitor's question only)


def _resource_of(question: QuestionRow) -> str:
    return CALLBACK if question.kind == "callback" else MESSAGE


def store_question(
    db: Session,
    ask: triage.Ask,
    program_id: int,
    now: datetime,
    *,
    patient_id: str | None,
    asked_by: int | None,
    token: str | None,
) -> tuple[QuestionRow, crisis.Signal]:
    found = crisis.signal(ask.question)
    question = QuestionRow(
        program_id=program_id,
        patient_id=patient_id,
        asked_by=asked_by,
        kind=ask.kind,
        status=triage.NEW,
        urgent=bool(found),
        crisis=found.summary()[:2000],
        preview=(ask.question or "(call back, no message)")[:160],
        name=ask.name,
        phone=ask.phone,
        window_start=ask.window.start if ask.window else None,
        window_end=ask.window.end if ask.window else None,
        token_hash=token_hash(token) if token else None,
        asked_at=now,
    )
    db.add(question)
    db.flush()
    if ask.question:
        db.add(
            MessageRow(
                question_id=question.id,
                program_id=program_id,
                patient_id=patient_id,
                author="asker",
                author_user=asked_by,
                body=ask.question,
                sent_at=now,
            )
        )
        db.flush()
    return question, found


def raise_crisis_alert(access: Access, question: QuestionRow, found: crisis.Signal) -> None:
    """Urgent at once: an alert to the program's care team, beside the top of the queue."""
    who = "a patient" if question.patient_id else "a visitor (not a patient)"
    alerts.raise_alert(
        access,
        patient_id=question.patient_id,
        program_id=question.program_id,
        kind="crisis_signal",
        severity="critical",
        title=f"Crisis signal in a question to a counselor from {who}",
        detail=f"Words found: {found.summary()}. Answer it now: /questions/{question.id}",
        source="Ask a counselor: crisis phrases (counseling/data/crisis.yaml)",
        rule_id="counseling.crisis",
        related_type=MESSAGE,
        related_id=str(question.id),
        for_role="counselor",
        raised_at=question.asked_at,
    )


def ask_as_visitor(
    db: Session,
    sessions: sessionmaker[Session],
    origin: audit.Origin,
    program_id: int,
    form: triage.AskForm,
    now: datetime,
) -> Asked:
    """A question from the public page: stored with the hash of a new private link; a crisis
    signal marks it urgent and alerts the program's care team in the same unit of work."""
    program = db.get(Program, program_id)
    if program is None:
        raise InvalidInput("program", "Program: choose one of the programs listed")
    ask = triage.check_ask(form, program.time_zone, now)
    token = new_token()
    question, found = store_question(
        db, ask, program.id, now, patient_id=None, asked_by=None, token=token
    )
    visitor = Access(VISITOR, origin, db, sessions)
    visitor.audit(
        "create",
        resource_type=_resource_of(question),
        resource_id=str(question.id),
        detail="asked on the public page" + (" (urgent: crisis signal)" if found else ""),
    )
    if found:
        raise_crisis_alert(visitor, question, found)
    return Asked(question, found, token)


def ask_as_patient(access: Access, patient_id: str, form: triage.AskForm, now: datetime) -> Asked:
    """A question from a signed-in patient's own record: part of their record."""
    resource = CALLBACK if form.kind == "callback" else MESSAGE
    patient = load_patient(access, patient_id, (Permission.CREATE, resource), audit=False)
    # Staff write notes on a question; the question itself is the patient's own words.
    access.require_decision(
        Decision(access.actor.patient_id == patient.id, "only the patient asks from their record"),
        "create",
        resource,
    )
    ask = triage.check_ask(form, patient.program.time_zone, now)
    question, found = store_question(
        access.db,
        ask,
        patient.program_id,
        now,
        patient_id=patient.id,
        asked_by=access.actor.user_id,
        token=None,
    )
    access.audit(
        "create",
        resource_type=resource,
        resource_id=str(question.id),
        patient_id=patient.id,
        detail="asked from their record" + (" (urgent: crisis signal)" if found else ""),
    )
    if found:
        raise_crisis_alert(access, question, found)
    return Asked(question, found, None)


# --------------------------------------------------------------------------- what the asker sees


@dataclass(frozen=True)
class Thread:
    """A question as its asker sees it: their words and the replies, never the notes."""

    question: QuestionRow
    messages: list[MessageRow]
    names: dict[int, str]  # counselors' display names
    zone: str

    @property
    def status_text(self) -> str:
        return triage.STATUS_FOR_ASKER[self.question.status]


def _messages(db: Session, question_ids: Sequence[int]) -> dict[int, list[MessageRow]]:
    found: dict[int, list[MessageRow]] = {i: [] for i in question_ids}
    if question_ids:
        for m in db.scalars(
            select(MessageRow)
            .where(MessageRow.question_id.in_(sorted(question_ids)))
            .order_by(MessageRow.id)
        ):
            found[m.question_id].append(m)
    return found


def _threads(db: Session, questions: Sequence[QuestionRow]) -> list[Thread]:
    messages = _messages(db, [q.id for q in questions])
    names = display_names(
        db,
        {m.author_user for ms in messages.values() for m in ms if m.author == "counselor"}
        | {q.call_by for q in questions},
    )
    zones = {
        program_id: zone
        for program_id, zone in db.execute(
            select(Program.id, Program.time_zone).where(
                Program.id.in_(sorted({q.program_id for q in questions}))
            )
        )
    }
    return [Thread(q, messages[q.id], names, zones.get(q.program_id, "UTC")) for q in questions]


def by_token(db: Session, origin: audit.Origin, token: str) -> Thread | None:
    """The question a private link opens (None for a link that opens nothing); audited."""
    if not token or len(token) > 100:
        return None
    question = db.scalar(select(QuestionRow).where(QuestionRow.token_hash == token_hash(token)))
    if question is None:
        return None  # the page counts it (`access.anonymous`): nothing of this request is kept
    audit.record(
        db,
        None,
        "read",
        origin,
        resource_type=_resource_of(question),
        resource_id=str(question.id),
        patient_id=question.patient_id,
        actor_label="visitor (private link)",
    )
    thread = _threads(db, [question])[0]
    if question.patient_id is None:  # a visitor's own question: opening it reads the replies
        question.asker_read_at = utcnow()
    return thread


def patient_threads(access: Access, patient: Patient) -> list[Thread]:
    """A patient's questions, newest first, with the replies (the caller has read the chart)."""
    access.require(Permission.SEARCH, MESSAGE, PatientRef(patient.id, patient.program_id))
    questions = list(
        access.db.scalars(
            select(QuestionRow)
            .where(
                QuestionRow.patient_id == patient.id,
                visible(access, MESSAGE, QuestionRow.patient_id, QuestionRow.program_id),
            )
            .order_by(QuestionRow.asked_at.desc(), QuestionRow.id.desc())
        )
    )
    audit_shown(access, MESSAGE, [patient.id], "questions", patient.id)
    return _threads(access.db, questions)


# --------------------------------------------------------------------------- new replies


def reply_not_read() -> ColumnElement[bool]:
    """A question with a counselor's reply its asker has not opened yet (sent after they last
    opened the conversation)."""
    return exists().where(
        MessageRow.question_id == QuestionRow.id,
        MessageRow.author == "counselor",
        or_(QuestionRow.asker_read_at.is_(None), MessageRow.sent_at > QuestionRow.asker_read_at),
    )


def new_replies(access: Access, patient: Patient) -> list[QuestionRow]:
    """The patient's questions with a reply they have not read yet, oldest first (their Today
    page flags them). Nothing for someone who may not see the patient's questions."""
    ref = PatientRef(patient.id, patient.program_id)
    if not decide(access.actor, Permission.SEARCH, MESSAGE, ref):
        return []
    access.require(Permission.SEARCH, MESSAGE, ref)
    rows = list(
        access.db.scalars(
            select(QuestionRow)
            .where(
                QuestionRow.patient_id == patient.id,
                visible(access, MESSAGE, QuestionRow.patient_id, QuestionRow.program_id),
                reply_not_read(),
            )
            .order_by(QuestionRow.asked_at, QuestionRow.id)
        )
    )
    if rows:
        audit_shown(access, MESSAGE, [patient.id], "questions with a new reply", patient.id)
    return rows


def mark_read_by_asker(access: Access, patient: Patient, now: datetime) -> set[int]:
    """The patient opened their questions: the replies so far are no longer new to them (no
    flag, no e-mail). Only the patient themselves: staff opening the tab read nothing for them.
    Returns the questions whose replies were new."""
    if access.actor.patient_id != patient.id:
        return set()
    new = set(
        access.db.scalars(
            select(QuestionRow.id).where(QuestionRow.patient_id == patient.id, reply_not_read())
        )
    )
    if new:
        access.db.execute(
            update(QuestionRow)
            .where(QuestionRow.id.in_(sorted(new)))
            .values(asker_read_at=now)
            .execution_options(synchronize_session="fetch")
        )
        for question_id in sorted(new):
            access.audit(
                "update",
                resource_type=MESSAGE,
                resource_id=str(question_id),
                patient_id=patient.id,
                detail="reply read by the asker",
            )
    return new


# --------------------------------------------------------------------------- the queue


@dataclass(frozen=True)
class QueueRow:
    id: int
    kind: str
    status: str
    urgent: bool
    preview: str
    name: str
    patient_id: str | None
    asked_at: datetime
    assigned_to: int | None
    window_start: datetime | None
    call_at: datetime | None


SHOWS = {
    "open": triage.NEEDS_ANSWER,
    "answered": (triage.ANSWERED,),
    "closed": (triage.CLOSED,),
    "all": triage.STATUSES,
}


def queue(
    access: Access, program_id: int, show: str = "open", limit: int = QUEUE_LIMIT
) -> list[QueueRow]:
    """A program's questions in the chosen states: urgent first, then the oldest."""
    access.require(Permission.SEARCH, MESSAGE, program_id=program_id)
    q = QuestionRow
    statuses = SHOWS.get(show, SHOWS["open"])
    rows = [
        QueueRow(*r)
        for r in access.db.execute(
            select(
                q.id,
                q.kind,
                q.status,
                q.urgent,
                q.preview,
                q.name,
                q.patient_id,
                q.asked_at,
                q.assigned_to,
                q.window_start,
                q.call_at,
            )
            .where(
                q.program_id == program_id,
                q.status.in_(statuses),
                visible(access, MESSAGE, q.patient_id, q.program_id),
            )
            .order_by(q.urgent.desc(), q.asked_at, q.id)
            .limit(limit)
        )
    ]
    shown = {r.patient_id for r in rows if r.patient_id is not None}
    audit_shown(access, MESSAGE, shown, f"program={program_id}&show={show}")
    return rows


def urgent_waiting(access: Access) -> int:
    """Urgent questions still waiting for an answer in the programs the person answers for
    (the number beside "Questions"; a count, no record shown; see `Access.count`)."""
    actor = access.actor
    programs = sorted(
        p for p in actor.program_ids if decide(actor, Permission.UPDATE, MESSAGE, program_id=p)
    )
    if not programs:
        return 0
    q = QuestionRow
    count = (
        select(func.count())
        .select_from(q)
        .where(
            q.program_id.in_(programs),
            q.status.in_(triage.NEEDS_ANSWER),
            q.urgent.is_(True),
        )
    )
    return access.count(count)


# --------------------------------------------------------------------------- a counselor's work


def _require(access: Access, permission: Permission, question: QuestionRow) -> None:
    resource = _resource_of(question)
    if question.patient_id is not None:
        access.require(
            permission,
            resource,
            PatientRef(question.patient_id, question.program_id),
            resource_id=str(question.id),
        )
    else:
        access.require(
            permission, resource, program_id=question.program_id, resource_id=str(question.id)
        )


def _get(access: Access, question_id: int, permission: Permission) -> QuestionRow:
    question = access.db.get(QuestionRow, question_id)
    if question is None:
        raise NotFound(f"question {question_id} is not known")
    _require(access, permission, question)
    return question


@dataclass(frozen=True)
class Detail:
    thread: Thread
    notes: list[NoteRow]
    names: dict[int, str]
    patient: Patient | None
    program: Program


def detail(access: Access, question_id: int) -> Detail:
    """A question as a counselor works it: the conversation, the notes, who is on it."""
    question = _get(access, question_id, Permission.UPDATE)
    access.audit(
        "read",
        resource_type=_resource_of(question),
        resource_id=str(question.id),
        patient_id=question.patient_id,
    )
    thread = _threads(access.db, [question])[0]
    notes = list(
        access.db.scalars(
            select(NoteRow).where(NoteRow.question_id == question.id).order_by(NoteRow.id)
        )
    )
    names = display_names(
        access.db,
        {n.author_user for n in notes} | {question.assigned_to, question.call_by},
    )
    patient = access.db.get(Patient, question.patient_id) if question.patient_id else None
    program = access.db.get(Program, question.program_id)
    assert program is not None  # noqa: S101 (a foreign key)
    return Detail(thread, notes, {**thread.names, **names}, patient, program)


def _changed(access: Access, question: QuestionRow, what: str) -> None:
    access.db.flush()
    access.audit(
        "update",
        resource_type=_resource_of(question),
        resource_id=str(question.id),
        patient_id=question.patient_id,
        detail=what,
    )


def assign_to_me(access: Access, question_id: int, now: datetime) -> QuestionRow:
    question = _get(access, question_id, Permission.UPDATE)
    question.status = triage.after_assign(question.status)
    question.assigned_to = access.actor.user_id
    question.assigned_at = now
    _changed(access, question, "assigned")
    return question


def reply(access: Access, question_id: int, text: str, now: datetime) -> QuestionRow:
    """A secure message to the asker (seen at their private link or in their record)."""
    question = _get(access, question_id, Permission.UPDATE)
    body = triage.plain_text("reply", "Reply", text, triage.MAX_REPLY, required=True)
    question.status = triage.after_reply(question.status)
    if question.assigned_to is None:
        question.assigned_to, question.assigned_at = access.actor.user_id, now
    question.answered_at = now
    access.db.add(
        MessageRow(
            question_id=question.id,
            program_id=question.program_id,
            patient_id=question.patient_id,
            author="counselor",
            author_user=access.actor.user_id,
            body=body,
            sent_at=now,
        )
    )
    _changed(access, question, "replied")
    return question


def schedule_call(access: Access, question_id: int, call_at: str, now: datetime) -> QuestionRow:
    """When a counselor will call (`call_at` as the form sends it, in the program's time zone)."""
    question = _get(access, question_id, Permission.UPDATE)
    if not question.phone:
        raise InvalidInput("call_at", "No phone number was given: reply by message instead")
    program = access.db.get(Program, question.program_id)
    zone = program.time_zone if program else "UTC"
    when = triage.call_time(local_datetime(call_at, zone, "call_at", required=False), now)
    question.status = triage.after_reply(question.status)
    question.call_at, question.call_by = when, access.actor.user_id
    if question.assigned_to is None:
        question.assigned_to, question.assigned_at = access.actor.user_id, now
    question.answered_at = now
    _changed(access, question, f"call scheduled for {when.isoformat()}")
    return question


def add_note(access: Access, question_id: int, text: str, now: datetime) -> NoteRow:
    """An internal note: for the counselors, never shown to the asker."""
    question = _get(access, question_id, Permission.UPDATE)
    body = triage.plain_text("note", "Note", text, triage.MAX_NOTE, required=True)
    note = NoteRow(
        question_id=question.id,
        program_id=question.program_id,
        patient_id=question.patient_id,
        author_user=access.actor.user_id,
        body=body,
        written_at=now,
    )
    access.db.add(note)
    _changed(access, question, "note written")
    return note


def close(access: Access, question_id: int, now: datetime) -> QuestionRow:
    question = _get(access, question_id, Permission.UPDATE)
    question.status = triage.after_close(question.status)
    question.closed_at = now
    _changed(access, question, "closed")
    return question
