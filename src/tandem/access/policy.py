"""The one policy: who may see or change what.

Every route asks here, through `decide`, before it touches patient data; nothing else decides
access. Pure: plain values in, a `Decision` out. The inputs are the actor's role, their program
memberships, their own patient record (for patients), the scopes of an API token, and the
patient's program, and the patient's consents (42 CFR Part 2) naming the actor's program: staff
of another program read a patient's records only under a valid consent for treatment covering
that kind of record, and records leave the program (a disclosure) only under a valid consent
covering that recipient, purpose and information.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from tandem.access.scopes import Scope


class Role(StrEnum):
    ADMIN = "admin"
    PRESCRIBER = "prescriber"
    NURSE = "nurse"
    COUNSELOR = "counselor"
    PATIENT = "patient"
    RESEARCHER = "researcher"


class Permission(StrEnum):
    """SMART v2 letters."""

    CREATE = "c"
    READ = "r"
    UPDATE = "u"
    DELETE = "d"
    SEARCH = "s"


ROLE_LABELS: dict[Role, str] = {
    Role.ADMIN: "Administrator",
    Role.PRESCRIBER: "Prescriber",
    Role.NURSE: "Nurse",
    Role.COUNSELOR: "Counselor",
    Role.PATIENT: "Patient",
    Role.RESEARCHER: "Researcher",
}

# What each role may do with patient records of its own programs ("*" = every patient type).
# Researchers see no identified record: they work from de-identified outcomes.
# Patients see only their own record. Nobody deletes a clinical record.
ROLE_GRANTS: dict[Role, dict[str, str]] = {
    # Prescribing (a MedicationRequest: a titration, taper or fixed-dose plan) is the prescriber's.
    Role.ADMIN: {"*": "crus", "MedicationRequest": "rs"},
    Role.PRESCRIBER: {"*": "crus"},
    # Alerts go to the prescriber on duty: a nurse sees them but does not acknowledge them.
    Role.NURSE: {"*": "crus", "Alert": "rs", "MedicationRequest": "rs"},
    # Counselors discuss treatment options with patients and record the patient's decision,
    # give the self-report scales (PHQ-9, GAD-7, PACS...) with their patients, keep the rehab
    # program (the care plan, the sessions and their attendance), answer questions
    # (Communication) and call people back (CommunicationRequest), and record the consents
    # patients sign and release records under them. A withdrawal assessment also needs
    # Observation create, which they do not have.
    Role.COUNSELOR: {
        "*": "rs",
        "TreatmentDecision": "crs",
        "QuestionnaireResponse": "crs",
        "CarePlan": "crus",
        "Appointment": "crus",
        "Communication": "crus",
        "CommunicationRequest": "crus",
        "Consent": "crus",
        "Disclosure": "crs",
    },
    # Alerts are messages between clinicians about the patient, not part of the patient's view;
    # so are safety screening findings (DetectedIssue) and the program's protocol
    # (PlanDefinition): patients read plain language written for them instead.
    # A patient answers self-report scales for their own record only (QuestionnaireResponse
    # create); withdrawal assessments need Observation create too, which patients lack. Patients
    # ask a counselor a question or for a call back from their own record. And a patient reports
    # on themselves from their portal: their daily check-in, whether they took each planned dose
    # (a MedicationStatement, which feeds adherence), side effects of their medicine
    # (AdverseEvent), and which reminders they want. A patient revokes their own consents (an
    # update of its status, nothing else). Nothing else of their record is theirs to write.
    Role.PATIENT: {
        "*": "rs",
        "QuestionnaireResponse": "crs",
        "Alert": "",
        "DetectedIssue": "",
        "PlanDefinition": "",
        "Communication": "crs",
        "CommunicationRequest": "crs",
        "CheckIn": "crus",
        "MedicationStatement": "crus",
        "AdverseEvent": "crs",
        "ReminderPreference": "crus",
        "Consent": "rsu",
    },
    # Researchers read program-level, de-identified counts (MeasureReport) only.
    Role.RESEARCHER: {"MeasureReport": "rs"},
}

ROLE_DUTIES: dict[Role, str] = {
    Role.ADMIN: "Manages users, roles and programs; reads the audit trail; full chart access in own programs.",
    Role.PRESCRIBER: "Reads and writes charts of patients in own programs; prescribes (dose plans); "
    "receives escalations.",
    Role.NURSE: "Registers patients, records assessments and doses given in own programs; does not prescribe.",
    Role.COUNSELOR: "Reads charts of patients in own programs; gives self-report scales; keeps "
    "their care plans, sessions and attendance; answers questions and call-back requests to own "
    "programs; records consents and releases records under them.",
    Role.PATIENT: "Reads own record; checks in daily, reports own doses taken or missed, answers "
    "self-report scales, asks counselors, chooses own reminders and revokes own consents.",
    Role.RESEARCHER: "No identified patient records; program-level outcomes only.",
}

STAFF_ROLES = frozenset({Role.ADMIN, Role.PRESCRIBER, Role.NURSE, Role.COUNSELOR})


@dataclass(frozen=True)
class Actor:
    user_id: int
    label: str
    role: Role
    program_ids: frozenset[int] = frozenset()
    patient_id: str | None = None
    # None for a signed-in browser session; the token's scopes for an API client.
    scopes: tuple[Scope, ...] | None = None
    # An administrator of every program (granted only by the CLI), not only of their own.
    system_admin: bool = False
    # The patient a SMART app was launched for by a member of staff: the token's patient/
    # scopes reach this patient's record only (a patient's own tokens use `patient_id`).
    context_patient_id: str | None = None


@dataclass(frozen=True)
class PatientRef:
    patient_id: str
    program_id: int


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str

    def __bool__(self) -> bool:
        return self.allowed


@dataclass(frozen=True)
class Visibility:
    """What a search may return: patients of these programs, or only this one patient."""

    program_ids: frozenset[int] = field(default_factory=frozenset)
    only_patient_id: str | None = None
    nothing: bool = False
    # Patients of other programs whose valid consent lets the actor's program see these records.
    consented_patient_ids: frozenset[str] = field(default_factory=frozenset)


# --- consent (42 CFR Part 2) -------------------------------------------------------------------

# HL7 v3 PurposeOfUse (http://terminology.hl7.org/CodeSystem/v3-ActReason): the one purpose under
# which another program's staff may read a patient's records in Tandem.
TREATMENT = "TREAT"
# Consent never reaches these: they are about the actor's own program, not the patient's record.
NOT_UNDER_CONSENT = frozenset({"Alert", "Consent", "Disclosure", "AuditEvent", "MeasureReport"})


@dataclass(frozen=True)
class ConsentGrant:
    """One consent of a patient, as the policy needs it: who may receive the records (another
    Tandem program, or someone outside named in words), for which purpose, which kinds of
    record (None: every substance-use record), and when it starts, ends and was revoked."""

    consent_id: int
    patient_id: str
    purpose: str
    starts_at: datetime
    recipient_program_id: int | None = None
    recipient_name: str = ""
    resource_types: frozenset[str] | None = None
    expires_at: datetime | None = None
    revoked_at: datetime | None = None

    def state(self, now: datetime) -> str:
        """valid | revoked | expired | not yet signed, as of `now`."""
        if self.revoked_at is not None and self.revoked_at <= now:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        if self.starts_at > now:
            return "not yet signed"
        return "valid"

    def covers(self, resource_type: str) -> bool:
        if resource_type in NOT_UNDER_CONSENT:
            return False
        if resource_type == "Patient" or self.resource_types is None:
            return True  # the consent names the patient: who the records are about is covered
        return resource_type in self.resource_types


@dataclass(frozen=True)
class Consents:
    """The consents of the patients a request touches that name one of the actor's programs
    (or anyone, for a disclosure), loaded once per patient per request, and the moment they
    are judged at."""

    grants: tuple[ConsentGrant, ...] = ()
    now: datetime | None = None


NO_CONSENTS = Consents()


def _grant_allows(
    actor: Actor, resource_type: str, grant: ConsentGrant, now: datetime | None
) -> bool:
    return (
        now is not None
        and grant.recipient_program_id in actor.program_ids
        and grant.purpose == TREATMENT
        and grant.covers(resource_type)
        and grant.state(now) == "valid"
    )


def _consent_for(
    actor: Actor, resource_type: str, patient: PatientRef, consents: Consents
) -> ConsentGrant | None:
    for grant in consents.grants:
        if grant.patient_id == patient.patient_id and _grant_allows(
            actor, resource_type, grant, consents.now
        ):
            return grant
    return None


def may_rest_on_consent(actor: Actor) -> bool:
    """Whether any decision about `actor` can turn on a patient's consent (staff only)."""
    return actor.role in STAFF_ROLES


