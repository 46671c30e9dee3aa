"""One gate per request: asks the policy, audits the refusal, and audits what is done."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from tandem.access import audit
from tandem.access.policy import (
    Actor,
    Decision,
    PatientRef,
    Permission,
    Role,
    Visibility,
    decide,
)
from tandem.access.policy import visibility as policy_visibility


class AccessDenied(Exception):
    def __init__(self, decision: Decision) -> None:
        super().__init__(decision.reason)
        self.reason = decision.reason


_OPERATIONS = {
    Permission.CREATE: "create",
    Permission.READ: "read",
    Permission.UPDATE: "update",
    Permission.DELETE: "delete",
    Permission.SEARCH: "search",
}


@dataclass
class Access:
    actor: Actor
    origin: audit.Origin
    db: Session
    sessions: sessionmaker[Session]
    refusals: int = 0  # refusals recorded in this request

    def require(
        self,
        permission: Permission,
        resource_type: str,
        patient: PatientRef | None = None,
        program_id: int | None = None,
        resource_id: str | None = None,
    ) -> None:
        decision = decide(self.actor, permission, resource_type, patient, program_id)
        if not decision:
            self.refused(
                _OPERATIONS[permission],
                decision.reason,
                resource_type=resource_type,
                resource_id=resource_id,
                patient_id=patient.patient_id if patient else None,
            )
            raise AccessDenied(decision)

    def require_decision(self, decision: Decision, operation: str, resource_type: str = "") -> None:
        if not decision:
            self.refused(operation, decision.reason, resource_type=resource_type)
            raise AccessDenied(decision)

    def refused(
        self,
        operation: str,
        reason: str,
        *,
        resource_type: str = "",
        resource_id: str | None = None,
        patient_id: str | None = None,
    ) -> None:
        """Record a refusal durably, in this request's own session. The refused request's work
        is discarded first: it is never kept, and on SQLite its pending writes would hold the
        one write lock that a second session would wait on."""
        self.db.rollback()
        self.refusals += 1
        audit.record(
            self.db,
            self.actor,
            operation,
            self.origin,
            outcome=audit.MINOR_FAILURE,
            detail=reason,
            resource_type=resource_type,
            resource_id=resource_id,
            patient_id=patient_id,
        )
        self.db.commit()

    def visibility(self, resource_type: str = "Patient") -> Visibility:
        return policy_visibility(self.actor, resource_type)

    def audit(self, operation: str, *, shown: Iterable[str] = (), **where: Any) -> None:
        """Add an entry to this request's unit of work; `shown` names every patient a list or
        search showed, so "who saw patient X" has an answer."""
        audit.record(self.db, self.actor, operation, self.origin, shown=shown, **where)


def system_access(db: Session, sessions: sessionmaker[Session], job: str) -> Access:
    """The access a scheduled job acts with: every program, as an administrator would, named
    after the job in the audit trail (no user)."""
    from sqlalchemy import select

    from tandem.storage.models import Program

    programs = frozenset(db.scalars(select(Program.id)))
    actor = Actor(user_id=0, label=f"scheduler: {job}", role=Role.ADMIN, program_ids=programs)
    return Access(actor, audit.Origin(channel="job"), db, sessions)
