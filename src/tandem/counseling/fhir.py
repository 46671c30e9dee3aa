"""Questions to a counselor as FHIR R4B: each message (the question, each reply) a
Communication; each request to be called back a CommunicationRequest. Internal notes and phone
numbers are not part of either. Pure mapping: rows in, dicts out."""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B.communication import Communication
from fhir.resources.R4B.communicationrequest import CommunicationRequest

from tandem.counseling import triage
from tandem.counseling.storage import MessageRow, QuestionRow
from tandem.fhir.output import checked

USER_SYSTEM = "urn:tandem:user"
QUESTION_SYSTEM = "urn:tandem:counseling:question"
PARTICIPATION_MODE = "http://terminology.hl7.org/CodeSystem/v3-ParticipationMode"


def _asker(question: QuestionRow) -> dict[str, Any]:
    if question.patient_id is not None:
        return {"reference": f"Patient/{question.patient_id}"}
    return {"display": question.name or "A visitor to the Ask a counselor page"}


def _counselor(user_id: int | None, names: dict[int, str]) -> dict[str, Any]:
    ref: dict[str, Any] = {"identifier": {"system": USER_SYSTEM, "value": str(user_id)}}
    if user_id in names:
        ref["display"] = names[user_id]
    return ref


def _common(question: QuestionRow) -> dict[str, Any]:
    found: dict[str, Any] = {
        "identifier": [{"system": QUESTION_SYSTEM, "value": str(question.id)}],
        "priority": "urgent" if question.urgent else "routine",
    }
    if question.patient_id is not None:
        found["subject"] = {"reference": f"Patient/{question.patient_id}"}
    return found


def communication_status(question: QuestionRow, message: MessageRow) -> str:
    """A message is sent once stored: completed."""
    return "completed"


def communication(
    message: MessageRow, question: QuestionRow, names: dict[int, str]
) -> dict[str, Any]:
    from_asker = message.author == "asker"
    resource: dict[str, Any] = {
        "resourceType": "Communication",
        "id": str(message.id),
        "meta": {"lastUpdated": message.sent_at.isoformat()},
        **_common(question),
        "status": communication_status(question, message),
        "category": [
            {"text": "question to a counselor" if from_asker else "reply from a counselor"}
        ],
        "sent": message.sent_at.isoformat(),
        "sender": _asker(question) if from_asker else _counselor(message.author_user, names),
        "payload": [{"contentString": message.body}],
    }
    if not from_asker:
        resource["recipient"] = [_asker(question)]
    if question.kind == "callback":
        resource["basedOn"] = [{"reference": f"CommunicationRequest/{question.id}"}]
    return checked(Communication, resource)


def request_status(question: QuestionRow) -> str:
    return "completed" if question.status == triage.CLOSED else "active"


def communication_request(
    question: QuestionRow, text: str, names: dict[int, str]
) -> dict[str, Any]:
    """A call back: the window asked for, or the time a counselor set for the call."""
    resource: dict[str, Any] = {
        "resourceType": "CommunicationRequest",
        "id": str(question.id),
        "meta": {"lastUpdated": (question.answered_at or question.asked_at).isoformat()},
        **_common(question),
        "status": request_status(question),
        "category": [{"text": "call back from a counselor"}],
        "medium": [
            {"coding": [{"system": PARTICIPATION_MODE, "code": "PHONE", "display": "telephone"}]}
        ],
        "authoredOn": question.asked_at.isoformat(),
        "requester": _asker(question),
    }
    if text:
        resource["payload"] = [{"contentString": text}]
    if question.call_at is not None:
        resource["occurrenceDateTime"] = question.call_at.isoformat()
    elif question.window_start is not None and question.window_end is not None:
        resource["occurrencePeriod"] = {
            "start": question.window_start.isoformat(),
            "end": question.window_end.isoformat(),
        }
    if question.assigned_to is not None:
        resource["recipient"] = [_counselor(question.assigned_to, names)]
    return checked(CommunicationRequest, resource)