def consent_matters(actor: Actor, patient: PatientRef) -> bool:
    """Whether a decision about `patient` can turn on their consents: staff outside the
    patient's program (so the consents are loaded only then, never for one's own patients)."""
    return may_rest_on_consent(actor) and patient.program_id not in actor.program_ids


def _scope_allows(
    actor: Actor,
    resource_type: str,
    permission: Permission,
    patient: PatientRef | None = None,
    program_id: int | None = None,
) -> Decision:
    if actor.scopes is None:
        return Decision(True, "browser session")
    contexts = ("patient",) if actor.role is Role.PATIENT else ("user", "system")
    for scope in actor.scopes:
        if not scope.grants(resource_type, permission.value):
            continue
        if scope.context in contexts:
            return Decision(True, f"scope {scope}")
        if _in_launch_context(actor, scope, permission, patient, program_id):
            return Decision(True, f"scope {scope} for the patient the app was launched for")
    wanted = (
        f"{'patient' if actor.role is Role.PATIENT else 'user'}/{resource_type}.{permission.value}"
    )
    return Decision(False, f"token lacks a scope granting {wanted}")


def _in_launch_context(
    actor: Actor,
    scope: Scope,
    permission: Permission,
    patient: PatientRef | None,
    program_id: int | None,
) -> bool:
    """A member of staff's patient/ scope reaches the patient in context only: that patient's
    records, or a search (`visibility` then narrows it to that patient)."""
    if scope.context != "patient" or actor.context_patient_id is None:
        return False
    if patient is not None:
        return patient.patient_id == actor.context_patient_id
    return program_id is None and permission is Permission.SEARCH


