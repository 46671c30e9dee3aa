"""The audit trail: every read or write of patient data, and every refusal, leaves an entry."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session, sessionmaker

from tandem.access.policy import Actor
from tandem.storage.db import session_scope, utcnow
from tandem.storage.models import AuditEntry, AuditEntryPatient

ACTIONS = {"create": "C", "read": "R", "search": "R", "update": "U", "delete": "D"}
SUCCESS, MINOR_FAILURE, SERIOUS_FAILURE = "0", "4", "8"
_SHOWN = cast(Table, AuditEntryPatient.__table__)


@dataclass(frozen=True)
class Origin:
    """Where a request came from."""

    source_ip: str = ""
    user_agent: str = ""
    channel: str = "web"  # web | api | cli


def entry(
    actor: Actor | None,
    operation: str,
    origin: Origin,
    *,
    resource_type: str = "",
    resource_id: str | None = None,
    patient_id: str | None = None,
    outcome: str = SUCCESS,
    detail: str = "",
    query: str = "",
    actor_label: str | None = None,
    now: datetime | None = None,
) -> AuditEntry:
    return AuditEntry(
        recorded_at=now or utcnow(),
        user_id=actor.user_id if actor else None,
        actor=actor_label or (actor.label if actor else "anonymous"),
        role=str(actor.role) if actor else "",
        action=ACTIONS.get(operation, "E"),
        operation=operation,
        resource_type=resource_type,
        resource_id=resource_id,
        patient_id=patient_id,
        outcome=outcome,
        outcome_detail=detail[:2000],
        source_ip=origin.source_ip[:64],
        user_agent=origin.user_agent[:300],
        channel=origin.channel,
        query=query[:2000],
    )


def record(
    db: Session,
    actor: Actor | None,
    operation: str,
    origin: Origin,
    *,
    shown: Iterable[str] = (),
    **where: Any,
) -> AuditEntry:
    """Add an entry to the caller's unit of work: it commits, or rolls back, with the change.
    `shown`: the patients a list or search showed (one row each beside the entry).

    The patients are written as one multi-row insert, not one ORM object each (a caseload of
    200 patients cost more in the unit of work than all of its flag queries): the entry is
    flushed for its id, then its patients follow in the same transaction."""
    item, patients = _entry_showing(actor, operation, origin, shown, where)
    db.add(item)
    if patients:
        db.flush()  # the entry for its id (with the rest of the unit of work so far)
        db.execute(
            insert(_SHOWN),
            [{"audit_entry_id": item.id, "patient_id": p} for p in patients],
        )
    return item


def build(
    actor: Actor | None,
    operation: str,
    origin: Origin,
    *,
    shown: Iterable[str] = (),
    **where: Any,
) -> AuditEntry:
    """An entry with the patients a list or search showed, not yet in any session (the group
    committer inserts its patients in bulk; a request that also wrote adds it to its work).

    The patients are kept as plain ids on the entry (`shown_ids`), not as ORM rows: a
    caseload's 200 `AuditEntryPatient` objects and their collection events cost about a tenth
    of the page's CPU, and the group committer inserts plain rows anyway. `with_shown_rows`
    makes the ORM rows for a request whose entry goes into its own session."""
    item, patients = _entry_showing(actor, operation, origin, shown, where)
    setattr(item, _SHOWN_IDS, patients)  # an unmapped attribute: the ORM never reads it
    return item


_SHOWN_IDS = "tandem_shown_ids"


def shown_ids(item: AuditEntry) -> list[str]:
    """The patients an entry made by `build` showed (sorted, each once)."""
    ids: list[str] = getattr(item, _SHOWN_IDS, [])
    return ids


def with_shown_rows(item: AuditEntry) -> AuditEntry:
    """The entry with its shown patients as ORM rows, to be added to a session (once)."""
    ids = getattr(item, _SHOWN_IDS, None)
    if ids:
        item.shown_patients = [AuditEntryPatient(patient_id=p) for p in ids]
        setattr(item, _SHOWN_IDS, [])
    return item


def _entry_showing(
    actor: Actor | None,
    operation: str,
    origin: Origin,
    shown: Iterable[str],
    where: dict[str, Any],
) -> tuple[AuditEntry, list[str]]:
    """The entry and the patients it showed, sorted once each; one shown patient is also the
    entry's patient."""
    item = entry(actor, operation, origin, **where)
    patients = sorted(set(shown))
    if len(patients) == 1 and item.patient_id is None:
        item.patient_id = patients[0]
    return item, patients


def record_now(factory: sessionmaker[Session], *args: object, **kwargs: object) -> None:
    """Commit an entry on its own, for refusals and failures whose work is rolled back."""
    with session_scope(factory) as db:
        db.add(entry(*args, **kwargs))  # type: ignore[arg-type]


# How the audit trail reads on a page: what was touched, in words, never a table row id.
RECORD_WORDS: dict[str, str] = {
    "Patient": "chart",
    "Observation": "observation or measurements",
    "QuestionnaireResponse": "withdrawal assessment",
    "Condition": "withdrawal context",
    "MedicationRequest": "dose plan",
    "MedicationAdministration": "dose given",
    "MedicationStatement": "dose reported",
    "MedicationKnowledge": "medication library",
    "AdverseEvent": "side effect",
    "DetectedIssue": "safety screening",
    "Alert": "alert",
    "Communication": "question to a counselor",
    "CommunicationRequest": "call-back request",
    "AuditEvent": "audit trail",
    "Episode": "episode of care",
    "EpisodeOfCare": "episode of care",
    "Form": "form",
    "Admin": "administration",
    "User": "user account",
    "Organization": "program",
    "SmartApp": "app access",
    "Consent": "consent",
    "Disclosure": "release of records",
}

_DID = {"create": "recorded", "read": "opened", "search": "searched", "update": "changed"}


def describe(operation: str, resource_type: str | None) -> str:
    """ "opened the chart", "recorded a dose plan", "searched the alert list", or for a page
    path ("/patients/…/withdrawal/assess") the page's own words, ids left out."""
    did = _DID.get(operation, operation)
    kind = resource_type or ""
    if kind.startswith("/"):
        words = [p for p in kind.split("/") if p and not _looks_like_id(p)]
        return f"{did} on the {' '.join(words).replace('-', ' ') or 'home'} page"
    what = RECORD_WORDS.get(kind, kind.lower() or "")
    if not what:
        return did
    article = "the" if operation in ("read", "search", "update") else "a"
    return f"{did} {article} {what}"


def _looks_like_id(part: str) -> bool:
    return part.isdigit() or (len(part) >= 8 and sum(c.isdigit() for c in part) >= 3)
