"""The one policy, role by role: a patient of their own program, of another program, their own record."""

from __future__ import annotations

import pytest

from tandem.access.policy import (
    Actor,
    PatientRef,
    Permission,
    Role,
    decide,
    may_administer,
    may_read_audit,
    visibility,
)
from tandem.access.scopes import ScopeError, parse_scope, parse_scopes

OWN_PROGRAM, OTHER_PROGRAM = 1, 2
OWN_PATIENT = PatientRef("p-own", OWN_PROGRAM)
OTHER_PATIENT = PatientRef("p-other", OTHER_PROGRAM)
SAME_PROGRAM_PATIENT = PatientRef("p-neighbour", OWN_PROGRAM)


def actor(role: Role, scopes: str | None = None, patient_id: str | None = None) -> Actor:
    return Actor(
        1,
        f"{role}@x.test",
        role,
        frozenset({OWN_PROGRAM}),
        patient_id,
        parse_scopes(scopes) if scopes is not None else None,
    )


# role -> the permissions it has on a patient of its own program (web session, no token)
EXPECTED_OWN_PROGRAM = {
    Role.ADMIN: "crus",
    Role.PRESCRIBER: "crus",
    Role.NURSE: "crus",
    Role.COUNSELOR: "rs",
    Role.RESEARCHER: "",
}


@pytest.mark.parametrize("role", list(EXPECTED_OWN_PROGRAM))
@pytest.mark.parametrize("permission", [Permission.READ, Permission.UPDATE, Permission.DELETE])
def test_staff_on_patients_of_their_own_and_another_program(
    role: Role, permission: Permission
) -> None:
    who = actor(role)
    allowed_here = permission.value in EXPECTED_OWN_PROGRAM[role]
    assert bool(decide(who, permission, "Patient", OWN_PATIENT)) is allowed_here
    other = decide(who, permission, "Patient", OTHER_PATIENT)
    assert not other
    if allowed_here:
        assert "not a member" in other.reason


@pytest.mark.parametrize("role", list(EXPECTED_OWN_PROGRAM))
def test_creating_a_patient_needs_the_role_and_the_program(role: Role) -> None:
    who = actor(role)
    may_create = "c" in EXPECTED_OWN_PROGRAM[role]
    assert bool(decide(who, Permission.CREATE, "Patient", program_id=OWN_PROGRAM)) is may_create
    assert not decide(who, Permission.CREATE, "Patient", program_id=OTHER_PROGRAM)


def test_a_patient_sees_only_their_own_record() -> None:
    me = actor(Role.PATIENT, patient_id="p-own")
    assert decide(me, Permission.READ, "Patient", OWN_PATIENT)
    refused = decide(me, Permission.READ, "Patient", SAME_PROGRAM_PATIENT)
    assert not refused and "own record" in refused.reason
    assert not decide(me, Permission.READ, "Patient", OTHER_PATIENT)
    assert not decide(me, Permission.UPDATE, "Patient", OWN_PATIENT)
    assert not decide(me, Permission.CREATE, "Patient", program_id=OWN_PROGRAM)
    assert visibility(me).only_patient_id == "p-own"


def test_researchers_see_no_identified_records() -> None:
    assert visibility(actor(Role.RESEARCHER)).nothing
    assert not decide(actor(Role.RESEARCHER), Permission.SEARCH, "Patient")


def test_search_is_limited_to_the_actors_programs() -> None:
    assert visibility(actor(Role.NURSE)).program_ids == frozenset({OWN_PROGRAM})


def test_a_token_can_only_narrow_what_the_role_allows() -> None:
    read_only = actor(Role.NURSE, "user/Patient.rs")
    assert decide(read_only, Permission.READ, "Patient", OWN_PATIENT)
    refused = decide(read_only, Permission.UPDATE, "Patient", OWN_PATIENT)
    assert not refused and "user/Patient.u" in refused.reason
    assert not decide(
        actor(Role.NURSE, "user/Observation.rs"), Permission.READ, "Patient", OWN_PATIENT
    )
    # A wide scope gives a counselor nothing the role does not have.
    assert not decide(
        actor(Role.COUNSELOR, "user/*.cruds"), Permission.UPDATE, "Patient", OWN_PATIENT
    )
    # A wide scope never crosses programs.
    assert not decide(actor(Role.ADMIN, "user/*.cruds"), Permission.READ, "Patient", OTHER_PATIENT)


def test_patient_tokens_use_patient_scopes() -> None:
    assert decide(
        actor(Role.PATIENT, "patient/*.rs", "p-own"), Permission.READ, "Patient", OWN_PATIENT
    )
    assert not decide(
        actor(Role.PATIENT, "user/*.rs", "p-own"), Permission.READ, "Patient", OWN_PATIENT
    )
    assert not decide(actor(Role.NURSE, "patient/*.rs"), Permission.READ, "Patient", OWN_PATIENT)