def _only_launch_context(actor: Actor, resource_type: str) -> bool:
    """Staff searching with no user/ scope for `resource_type`, only patient/ scopes of a launch."""
    if actor.scopes is None or actor.context_patient_id is None or actor.role is Role.PATIENT:
        return False
    return not any(
        s.context in ("user", "system") and s.grants(resource_type, Permission.SEARCH.value)
        for s in actor.scopes
    )


def grantable(role: Role, scope: Scope) -> Scope | None:
    """The part of `scope` an app may be granted for someone of `role`: its permissions
    narrowed to what the role may do with that type (with any type, for `*`). None when nothing
    is left. Granting it never widens access: every request is still decided by role and scope
    together (`decide`)."""
    grants = ROLE_GRANTS[role]
    if scope.resource_type == "*":
        allowed = set("".join(grants.values()))
    else:
        allowed = set(grants.get(scope.resource_type, grants.get("*", "")))
    letters = "".join(c for c in scope.permissions if c in allowed)
    return Scope(scope.context, scope.resource_type, letters) if letters else None


# What people do on the pages, in the clinic's words, and the permission each needs. Pages ask
# `may(actor, action, ...)` before offering an action; routes require the same before reading
# a form. One table: no template or route restates a role.
ACTIONS: dict[str, tuple[Permission, str]] = {
    "read_chart": (Permission.READ, "Patient"),
    "find_patients": (Permission.SEARCH, "Patient"),
    "register_patient": (Permission.CREATE, "Patient"),
    "edit_patient": (Permission.UPDATE, "Patient"),
    "assess": (Permission.CREATE, "QuestionnaireResponse"),
    "fill_scale": (Permission.CREATE, "QuestionnaireResponse"),
    "record_context": (Permission.UPDATE, "Condition"),
    "give_dose": (Permission.CREATE, "MedicationAdministration"),
    "report_dose": (Permission.CREATE, "MedicationStatement"),
    "prescribe": (Permission.CREATE, "MedicationRequest"),
    "change_plan": (Permission.UPDATE, "MedicationRequest"),
    "record_facts": (Permission.CREATE, "Observation"),
    "record_side_effect": (Permission.CREATE, "AdverseEvent"),
    "see_alerts": (Permission.SEARCH, "Alert"),
    "see_screening": (Permission.READ, "DetectedIssue"),
    "see_protocol": (Permission.READ, "PlanDefinition"),
    "see_outcomes": (Permission.READ, "MeasureReport"),
    "record_consent": (Permission.CREATE, "Consent"),
    "revoke_consent": (Permission.UPDATE, "Consent"),
    "see_consents": (Permission.SEARCH, "Consent"),
    "disclose": (Permission.CREATE, "Disclosure"),
    "acknowledge_alert": (Permission.UPDATE, "Alert"),
    "record_decision": (Permission.CREATE, "TreatmentDecision"),
    "ask_counselor": (Permission.CREATE, "Communication"),
    "see_questions": (Permission.SEARCH, "Communication"),
    "answer_questions": (Permission.UPDATE, "Communication"),
    "check_in": (Permission.CREATE, "CheckIn"),
    "set_reminders": (Permission.UPDATE, "ReminderPreference"),
}

