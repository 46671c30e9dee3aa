"""The one data-access layer, probed as an attacker from another program would, on both engines:
one answer for every resource type, every refusal audited, every list recording whom it showed.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from tandem.storage.models import AuditEntry, AuditEntryPatient
from tests.conftest import World, make_token, sign_in

# Every FHIR search that takes a patient, and what a stranger must get back.
PATIENT_SEARCHES = (
    "Observation",
    "MedicationAdministration",
    "MedicationStatement",
    "AdverseEvent",
    "MedicationRequest",
    "QuestionnaireResponse",
    "CarePlan",
    "Appointment",
    "Encounter",
    "Communication",
    "CommunicationRequest",
    "Consent",
)
# Searches that take `patient` only (no `subject`).
PATIENT_ONLY = frozenset({"MedicationAdministration", "Appointment", "Consent"})


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def refusals(sessions, patient_id: str, resource_type: str) -> list[AuditEntry]:  # type: ignore[no-untyped-def]
    with sessions() as db:
        return list(
            db.scalars(
                select(AuditEntry).where(
                    AuditEntry.patient_id == patient_id,
                    AuditEntry.resource_type == resource_type,
                    AuditEntry.outcome == "4",
                )
            )
        )


@pytest.mark.parametrize("resource_type", PATIENT_SEARCHES)
def test_a_search_for_a_patient_of_another_program_is_refused_and_audited(
    client, sessions, world: World, resource_type: str
) -> None:
    nurse_b = make_token(sessions, world.email("nurse_b"), "user/*.rs")
    for param in ("patient", "subject"):
        if resource_type in PATIENT_ONLY and param == "subject":
            continue
        answer = client.get(
            f"/fhir/{resource_type}",
            params={param: f"Patient/{world.patient_a}"},
            headers=auth(nurse_b),
        )
        assert answer.status_code == 403, (resource_type, param, answer.text)
        assert answer.json()["issue"][0]["code"] == "forbidden"
    refused = refusals(sessions, world.patient_a, resource_type)
    assert refused, f"the refused {resource_type} search left no audit entry"
    assert all(r.actor == world.email("nurse_b") and r.operation == "search" for r in refused)


@pytest.mark.parametrize("resource_type", PATIENT_SEARCHES)
def test_the_same_search_within_reach_is_answered_and_audited(
    client, sessions, world: World, resource_type: str
) -> None:
    nurse = make_token(sessions, world.email("nurse"), "user/*.rs")
    answer = client.get(
        f"/fhir/{resource_type}", params={"patient": world.patient_a}, headers=auth(nurse)
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["type"] == "searchset"
    with sessions() as db:
        entry = db.scalars(
            select(AuditEntry).where(
                AuditEntry.resource_type == resource_type,
                AuditEntry.operation == "search",
                AuditEntry.outcome == "0",
            )
        ).one()
    assert entry.patient_id == world.patient_a


def test_a_search_for_an_unknown_patient_matches_nothing(client, sessions, world: World) -> None:
    nurse = make_token(sessions, world.email("nurse"), "user/*.rs")
    for resource_type in PATIENT_SEARCHES:
        answer = client.get(
            f"/fhir/{resource_type}", params={"patient": "no-such-patient"}, headers=auth(nurse)
        )
        assert answer.status_code == 200 and answer.json().get("entry", []) == [], resource_type


def test_a_patient_read_out_of_reach_is_refused_and_audited(client, sessions, world: World) -> None:
    nurse_b = make_token(sessions, world.email("nurse_b"), "user/*.rs")
    answer = client.get(f"/fhir/Patient/{world.patient_a}", headers=auth(nurse_b))
    assert answer.status_code == 403
    assert refusals(sessions, world.patient_a, "Patient")


def test_roles_without_patient_records_are_refused_every_search(
    client, sessions, world: World
) -> None:
    researcher = make_token(sessions, world.email("researcher"), "user/*.rs")
    for resource_type in ("Patient", *PATIENT_SEARCHES):
        answer = client.get(f"/fhir/{resource_type}", headers=auth(researcher))
        assert answer.status_code == 403, resource_type


def test_a_search_records_every_patient_it_showed(client, sessions, world: World) -> None:
    """ "Who saw patient X" has an answer even when X was one of many rows on a page."""
    nurse = make_token(sessions, world.email("nurse"), "user/*.rs")
    bundle = client.get("/fhir/Patient", headers=auth(nurse)).json()
    shown = {e["resource"]["id"] for e in bundle["entry"]}
    assert shown == {world.patient_a, world.patient_a2}
    with sessions() as db:
        entry = db.scalars(
            select(AuditEntry).where(
                AuditEntry.resource_type == "Patient", AuditEntry.operation == "search"
            )
        ).one()
        recorded = set(
            db.scalars(
                select(AuditEntryPatient.patient_id).where(
                    AuditEntryPatient.audit_entry_id == entry.id
                )
            )
        )
        assert recorded == shown
        # and the question asked the other way round:
        who_saw = db.scalars(
            select(AuditEntry.actor)
            .join(AuditEntryPatient, AuditEntryPatient.audit_entry_id == AuditEntry.id)
            .where(AuditEntryPatient.patient_id == world.patient_a2)
        ).all()
    assert who_saw == [world.email("nurse")]


def test_the_patient_list_page_records_whom_it_showed(client, sessions, world: World) -> None:
    sign_in(client, world.email("counselor"), world.passwords["counselor"])
    page = client.get("/patients")
    assert page.status_code == 200 and "RIVERA" in page.text and "NOVAK" not in page.text
    with sessions() as db:
        shown = set(
            db.scalars(
                select(AuditEntryPatient.patient_id)
                .join(AuditEntry, AuditEntry.id == AuditEntryPatient.audit_entry_id)
                .where(AuditEntry.actor == world.email("counselor"))
            )
        )
    assert shown == {world.patient_a, world.patient_a2}
