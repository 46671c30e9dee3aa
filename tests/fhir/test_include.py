"""`_include` of the patients of a search (Observation:patient, MedicationRequest:patient), on
SQLite and PostgreSQL: each patient once, marked as included, only when the caller may read
that patient (left out otherwise), audited; anything else asked of `_include` is refused."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tandem.clock import program_today
from tandem.medications.plans import create_titration
from tandem.storage.db import session_scope, utcnow
from tandem.storage.models import AuditEntry
from tandem.withdrawal import assessments
from tests.conftest import World, make_token
from tests.medications.conftest import access_for
from tests.withdrawal.helpers import admit_to_detox, ciwa_answers


def _assessed(sessions: sessionmaker[Session], world: World, *patients: str) -> None:
    for patient_id in patients:
        admit_to_detox(sessions, world, patient_id)
        with session_scope(sessions) as db:
            nurse = access_for(db, sessions, world.email("nurse"))
            assessments.save_assessment(
                nurse, patient_id, "ciwa_ar", ciwa_answers(12), utcnow() - timedelta(minutes=5)
            )


def _included(bundle: dict) -> list[str]:  # type: ignore[type-arg]
    return [
        e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "include"
    ]


def test_observations_bring_their_patients_once(
    client: TestClient, world: World, sessions: sessionmaker[Session]
) -> None:
    _assessed(sessions, world, world.patient_a, world.patient_a2)
    token = make_token(sessions, world.email("nurse"), "user/*.rs")
    headers = {"Authorization": f"Bearer {token}"}
    plain = client.get("/fhir/Observation", headers=headers).json()
    assert _included(plain) == []
    found = client.get(
        "/fhir/Observation", params={"_include": "Observation:patient"}, headers=headers
    )
    assert found.status_code == 200, found.text
    bundle = found.json()
    matches = [e for e in bundle["entry"] if e["search"]["mode"] == "match"]
    assert len(matches) > 2
    assert sorted(_included(bundle)) == sorted([world.patient_a, world.patient_a2])
    one = client.get(
        "/fhir/Observation",
        params={"patient": world.patient_a, "_include": "Observation:subject:Patient"},
        headers=headers,
    ).json()
    assert _included(one) == [world.patient_a]
    (patient,) = [e for e in one["entry"] if e["search"]["mode"] == "include"]
    assert patient["resource"]["name"][0]["family"] == "Rivera"
    assert patient["fullUrl"].endswith(f"/fhir/Patient/{world.patient_a}")
    with sessions() as db:
        reads = db.scalars(
            select(AuditEntry.patient_id).where(
                AuditEntry.operation == "read",
                AuditEntry.resource_type == "Patient",
                AuditEntry.query.startswith("_include"),
            )
        ).all()
    assert world.patient_a in reads and world.patient_a2 in reads


def test_a_patient_left_out_when_the_token_may_not_read_patients(
    client: TestClient, world: World, sessions: sessionmaker[Session]
) -> None:
    _assessed(sessions, world, world.patient_a)
    token = make_token(sessions, world.email("nurse"), "user/Observation.rs")
    found = client.get(
        "/fhir/Observation",
        params={"_include": "Observation:patient"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert found.status_code == 200
    assert found.json()["entry"] and _included(found.json()) == []
    assert "Rivera" not in found.text


def test_a_patient_sees_only_themselves_included(
    client: TestClient, world: World, sessions: sessionmaker[Session]
) -> None:
    _assessed(sessions, world, world.patient_a, world.patient_a2)
    token = make_token(sessions, world.email("patient"), "patient/*.rs")
    bundle = client.get(
        "/fhir/Observation",
        params={"_include": "Observation:patient"},
        headers={"Authorization": f"Bearer {token}"},
    ).json()
    assert _included(bundle) == [world.patient_a]
    assert "Okafor" not in str(bundle)


def test_dose_plans_bring_their_patients(
    client: TestClient, world: World, sessions: sessionmaker[Session]
) -> None:
    admit_to_detox(sessions, world, world.patient_a)
    now = utcnow()
    with session_scope(sessions) as db:
        create_titration(
            access_for(db, sessions, world.email("prescriber")),
            world.patient_a,
            "baclofen",
            start="5mg-tid",
            step_mg=5,
            every_days=3,
            target="20mg-tid",
            start_date=program_today("America/New_York", now),
            now=now,
        )
    token = make_token(sessions, world.email("prescriber"), "user/*.rs")
    found = client.get(
        "/fhir/MedicationRequest",
        params={"_include": "MedicationRequest:patient"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert found.status_code == 200, found.text
    assert _included(found.json()) == [world.patient_a]
    metadata = client.get("/fhir/metadata").json()
    kinds = {r["type"]: r for r in metadata["rest"][0]["resource"]}
    assert "MedicationRequest:patient" in kinds["MedicationRequest"]["searchInclude"]
    assert "Observation:patient" in kinds["Observation"]["searchInclude"]


def test_other_includes_are_refused_by_name(
    client: TestClient, world: World, sessions: sessionmaker[Session]
) -> None:
    token = make_token(sessions, world.email("nurse"), "user/*.rs")
    for value in ("Observation:performer", "*", "MedicationRequest:patient"):
        refused = client.get(
            "/fhir/Observation",
            params={"_include": value},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert refused.status_code == 400, value
        assert "_include" in refused.json()["issue"][0]["diagnostics"]
