"""One gate per request: asks the policy, audits the refusal, and audits what is done."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select
from sqlalchemy.orm import Session, sessionmaker

from tandem.access import audit
from tandem.access.consents import load_grants
from tandem.access.policy import (
    NO_CONSENTS,
    Actor,
    ConsentGrant,
    Consents,
    Decision,
    PatientRef,
    Permission,
    Role,
    Visibility,
    consent_matters,
    decide,
)
from tandem.access.policy import visibility as policy_visibility
from tandem.storage.models import AuditEntry


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
    # The request's audit entries, kept out of its session until its unit of work ends
    # (`web.deps.UnitOfWorkRoute`): a request that only read hands them to the group committer
    # (`access.audit_commit`), one that wrote commits them with its change. None: straight
    # into the session (the CLI, scheduled jobs, tests of services).
    pending_audit: list[AuditEntry] | None = None
    # The consents of each patient of another program this request asked about, loaded once
    # per patient (one indexed query), judged at the moment of the first load.
    _grants: dict[str, tuple[ConsentGrant, ...]] = field(default_factory=dict, repr=False)
    _consents_at: datetime | None = field(default=None, repr=False)

    def consents_for(self, patient: PatientRef | None) -> Consents:
        """What the policy needs to know of `patient`'s consents: nothing for one's own
        patients (no query), their consents otherwise (loaded once per request)."""
        if patient is None or not consent_matters(self.actor, patient):
            return NO_CONSENTS
        return self.patient_consents(patient.patient_id)

    def remember_consents(self, patient_id: str, grants: tuple[ConsentGrant, ...]) -> None:
        """Consents the data-access layer read along with the patient (same round trip)."""
        self._grants.setdefault(patient_id, grants)

    def patient_consents(self, patient_id: str) -> Consents:
        if self._consents_at is None:
            from tandem.clock import utcnow

            self._consents_at = utcnow()
        if patient_id not in self._grants:
            self._grants[patient_id] = load_grants(self.db, patient_id)
        return Consents(self._grants[patient_id], self._consents_at)

    def count(self, statement: Select[int]) -> int:
        """A count that shows no record (a menu badge): in the request's unit of work while it
        is open (a page renders inside it: no second connection); else in a short session of
        its own (the layout may ask after the unit of work has ended, on an error page)."""
        if self.db.in_transaction() and self.db.is_active:
            return int(self.db.scalar(statement) or 0)
        with self.sessions() as db:
            return int(db.scalar(statement) or 0)

    def require(
        self,
        permission: Permission,
        resource_type: str,
        patient: PatientRef | None = None,
        program_id: int | None = None,
        resource_id: str | None = None,
    ) -> None:
        decision = decide(
            self.actor, permission, resource_type, patient, program_id, self.consents_for(patient)
        )
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
        if self.pending_audit is not None:
            self.pending_audit.clear()  # discarded with the work, as a rollback discards them
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
        """What a search may show: the actor's programs, and the patients of other programs
        this request has named (and whose consents were loaded) when a consent covers them."""
        if not self._grants:
            return policy_visibility(self.actor, resource_type)
        loaded = tuple(g for grants in self._grants.values() for g in grants)
        return policy_visibility(self.actor, resource_type, Consents(loaded, self._consents_at))

    def audit(self, operation: str, *, shown: Iterable[str] = (), **where: Any) -> None:
        """Add an entry to this request's unit of work; `shown` names every patient a list or
        search showed, so "who saw patient X" has an answer."""
        if self.pending_audit is None:
            audit.record(self.db, self.actor, operation, self.origin, shown=shown, **where)
        else:
            self.pending_audit.append(
                audit.build(self.actor, operation, self.origin, shown=shown, **where)
            )

    def take_pending_audit(self) -> list[AuditEntry]:
        """The entries not yet handed to the session or the committer, once."""
        if not self.pending_audit:
            return []
        entries, self.pending_audit = self.pending_audit, []
        return entries


def system_access(db: Session, sessions: sessionmaker[Session], job: str) -> Access:
    """The access a scheduled job acts with: every program, as an administrator would, named
    after the job in the audit trail (no user)."""
    from sqlalchemy import select

    from tandem.storage.models import Program

    programs = frozenset(db.scalars(select(Program.id)))
    actor = Actor(user_id=0, label=f"scheduler: {job}", role=Role.ADMIN, program_ids=programs)
    return Access(actor, audit.Origin(channel="job"), db, sessions)
