"""What an administrator reaches: users, memberships, programs and units, and the audit trail
of the programs they administer (every program for a system administrator). The admin pages
and the FHIR AuditEvent routes read these here, never with a query of their own, so that the
limit is the same everywhere and decided by the policy (`policy.admin_reach`).

Out of reach looks like unknown: a user or program of another program is "not known" (404),
an audit entry of another program is not in any list.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, Select, and_, exists, false, or_, select, true
from sqlalchemy.orm import selectinload

from tandem.access.guard import Access
from tandem.access.policy import (
    AdminReach,
    admin_reach,
    may_administer_program,
    may_manage_user,
)
from tandem.errors import InvalidInput, NotFound
from tandem.storage.models import (
    AuditEntry,
    AuditEntryPatient,
    Membership,
    Patient,
    PatientIdentifier,
    Program,
    User,
)


def reach(access: Access) -> AdminReach:
    return admin_reach(access.actor)


def programs(access: Access) -> list[Program]:
    """The programs the administrator administers, with their units, by name."""
    statement = select(Program).options(selectinload(Program.units)).order_by(Program.name)
    scope = reach(access)
    if not scope.every_program:
        statement = statement.where(Program.id.in_(scope.program_ids))
    return list(access.db.scalars(statement))


def program(access: Access, program_id: int) -> Program:
    found = access.db.get(Program, program_id)
    if found is None or not may_administer_program(access.actor, program_id):
        raise NotFound(f"program {program_id} is not known")
    return found


def users(access: Access) -> list[User]:
    """Accounts with a membership in a program within reach (every account for a system
    administrator), by e-mail. Some may also belong to programs out of reach: see `manages`."""
    statement = select(User).options(selectinload(User.memberships)).order_by(User.email)
    scope = reach(access)
    if not scope.every_program:
        members = select(Membership.user_id).where(Membership.program_id.in_(scope.program_ids))
        statement = statement.where(User.id.in_(members))
    return list(access.db.scalars(statement))


def manages(access: Access, user: User) -> bool:
    return bool(may_manage_user(access.actor, user.program_ids, user.system_admin))


def user(access: Access, user_id: int) -> User:
    """An account the administrator manages (see `policy.may_manage_user`)."""
    found = access.db.get(User, user_id)
    if found is None or not manages(access, found):
        raise NotFound(f"user {user_id} is not known")
    return found


def patient_by_mrn(access: Access, mrn: str) -> str | None:
    """The patient with this MRN in a program within reach, for linking a patient account."""
    if not mrn:
        return None
    statement = (
        select(PatientIdentifier.patient_id)
        .join(Patient, Patient.id == PatientIdentifier.patient_id)
        .where(PatientIdentifier.value == mrn)
    )
    scope = reach(access)
    if not scope.every_program:
        statement = statement.where(Patient.program_id.in_(scope.program_ids))
    patient_id = access.db.scalar(statement.limit(1))
    if patient_id is None:
        raise InvalidInput("patient_mrn", f"no patient has MRN {mrn}")
    return patient_id


def _audit_within(scope: AdminReach) -> ColumnElement[bool]:
    """An entry is within reach when it is about a patient of a program within reach; or, about
    no one patient, when it was made by (or, signed out, in the name of) a member of such a
    program and showed no patient out of reach."""
    if scope.every_program:
        return true()
    if not scope.program_ids:
        return false()
    patients = select(Patient.id).where(Patient.program_id.in_(scope.program_ids))
    members = select(Membership.user_id).where(Membership.program_id.in_(scope.program_ids))
    member_emails = select(User.email).where(User.id.in_(members))
    showed_others = exists().where(
        AuditEntryPatient.audit_entry_id == AuditEntry.id,
        AuditEntryPatient.patient_id.not_in(patients),
    )
    by_member = or_(
        AuditEntry.user_id.in_(members),
        and_(AuditEntry.user_id.is_(None), AuditEntry.actor.in_(member_emails)),
    )
    return or_(
        AuditEntry.patient_id.in_(patients),
        and_(AuditEntry.patient_id.is_(None), by_member, ~showed_others),
    )


def audit_entries_of(access: Access, patient_id: str) -> Select[AuditEntry]:
    """One patient's audit trail. A patient of a program out of the administrator's reach is
    refused (403, audited), as a search for them is on every other resource type; an unknown
    patient matches nothing."""
    patient = access.db.get(Patient, patient_id)
    if patient is not None:
        access.require_decision(
            may_administer_program(access.actor, patient.program_id), "search", "AuditEvent"
        )
    return audit_entries(access).where(AuditEntry.patient_id == patient_id)


def audit_entries(access: Access) -> Select[AuditEntry]:
    """The audit trail within reach; the caller adds its filters, order and paging."""
    return select(AuditEntry).where(_audit_within(reach(access)))


def audit_entry(access: Access, entry_id: int) -> AuditEntry | None:
    return access.db.scalar(audit_entries(access).where(AuditEntry.id == entry_id))
