"""Consent in the one policy, as a table: staff of another program read and search a patient's
records only under a valid consent (signed, unexpired, unrevoked) naming their program for
treatment and covering that kind of record; a disclosure only under a valid consent for that
recipient, purpose and information."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tandem.access.policy import (
    Actor,
    ConsentGrant,
    Consents,
    PatientRef,
    Permission,
    Role,
    consent_matters,
    decide,
    may_disclose,
    visibility,
)
from tandem.choice.consent import covered_types

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
HOME, OTHER, THIRD = 1, 2, 3
PATIENT = PatientRef("p-1", HOME)


def staff(role: Role = Role.COUNSELOR, program: int = OTHER) -> Actor:
    return Actor(7, "x@test", role, frozenset({program}))


def grant(**changes: object) -> ConsentGrant:
    values: dict[str, object] = {
        "consent_id": 5,
        "patient_id": "p-1",
        "purpose": "TREAT",
        "starts_at": NOW - timedelta(days=10),
        "recipient_program_id": OTHER,
        "recipient_name": "Bravo Outpatient",
        "resource_types": None,
        "expires_at": NOW + timedelta(days=30),
        "revoked_at": None,
    }
    values.update(changes)
    return ConsentGrant(**values)  # type: ignore[arg-type]


CASES = [
    ("valid, every record", grant(), "Observation", True),
    ("valid, the chart itself", grant(resource_types=frozenset({"Observation"})), "Patient", True),
    ("expired", grant(expires_at=NOW - timedelta(seconds=1)), "Observation", False),
    ("revoked", grant(revoked_at=NOW - timedelta(minutes=1)), "Observation", False),
    (
        "revoked later (still in force now)",
        grant(revoked_at=NOW + timedelta(days=1)),
        "Observation",
        True,
    ),
    ("signed only tomorrow", grant(starts_at=NOW + timedelta(days=1)), "Observation", False),
    ("another program named", grant(recipient_program_id=THIRD), "Observation", False),
    ("someone outside named", grant(recipient_program_id=None), "Observation", False),
    ("payment, not treatment", grant(purpose="HPAYMT"), "Observation", False),
    ("research, not treatment", grant(purpose="HRESCH"), "Observation", False),
    (
        "medications only: a dose plan",
        grant(resource_types=covered_types("medications")),
        "MedicationRequest",
        True,
    ),
    (
        "medications only: an assessment",
        grant(resource_types=covered_types("medications")),
        "QuestionnaireResponse",
        False,
    ),
    ("another patient's consent", grant(patient_id="p-2"), "Observation", False),
    ("never the program's alerts", grant(), "Alert", False),
]


@pytest.mark.parametrize(
    ("case", "consent", "resource_type", "allowed"), CASES, ids=[c[0] for c in CASES]
)
@pytest.mark.parametrize("permission", [Permission.READ, Permission.SEARCH])
def test_reading_another_programs_patient_under_consent(
    case: str, consent: ConsentGrant, resource_type: str, allowed: bool, permission: Permission
) -> None:
    decision = decide(
        staff(), permission, resource_type, PATIENT, consents=Consents((consent,), NOW)
    )
    assert bool(decision) is allowed, decision.reason
    if not allowed:
        assert "no valid consent" in decision.reason


@pytest.mark.parametrize("role", [Role.ADMIN, Role.PRESCRIBER, Role.NURSE, Role.COUNSELOR])
def test_consent_never_lets_another_program_write(role: Role) -> None:
    consents = Consents((grant(),), NOW)
    assert decide(staff(role), Permission.READ, "Patient", PATIENT, consents=consents)
    for permission in (Permission.CREATE, Permission.UPDATE):
        refused = decide(staff(role), permission, "Observation", PATIENT, consents=consents)
        assert not refused


def test_without_consents_another_program_is_refused_and_nothing_is_loaded_for_ones_own() -> None:
    assert not decide(staff(), Permission.READ, "Patient", PATIENT)
    assert consent_matters(staff(), PATIENT)
    assert not consent_matters(staff(program=HOME), PATIENT)
    patient = Actor(9, "p@test", Role.PATIENT, frozenset({HOME}), "p-1")
    assert not consent_matters(patient, PATIENT)
    researcher = staff(Role.RESEARCHER)
    assert not decide(
        researcher, Permission.READ, "Patient", PATIENT, consents=Consents((grant(),), NOW)
    )


def test_search_visibility_adds_only_consented_patients_for_covered_types() -> None:
    consents = Consents((grant(resource_types=covered_types("assessments")),), NOW)
    seen = visibility(staff(), "Observation", consents)
    assert seen.program_ids == {OTHER} and seen.consented_patient_ids == {"p-1"}
    assert visibility(staff(), "MedicationRequest", consents).consented_patient_ids == set()
    expired = Consents((grant(expires_at=NOW - timedelta(days=1)),), NOW)
    assert visibility(staff(), "Observation", expired).consented_patient_ids == set()


def _disclose(consent: ConsentGrant, **asked: object) -> tuple[bool, str]:
    values: dict[str, object] = {
        "recipient_program_id": None,
        "recipient_name": "Dr  Lee's clinic",
        "purpose": "TREAT",
        "resource_types": covered_types("medications") or (),
    }
    values.update(asked)
    decision, found = may_disclose(
        staff(program=HOME),
        PATIENT,
        Consents((consent,), NOW),
        **values,  # type: ignore[arg-type]
    )
    assert (found is not None) is bool(decision)
    return bool(decision), decision.reason


OUTSIDE = grant(recipient_program_id=None, recipient_name="Dr Lee's clinic")


@pytest.mark.parametrize(
    ("case", "consent", "asked", "allowed", "says"),
    [
        (
            "valid (name compared without case or extra spaces)",
            OUTSIDE,
            {"recipient_name": "dr lee's  CLINIC"},
            True,
            "under consent 5",
        ),
        (
            "no consent for that recipient",
            OUTSIDE,
            {"recipient_name": "An employer"},
            False,
            "no consent",
        ),
        ("another purpose", OUTSIDE, {"purpose": "HPAYMT"}, False, "no consent"),
        (
            "expired",
            grant(recipient_program_id=None, recipient_name="Dr Lee's clinic", expires_at=NOW),
            {},
            False,
            "expired",
        ),
        (
            "revoked",
            grant(recipient_program_id=None, recipient_name="Dr Lee's clinic", revoked_at=NOW),
            {},
            False,
            "revoked",
        ),
        (
            "information not covered",
            grant(
                recipient_program_id=None,
                recipient_name="Dr Lee's clinic",
                resource_types=covered_types("assessments"),
            ),
            {},
            False,
            "does not cover",
        ),
        (
            "a program recipient by id",
            grant(),
            {"recipient_program_id": OTHER, "recipient_name": ""},
            True,
            "under consent",
        ),
        (
            "a program not named",
            grant(),
            {"recipient_program_id": THIRD, "recipient_name": ""},
            False,
            "no consent",
        ),
    ],
)
def test_disclosure_needs_a_valid_consent_for_that_recipient_and_purpose(
    case: str, consent: ConsentGrant, asked: dict[str, object], allowed: bool, says: str
) -> None:
    ok, reason = _disclose(consent, **asked)
    assert ok is allowed and says in reason, reason


def test_only_the_patients_own_program_discloses() -> None:
    decision, _ = may_disclose(
        staff(program=OTHER),
        PATIENT,
        Consents((OUTSIDE,), NOW),
        recipient_program_id=None,
        recipient_name="Dr Lee's clinic",
        purpose="TREAT",
        resource_types=(),
    )
    assert not decision and "not a member" in decision.reason
    patient = Actor(9, "p@test", Role.PATIENT, frozenset({HOME}), "p-1")
    decision, _ = may_disclose(
        patient,
        PATIENT,
        Consents((OUTSIDE,), NOW),
        recipient_program_id=None,
        recipient_name="Dr Lee's clinic",
        purpose="TREAT",
        resource_types=(),
    )
    assert not decision
