"""Withdrawal reads and writes go through the one data-access layer, on SQLite and PostgreSQL:
a patient out of reach is refused (403) and the refusal audited, whether named in a search or
read by id; lists audit every patient they show; as-needed doses are stored by the medications
domain, which asks the policy itself."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select

from tandem.access.guard import AccessDenied
from tandem.medications.administrations import DoseGiven, record_given
from tandem.medications.storage import MedicationAdministrationRow
from tandem.storage.db import session_scope, utcnow
from tandem.storage.models import AuditEntry, AuditEntryPatient, Patient, User
from tandem.withdrawal import assessments, doses
from tandem.withdrawal.prn import DoseInput
from tests.conftest import World, make_token, sign_in
from tests.withdrawal.helpers import access_for, admit_to_detox, ciwa_answers

FHIR = {"Content-Type": "application/fhir+json"}


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **FHIR}


def _assessed_and_dosed(sessions, world: World) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """A CIWA-Ar of 12 for patient A and a lorazepam dose given for it."""
    admit_to_detox(sessions, world, world.patient_a)
    with session_scope(sessions) as db:
        access = access_for(sessions, db, world)
        saved = assessments.save_assessment(access, world.patient_a, "ciwa_ar", ciwa_answers(12))
        given = doses.record_dose(
            access,
            world.patient_a,
            DoseInput(saved.assessment.id, 1, "2", "oral", utcnow()),
        )
        return saved.observations[0].id, given.id


def _refusals(sessions, resource_type: str) -> list[AuditEntry]:  # type: ignore[no-untyped-def]
    with sessions() as db:
        return list(
            db.scalars(
                select(AuditEntry).where(
                    AuditEntry.outcome == "4", AuditEntry.resource_type == resource_type
                )
            )
        )


@pytest.mark.parametrize("resource_type", ["Observation", "MedicationAdministration"])
def test_another_programs_nurse_searching_a_patient_is_refused_and_audited(
    client, sessions, world: World, resource_type: str
) -> None:
    _assessed_and_dosed(sessions, world)
    other = make_token(sessions, world.email("nurse_b"), "user/*.cruds")
    for patient in (world.patient_a, f"Patient/{world.patient_a}"):
        refused = client.get(
            f"/fhir/{resource_type}", params={"patient": patient}, headers=auth(other)
        )
        assert refused.status_code == 403, refused.text
        assert refused.json()["resourceType"] == "OperationOutcome"
        assert world.patient_a not in refused.text.replace(f"Patient/{world.patient_a}", "")
    entries = _refusals(sessions, resource_type)
    with sessions() as db:
        nurse_b = db.scalar(select(User.id).where(User.email == world.email("nurse_b")))
    assert len(entries) == 2
    assert {(e.operation, e.patient_id, e.user_id, e.channel) for e in entries} == {
        ("search", world.patient_a, nurse_b, "api")
    }
    # Their own program's search is allowed, and shows nothing of program A.
    own = client.get(f"/fhir/{resource_type}", headers=auth(other))
    assert own.status_code == 200 and own.json().get("entry", []) == []


@pytest.mark.parametrize("resource_type", ["Observation", "MedicationAdministration"])
def test_another_programs_nurse_reading_by_id_is_refused_and_audited(
    client, sessions, world: World, resource_type: str
) -> None:
    observation_id, dose_id = _assessed_and_dosed(sessions, world)
    row_id = observation_id if resource_type == "Observation" else dose_id
    other = make_token(sessions, world.email("nurse_b"), "user/*.cruds")
    refused = client.get(f"/fhir/{resource_type}/{row_id}", headers=auth(other))
    assert refused.status_code == 403
    (entry,) = _refusals(sessions, resource_type)
    assert (entry.operation, entry.resource_id, entry.patient_id) == (
        "read",
        str(row_id),
        world.patient_a,
    )
    nurse = make_token(sessions, world.email("nurse"), "user/*.rs")
    assert client.get(f"/fhir/{resource_type}/{row_id}", headers=auth(nurse)).status_code == 200
    assert client.get(f"/fhir/{resource_type}/999999", headers=auth(nurse)).status_code == 404


def test_the_census_audits_every_patient_it_shows(client, sessions, world: World) -> None:
    admit_to_detox(sessions, world, world.patient_a)
    admit_to_detox(sessions, world, world.patient_a2)
    sign_in(client, world.email("nurse"), world.passwords["nurse"])
    assert client.get(f"/detox/units/{world.unit_a_detox}").status_code == 200
    with sessions() as db:
        entry = db.scalar(
            select(AuditEntry).where(
                AuditEntry.operation == "search",
                AuditEntry.resource_type == "QuestionnaireResponse",
                AuditEntry.query == f"census unit={world.unit_a_detox}",
            )
        )
        assert entry is not None
        shown = set(
            db.scalars(
                select(AuditEntryPatient.patient_id).where(
                    AuditEntryPatient.audit_entry_id == entry.id
                )
            )
        )
    assert shown == {world.patient_a, world.patient_a2}


def test_a_prn_dose_is_stored_by_medications_and_the_chart_audits_the_doses_it_lists(
    client, sessions, world: World
) -> None:
    _, dose_id = _assessed_and_dosed(sessions, world)
    with sessions() as db:
        dose = db.get(MedicationAdministrationRow, dose_id)
        assert dose is not None
        assert (dose.medication_id, dose.dose_value, dose.route, dose.status) == (
            "lorazepam",
            Decimal("2.000"),
            "oral",
            "completed",
        )
        assert dose.assessment_id is not None and dose.indication.startswith("CIWA-Ar 12 (Moderate")
        created = db.scalar(
            select(AuditEntry).where(
                AuditEntry.operation == "create",
                AuditEntry.resource_type == "MedicationAdministration",
            )
        )
        assert created is not None and created.resource_id == str(dose_id)
    sign_in(client, world.email("counselor"), world.passwords["counselor"])
    chart = client.get(f"/patients/{world.patient_a}/withdrawal")
    assert chart.status_code == 200 and "lorazepam 2 mg" in chart.text
    with sessions() as db:
        listed = db.scalar(
            select(AuditEntry).where(
                AuditEntry.operation == "search",
                AuditEntry.resource_type == "MedicationAdministration",
                AuditEntry.patient_id == world.patient_a,
            )
        )
    assert listed is not None and listed.query == "withdrawal chart"


def test_recording_a_dose_asks_the_policy_itself(sessions, world: World) -> None:
    with session_scope(sessions) as db:
        counselor = access_for(sessions, db, world, "counselor")
        patient = db.get(Patient, world.patient_a)
        assert patient is not None
        given = DoseGiven("lorazepam", "lorazepam 2 mg", Decimal(2), "mg", "oral", utcnow())
        with pytest.raises(AccessDenied):
            record_given(counselor, patient, given)
    with sessions() as db:
        assert db.scalars(select(MedicationAdministrationRow)).all() == []
    (entry,) = _refusals(sessions, "MedicationAdministration")
    assert (entry.operation, entry.patient_id) == ("create", world.patient_a)