def test_only_administrators_administer_and_read_the_audit_trail() -> None:
    for role in Role:
        assert bool(may_administer(actor(role))) is (role is Role.ADMIN)
    assert may_read_audit(actor(Role.ADMIN))
    assert may_read_audit(actor(Role.ADMIN, "user/AuditEvent.rs"))
    assert not may_read_audit(actor(Role.ADMIN, "user/Patient.rs"))
    assert not may_read_audit(actor(Role.NURSE, "user/*.cruds"))


@pytest.mark.parametrize(
    ("text", "context", "rtype", "perms"),
    [
        ("user/Patient.rs", "user", "Patient", "rs"),
        ("user/*.cruds", "user", "*", "cruds"),
        ("patient/*.rs", "patient", "*", "rs"),
        ("user/Observation.read", "user", "Observation", "rs"),
        ("user/*.write", "user", "*", "cud"),
        ("system/*.*", "system", "*", "cruds"),
    ],
)
def test_scopes_parse(text: str, context: str, rtype: str, perms: str) -> None:
    scope = parse_scope(text)
    assert (scope.context, scope.resource_type, scope.permissions) == (context, rtype, perms)


@pytest.mark.parametrize(
    "text",
    [
        "Patient.rs",
        "user/Patient.xyz",
        "user/Patient.sr",
        "user/patient.rs",
        "doctor/*.rs",
        "user/Patient.rrs",
        "",
    ],
)
def test_bad_scopes_are_refused(text: str) -> None:
    with pytest.raises(ScopeError):
        parse_scope(text)


@pytest.mark.parametrize("role", list(Role))
def test_only_prescribers_prescribe(role: Role) -> None:
    who = actor(role, patient_id="p-own")
    may = decide(who, Permission.CREATE, "MedicationRequest", OWN_PATIENT)
    assert bool(may) is (role is Role.PRESCRIBER)
    assert bool(decide(who, Permission.UPDATE, "MedicationRequest", OWN_PATIENT)) is (
        role is Role.PRESCRIBER
    )
    # Everyone with chart access still reads the plan.
    assert bool(decide(who, Permission.READ, "MedicationRequest", OWN_PATIENT)) is (
        role is not Role.RESEARCHER
    )


# --- SMART apps: what may be granted, and a patient in context --------------------------------


@pytest.mark.parametrize(
    ("role", "asked", "granted"),
    [
        (Role.NURSE, "user/*.cruds", "user/*.crus"),
        (Role.NURSE, "user/MedicationRequest.cruds", "user/MedicationRequest.rs"),
        (Role.PRESCRIBER, "user/MedicationRequest.cu", "user/MedicationRequest.cu"),
        (Role.COUNSELOR, "user/Observation.crs", "user/Observation.rs"),
        (Role.COUNSELOR, "user/Observation.c", None),
        # A patient writes some types of their own record (check-ins, scales, questions): the
        # app may too, type by type as the role may (`decide` still asks per type).
        (Role.PATIENT, "patient/*.cruds", "patient/*.crus"),
        (Role.PATIENT, "patient/Alert.rs", None),
        (Role.RESEARCHER, "user/MeasureReport.rs", "user/MeasureReport.rs"),
        (Role.RESEARCHER, "user/Patient.rs", None),
    ],
)
def test_an_app_is_granted_no_more_than_the_role(
    role: Role, asked: str, granted: str | None
) -> None:
    from tandem.access.policy import grantable

    narrowed = grantable(role, parse_scope(asked))
    assert (str(narrowed) if narrowed else None) == granted


def test_a_staff_launch_reaches_only_the_patient_in_context() -> None:
    from dataclasses import replace

    nurse = replace(actor(Role.NURSE, "patient/*.rs"), context_patient_id=OWN_PATIENT.patient_id)
    assert decide(nurse, Permission.READ, "Observation", OWN_PATIENT)
    assert not decide(nurse, Permission.READ, "Observation", SAME_PROGRAM_PATIENT)
    assert not decide(nurse, Permission.CREATE, "Observation", OWN_PATIENT)  # scope: rs only
    assert decide(nurse, Permission.SEARCH, "Observation")
    seen = visibility(nurse, "Observation")
    assert seen.only_patient_id == OWN_PATIENT.patient_id and seen.program_ids == {OWN_PROGRAM}
    # Without a patient in context, patient/ scopes give a member of staff nothing.
    assert not decide(
        actor(Role.NURSE, "patient/*.rs"), Permission.READ, "Observation", OWN_PATIENT
    )
    # With user/ scopes as well, the search is as wide as the user's.
    both = replace(
        actor(Role.NURSE, "patient/*.rs user/Observation.rs"),
        context_patient_id=OWN_PATIENT.patient_id,
    )
    assert visibility(both, "Observation").only_patient_id is None
    assert not decide(nurse, Permission.READ, "Observation", OTHER_PATIENT)
    assert not may_read_audit(replace(actor(Role.ADMIN, "patient/*.rs"), context_patient_id="x"))
