"""One gate per request: asks the policy, audits the refusal, and audits what is done."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from tandem.access import audit
from tandem.access.policy import Actor, Decision, PatientRef, Permission, Visibility, decide
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

    def refused(self, operation: str, reason: str, **where: str | None) -> None:
        audit.record_now(
            self.sessions,
            self.actor,
            operation,
            self.origin,
            outcome=audit.MINOR_FAILURE,
            detail=reason,
            **where,
        )

    def visibility(self, resource_type: str = "Patient") -> Visibility:
        return policy_visibility(self.actor, resource_type)

    def audit(self, operation: str, **where: str | None) -> None:
        audit.record(self.db, self.actor, operation, self.origin, **where)