# How a refusal reads to the person refused ("a counselor may not record assessments").
_DOING: dict[tuple[Permission, str], str] = {
    (Permission.READ, "Patient"): "open patient charts",
    (Permission.SEARCH, "Patient"): "search patient charts",
    (Permission.CREATE, "Patient"): "register patients",
    (Permission.UPDATE, "Patient"): "change patient details",
    (Permission.CREATE, "QuestionnaireResponse"): "record assessments",
    (Permission.UPDATE, "Condition"): "record the withdrawal context",
    (Permission.CREATE, "MedicationAdministration"): "record doses given",
    (Permission.CREATE, "MedicationStatement"): "report doses taken",
    (Permission.CREATE, "MedicationRequest"): "prescribe (start a dose plan)",
    (Permission.UPDATE, "MedicationRequest"): "change or stop a dose plan",
    (Permission.CREATE, "Observation"): "record measurements",
    (Permission.CREATE, "AdverseEvent"): "record side effects",
    (Permission.SEARCH, "Alert"): "see alerts",
    (Permission.READ, "DetectedIssue"): "see safety screening findings",
    (Permission.READ, "PlanDefinition"): "see the program's protocol",
    (Permission.READ, "MeasureReport"): "see program outcomes",
    (Permission.UPDATE, "Alert"): "acknowledge alerts",
    (Permission.CREATE, "TreatmentDecision"): "record a patient's treatment decision",
    (Permission.CREATE, "CarePlan"): "start care plans",
    (Permission.UPDATE, "CarePlan"): "change care plans",
    (Permission.CREATE, "Appointment"): "book sessions",
    (Permission.UPDATE, "Appointment"): "record attendance or move sessions",
    (Permission.CREATE, "Communication"): "ask a counselor",
    (Permission.SEARCH, "Communication"): "see questions to counselors",
    (Permission.READ, "Communication"): "read questions to counselors",
    (Permission.UPDATE, "Communication"): "answer questions to counselors",
    (Permission.CREATE, "CheckIn"): "record a daily check-in",
    (Permission.UPDATE, "CheckIn"): "change a daily check-in",
    (Permission.UPDATE, "ReminderPreference"): "change reminder choices",
    (Permission.CREATE, "Consent"): "record consents",
    (Permission.UPDATE, "Consent"): "revoke consents",
    (Permission.CREATE, "Disclosure"): "release records outside the program",
}


# Actions that store more than their main record: every part must be allowed, and a refusal
# names the action. A withdrawal assessment stores Observations beside its QuestionnaireResponse,
# so a patient or a counselor, who may answer self-report scales, may not record one.
ACTION_ALSO: dict[str, tuple[tuple[Permission, str], ...]] = {
    "assess": ((Permission.CREATE, "Observation"),),
}


def doing(permission: Permission, resource_type: str) -> str:
    return _DOING.get(
        (permission, resource_type), f"{permission.name.lower()} {resource_type} records"
    )


