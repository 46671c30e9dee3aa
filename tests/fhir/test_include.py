"""`_include` of the patients of a search (Observation:patient, MedicationRequest:patient, the
doses and side effects), on
SQLite and PostgreSQL: each patient once, marked as included, only when the caller may read
that patient (left out otherwise), audited; anything else asked of `_include` is refused."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tandem.clock import program_today
from tandem.medications.dose_calendar import plan_view
from tandem.medications.doses import record_administration, record_statement
from tandem.medications.plans import create_titration
from tandem.medications.side_effects import record_side_effect
from tandem.patients.service import get_patient
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


def test_dose_plans_doses_and_side_effects_bring_their_patients(
    client: TestClient, world: World, sessions: sessionmaker[Session]
) -> None:
    admit_to_detox(sessions, world, world.patient_a)
    now = utcnow()
    with session_scope(sessions) as db:
        prescriber = access_for(db, sessions, world.email("prescriber"))
        plan = create_titration(
            prescriber,
            world.patient_a,
            "baclofen",
            start="5mg-tid",
            step_mg=5,
            every_days=3,
            target="20mg-tid",
            start_date=program_today("America/New_York", now) - timedelta(days=1),
            now=now,
        )
        doses = plan_view(prescriber, get_patient(prescriber, world.patient_a), plan, now).doses
        record_statement(
            prescriber,
            world.patient_a,
            plan.id,
            due_at=doses[0].planned.due_at,
            taken=True,
            now=now,
        )
        record_administration(
            prescriber,
            world.patient_a,
            plan.id,
            due_at=doses[1].planned.due_at,
            given=True,
            administered_at=doses[1].planned.due_at,
            now=now,
        )
        record_side_effect(
            prescriber,
            world.patient_a,
            medication_id="baclofen",
            effect="drowsiness",
            severity="mild",
            onset_at=now - timedelta(hours=3),
            plan_id=plan.id,
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
    for kind, include in (
        ("MedicationStatement", "MedicationStatement:patient"),
        ("MedicationAdministration", "MedicationAdministration:patient"),
        ("AdverseEvent", "AdverseEvent:subject"),
    ):
        answer = client.get(
            f"/fhir/{kind}",
            params={"patient": world.patient_a, "_include": include},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert answer.status_code == 200, (kind, answer.text)
        assert _included(answer.json()) == [world.patient_a], kind
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
