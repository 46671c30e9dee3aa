"""Questions as FHIR records: search and read through the data-access layer, audited. A
visitor's question (no patient) is seen by the members of its program; a patient's question
by the patient and their program's staff, as the policy says."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, false, select, true

from tandem.access.accounts import display_names
from tandem.access.guard import Access
from tandem.access.policy import PatientRef, Permission
from tandem.access.queries import Page, audit_shown, search_page, visible
from tandem.counseling import triage
from tandem.counseling.questions import CALLBACK, MESSAGE, _messages
from tandem.counseling.storage import MessageRow, QuestionRow
from tandem.errors import InvalidInput, NotFound

# FHIR R4B's codes; a stored message is sent (completed), a call back is active until closed.
COMMUNICATION_CODES = (
    "preparation",
    "in-progress",
    "not-done",
    "on-hold",
    "stopped",
    "completed",
    "entered-in-error",
    "unknown",
)
REQUEST_CODES = (
    "draft",
    "active",
    "on-hold",
    "revoked",
    "completed",
    "entered-in-error",
    "unknown",
)
COMMUNICATION_STATUSES = ("completed",)
REQUEST_STATUSES: dict[str, tuple[str, ...]] = {
    **{code: () for code in REQUEST_CODES},
    "active": triage.OPEN,
    "completed": (triage.CLOSED,),
}


def _search(
    access: Access,
    resource_type: str,
    statement: Any,  # a Select of one or more entities
    patient_column: Any,
    program_column: Any,
    patient_of: Any,
    order: tuple[Any, ...],
    patient_id: str | None,
    count: int,
    offset: int,
    query_text: str,
) -> Page[Any]:
    """`search_page` for one patient; otherwise the same policy, filter and audit over rows that
    may belong to no patient (a visitor's question)."""
    if patient_id is not None:
        return search_page(
            access,
            resource_type,
            statement,
            patient_column=patient_column,
            program_column=program_column,
            patient_of=patient_of,
            order=order,
            patient_id=patient_id,
            count=count,
            offset=offset,
            query_text=query_text,
            scalars=False,
        )
    access.require(Permission.SEARCH, resource_type)
    rows = list(
        access.db.execute(
            statement.where(visible(access, resource_type, patient_column, program_column))
            .order_by(*order)
            .offset(offset)
            .limit(count + 1)
        )
    )
    page = rows[:count]
    shown = {p for p in (patient_of(r) for r in page) if p is not None}
    audit_shown(access, resource_type, shown, query_text)
    return Page(page, len(rows) > count)


def _status_filter(
    statuses: list[str], known: dict[str, tuple[str, ...]], column: Any
) -> ColumnElement[bool]:
    if not statuses:
        return true()
    wanted: set[str] = set()
    for status in statuses:
        wanted.update(known.get(status, ()))
    return column.in_(sorted(wanted)) if wanted else false()


@dataclass(frozen=True)
class Messages:
    page: Page[Any]  # rows of (MessageRow, QuestionRow)
    names: dict[int, str]


def search_messages(
    access: Access,
    patient_id: str | None,
    statuses: list[str],
    count: int,
    offset: int,
    query_text: str,
) -> Messages:
    m, q = MessageRow, QuestionRow
    statement = select(m, q).join(q, q.id == m.question_id)
    if statuses and not set(statuses) & set(COMMUNICATION_STATUSES):
        statement = statement.where(false())
    page = _search(
        access,
        MESSAGE,
        statement,
        m.patient_id,
        m.program_id,
        lambda r: r[0].patient_id,
        (m.sent_at.desc(), m.id.desc()),
        patient_id,
        count,
        offset,
        query_text,
    )
    names = display_names(access.db, {r[0].author_user for r in page.rows})
    return Messages(page, names)


def _require(access: Access, resource_type: str, row: Any, row_id: int) -> None:
    if row.patient_id is not None:
        access.require(
            Permission.READ,
            resource_type,
            PatientRef(row.patient_id, row.program_id),
            resource_id=str(row_id),
        )
    else:
        access.require(
            Permission.READ, resource_type, program_id=row.program_id, resource_id=str(row_id)
        )
    access.audit(
        "read", resource_type=resource_type, resource_id=str(row_id), patient_id=row.patient_id
    )


def read_message(access: Access, message_id: int) -> tuple[MessageRow, QuestionRow, dict[int, str]]:
    message = access.db.get(MessageRow, message_id)
    if message is None:
        raise NotFound(f"Communication/{message_id} is not known")
    _require(access, MESSAGE, message, message_id)
    question = access.db.get(QuestionRow, message.question_id)
    assert question is not None  # noqa: S101 (a foreign key)
    return message, question, display_names(access.db, {message.author_user})


@dataclass(frozen=True)
class Callbacks:
    page: Page[Any]  # rows of (QuestionRow,)
    texts: dict[int, str]  # the asker's first message, by question
    names: dict[int, str]


def _texts(access: Access, questions: list[QuestionRow]) -> dict[int, str]:
    found = _messages(access.db, [q.id for q in questions])
    return {qid: next((m.body for m in ms if m.author == "asker"), "") for qid, ms in found.items()}


def search_callbacks(
    access: Access,
    patient_id: str | None,
    statuses: list[str],
    count: int,
    offset: int,
    query_text: str,
) -> Callbacks:
    q = QuestionRow
    statement = select(q).where(
        q.kind == "callback", _status_filter(statuses, REQUEST_STATUSES, q.status)
    )
    page = _search(
        access,
        CALLBACK,
        statement,
        q.patient_id,
        q.program_id,
        lambda r: r[0].patient_id,
        (q.asked_at.desc(), q.id.desc()),
        patient_id,
        count,
        offset,
        query_text,
    )
    questions = [r[0] for r in page.rows]
    names = display_names(access.db, {x.assigned_to for x in questions})
    return Callbacks(page, _texts(access, questions), names)


def read_callback(access: Access, question_id: int) -> tuple[QuestionRow, str, dict[int, str]]:
    question = access.db.get(QuestionRow, question_id)
    if question is None or question.kind != "callback":
        raise NotFound(f"CommunicationRequest/{question_id} is not known")
    _require(access, CALLBACK, question, question_id)
    names = display_names(access.db, {question.assigned_to})
    return question, _texts(access, [question])[question.id], names


def check_statuses(values: list[str], known: tuple[str, ...]) -> list[str]:
    for value in values:
        if value not in known:
            raise InvalidInput("status", f"status must be one of {', '.join(known)}")
    return values