def _role_allows(actor: Actor, resource_type: str, permission: Permission) -> Decision:
    grants = ROLE_GRANTS[actor.role]
    letters = grants.get(resource_type, grants.get("*", ""))
    if permission.value in letters:
        return Decision(True, f"role {actor.role}")
    label = ROLE_LABELS[actor.role].lower()
    article = "an" if label[0] in "aeiou" else "a"
    return Decision(False, f"{article} {label} may not {doing(permission, resource_type)}")


def decide(
    actor: Actor,
    permission: Permission,
    resource_type: str,
    patient: PatientRef | None = None,
    program_id: int | None = None,
    consents: Consents = NO_CONSENTS,
) -> Decision:
    """May `actor` do `permission` on `resource_type` of `patient` (or in `program_id`)?

    Deny by default: role, then token scope, then program membership, own record, or (to read
    and search) a valid consent of the patient naming the actor's program for treatment and
    covering `resource_type`.
    """
    for check in (
        _role_allows(actor, resource_type, permission),
        _scope_allows(actor, resource_type, permission, patient, program_id),
    ):
        if not check:
            return check
    if patient is not None:
        if actor.role is Role.PATIENT:
            if actor.patient_id == patient.patient_id:
                return Decision(True, "own record")
            return Decision(False, "a patient may see only their own record")
        if patient.program_id in actor.program_ids:
            return Decision(True, "member of the patient's program")
        if permission in (Permission.READ, Permission.SEARCH):
            grant = _consent_for(actor, resource_type, patient, consents)
            if grant is not None:
                return Decision(True, f"consent {grant.consent_id} of the patient (treatment)")
            return Decision(
                False,
                "not a member of the patient's program, and no valid consent of the patient "
                f"names your program for treatment covering {resource_type} records",
            )
        return Decision(False, "not a member of the patient's program")
    if program_id is not None:
        if actor.role is Role.PATIENT:
            return Decision(False, "a patient may not act on a program")
        if program_id in actor.program_ids:
            return Decision(True, "member of the program")
        return Decision(False, "not a member of the program")
    if permission is Permission.SEARCH:
        return Decision(True, "search limited to visible records")
    return Decision(False, "no patient or program given")


def may(
    actor: Actor, action: str, patient: PatientRef | None = None, program_id: int | None = None
) -> Decision:
    """May `actor` do `action` (a key of `ACTIONS`) for `patient` (or in `program_id`)?
    What pages ask before they offer a button or a form; an unknown action is a KeyError."""
    permission, resource_type = ACTIONS[action]
    decision = decide(actor, permission, resource_type, patient, program_id)
    if not decision:
        return decision
    for also_permission, also_type in ACTION_ALSO.get(action, ()):
        if not decide(actor, also_permission, also_type, patient, program_id):
            label = ROLE_LABELS[actor.role].lower()
            article = "an" if label[0] in "aeiou" else "a"
            return Decision(False, f"{article} {label} may not {doing(permission, resource_type)}")
    return decision


def visibility(
    actor: Actor, resource_type: str = "Patient", consents: Consents = NO_CONSENTS
) -> Visibility:
    """The rows a search by `actor` may return; searches filter by this, never after. The
    patients of other programs among `consents` (those a search named) whose valid consent
    covers `resource_type` are added to the actor's programs."""
    if not decide(actor, Permission.SEARCH, resource_type):
        return Visibility(nothing=True)
    if actor.role is Role.PATIENT:
        if actor.patient_id is None:
            return Visibility(nothing=True)
        return Visibility(only_patient_id=actor.patient_id)
    consented = frozenset(
        grant.patient_id
        for grant in consents.grants
        if _grant_allows(actor, resource_type, grant, consents.now)
    )
    if _only_launch_context(actor, resource_type):
        # An app launched on one patient sees that patient only (under consent too).
        return Visibility(
            program_ids=actor.program_ids,
            only_patient_id=actor.context_patient_id,
            consented_patient_ids=consented & {actor.context_patient_id or ""},
        )
    return Visibility(program_ids=actor.program_ids, consented_patient_ids=consented)


def may_disclose(
    actor: Actor,
    patient: PatientRef,
    consents: Consents,
    *,
    recipient_program_id: int | None,
    recipient_name: str,
    purpose: str,
    resource_types: Iterable[str],
) -> tuple[Decision, ConsentGrant | None]:
    """May `actor` release these kinds of `patient`'s records to this recipient for this
    purpose (a disclosure outside the program)? Only staff of the patient's program who may
    create a Disclosure, and only under a valid consent naming that recipient and purpose and
    covering every kind of record released; the consent it rests on is returned with it."""
    allowed = decide(actor, Permission.CREATE, "Disclosure", patient)
    if not allowed:
        return allowed, None
    wanted = frozenset(resource_types)
    name = " ".join(recipient_name.split()).casefold()
    states: list[str] = []
    for grant in consents.grants:
        if grant.patient_id != patient.patient_id:
            continue
        same_recipient = (
            grant.recipient_program_id == recipient_program_id
            if recipient_program_id is not None
            else grant.recipient_program_id is None
            and " ".join(grant.recipient_name.split()).casefold() == name
        )
        if not same_recipient or grant.purpose != purpose:
            continue
        if not all(grant.covers(t) for t in wanted):
            states.append("does not cover the records asked for")
            continue
        state = grant.state(consents.now) if consents.now is not None else "unknown"
        if state == "valid":
            return Decision(True, f"under consent {grant.consent_id}"), grant
        states.append(state)
    if states:
        return Decision(
            False, f"the patient's consent for this recipient and purpose is {states[0]}"
        ), None
    return Decision(False, "no consent of the patient names this recipient for this purpose"), None


def may_administer(actor: Actor) -> Decision:
    """Users, roles, programs and the audit trail are for administrators (signed in, or a token
    with a user/ scope covering AuditEvent)."""
    if actor.role is not Role.ADMIN:
        return Decision(False, "administrators only")
    return Decision(True, "administrator")


@dataclass(frozen=True)
class AdminReach:
    """The programs whose users, memberships, units and audit trail an administrator manages:
    their own programs, or every program for a system administrator."""

    program_ids: frozenset[int] = frozenset()
    every_program: bool = False

    def covers(self, program_ids: frozenset[int]) -> bool:
        """Every one of these programs is within reach (and there is at least one)."""
        return self.every_program or bool(program_ids) and program_ids <= self.program_ids

    def touches(self, program_ids: frozenset[int]) -> bool:
        return self.every_program or bool(program_ids & self.program_ids)


def admin_reach(actor: Actor) -> AdminReach:
    if not may_administer(actor):
        return AdminReach()
    if actor.system_admin:
        return AdminReach(every_program=True)
    return AdminReach(program_ids=actor.program_ids)


def may_administer_program(actor: Actor, program_id: int) -> Decision:
    admin = may_administer(actor)
    if not admin:
        return admin
    if admin_reach(actor).covers(frozenset({program_id})):
        return Decision(True, "administrator of the program")
    return Decision(False, "not an administrator of the program")


def may_create_program(actor: Actor) -> Decision:
    """A new program is an installation-wide change: a system administrator's (or the
    operator's, from the CLI), not a program administrator's."""
    admin = may_administer(actor)
    if not admin:
        return admin
    if actor.system_admin:
        return Decision(True, "system administrator")
    return Decision(False, "only a system administrator adds a program")


def may_manage_user(actor: Actor, program_ids: frozenset[int], system_admin: bool) -> Decision:
    """An account is managed by an administrator of every program it belongs to; system
    administrators' accounts only by system administrators."""
    admin = may_administer(actor)
    if not admin:
        return admin
    if system_admin and not actor.system_admin:
        return Decision(False, "only a system administrator manages a system administrator")
    if admin_reach(actor).covers(program_ids):
        return Decision(True, "administrator of the user's programs")
    return Decision(False, "the user belongs to a program the administrator does not administer")


def may_change_programs(actor: Actor, before: frozenset[int], after: frozenset[int]) -> Decision:
    """Memberships are added or removed only in programs the administrator administers."""
    changed = before ^ after
    if not changed or admin_reach(actor).covers(changed):
        return Decision(True, "programs within reach")
    return Decision(False, "choose only programs you administer")


def may_read_audit(actor: Actor) -> Decision:
    admin = may_administer(actor)
    if not admin:
        return admin
    return _scope_allows(actor, "AuditEvent", Permission.READ)
