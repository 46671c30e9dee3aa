"""Recovery FHIR on SQLite and PostgreSQL: Observations of use, craving and drug screens beside
the withdrawal scores in one search; CarePlan, Appointment and Encounter read and searched by
patient and date; impossible input refused with nothing stored; another program refused."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fhir.resources.R4B.bundle import Bundle
from sqlalchemy import select

from tandem.clock import program_today
from tandem.recovery import care_plans, sessions_schedule
from tandem.recovery.care_plans import PlannedService
from tandem.recovery.storage import (
    CravingRatingRow,
    DrugScreenResultRow,
    DrugScreenRow,
    TherapySessionRow,
    UseDayRow,
)
from tandem.storage.db import session_scope, utcnow
from tandem.storage.models import AuditEntry
from tandem.withdrawal import assessments
from tests.conftest import World, make_token
from tests.recovery.records_helpers import as_staff, auth, count, refusals
from tests.withdrawal.helpers import access_for, admit_to_detox, ciwa_answers


@pytest.fixture
def token(sessions, world: World) -> str:
    return make_token(sessions, world.email("nurse"), "user/*.cruds")


@pytest.fixture
def other_program(sessions, world: World) -> str:
    return make_token(sessions, world.email("nurse_b"), "user/*.cruds")


def _today():  # type: ignore[no-untyped-def]
    return program_today("America/New_York", utcnow())


def use_body(patient: str, day: str, **value: object) -> dict[str, object]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "urn:tandem:recovery:use", "code": "alcohol"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": day,
        **value,
    }


def test_use_days_are_observations_a_later_report_replaces_and_the_search_keeps_withdrawal(
    client, sessions, world: World, token: str
) -> None:
    admit_to_detox(sessions, world, world.patient_a)
    with session_scope(sessions) as db:
        assessments.save_assessment(
            access_for(sessions, db, world),
            world.patient_a,
            "ciwa_ar",
            ciwa_answers(12),
            utcnow() - timedelta(minutes=5),
        )
    day = (_today() - timedelta(days=1)).isoformat()
    first = client.post(
        "/fhir/Observation",
        json=use_body(world.patient_a, day, valueQuantity={"value": 6, "unit": "standard drinks"}),
        headers=auth(token),
    )
    assert first.status_code == 201, first.text
    created = first.json()
    assert {
        "system": "http://loinc.org",
        "code": "74013-4",
        "display": "Alcoholic drinks per day",
    } in created["code"]["coding"]
    assert created["category"][0]["coding"][0]["code"] == "social-history"
    again = client.post(
        "/fhir/Observation",
        json=use_body(world.patient_a, day, valueBoolean=False),
        headers=auth(token),
    )
    assert again.status_code == 200, again.text
    assert again.json()["id"] == created["id"] and again.json()["valueBoolean"] is False
    assert count(sessions, UseDayRow) == 1
    with sessions() as db:
        ops = list(
            db.scalars(select(AuditEntry.operation).where(AuditEntry.resource_id == created["id"]))
        )
    assert ops == ["create", "update"]

    read = client.get(f"/fhir/Observation/{created['id']}", headers=auth(token))
    assert read.status_code == 200 and read.json()["valueBoolean"] is False
    bundle = client.get(
        "/fhir/Observation", params={"patient": world.patient_a}, headers=auth(token)
    ).json()
    Bundle.model_validate(bundle)
    ids = [e["resource"]["id"] for e in bundle["entry"]]
    assert created["id"] in ids
    assert any(i.isdigit() for i in ids), "the withdrawal scores are still found"
    dated = client.get(
        "/fhir/Observation",
        params={"patient": world.patient_a, "date": day, "code": "urn:tandem:recovery:use|"},
        headers=auth(token),
    ).json()
    assert [e["resource"]["id"] for e in dated["entry"]] == [created["id"]]
    other_day = client.get(
        "/fhir/Observation",
        params={"patient": world.patient_a, "date": f"lt{day}", "code": "urn:tandem:recovery:use|"},
        headers=auth(token),
    ).json()
    assert other_day.get("entry", []) == []
    scores = client.get(
        "/fhir/Observation",
        params={"code": "urn:tandem:instrument:ciwa_ar|total"},
        headers=auth(token),
    ).json()
    assert [e["resource"]["id"].isdigit() for e in scores["entry"]] == [True]


def test_craving_and_drug_screens_are_created_read_and_searched_by_code(
    client, sessions, world: World, token: str
) -> None:
    at = (utcnow() - timedelta(hours=2)).isoformat()
    craving = client.post(
        "/fhir/Observation",
        json={
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "urn:tandem:recovery:craving", "code": "opioids"}]},
            "subject": {"reference": f"Patient/{world.patient_a}"},
            "effectiveDateTime": at,
            "valueInteger": 7,
        },
        headers=auth(token),
    )
    assert craving.status_code == 201, craving.text
    screen = client.post(
        "/fhir/Observation",
        json={
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "19295-5"}]},
            "subject": {"reference": f"Patient/{world.patient_a}"},
            "effectiveDateTime": at,
            "valueCodeableConcept": {
                "coding": [{"system": "urn:tandem:recovery:drug-screen-result", "code": "positive"}]
            },
        },
        headers=auth(token),
    )
    assert screen.status_code == 201, screen.text
    assert screen.json()["category"][0]["coding"][0]["code"] == "laboratory"
    for resource in (craving.json(), screen.json()):
        read = client.get(f"/fhir/Observation/{resource['id']}", headers=auth(token))
        assert read.status_code == 200 and read.json() == resource
    by_loinc = client.get(
        "/fhir/Observation",
        params={"patient": f"Patient/{world.patient_a}", "code": "http://loinc.org|19295-5"},
        headers=auth(token),
    ).json()
    assert [e["resource"]["id"] for e in by_loinc["entry"]] == [screen.json()["id"]]
    by_day = client.get(
        "/fhir/Observation",
        params={"patient": world.patient_a, "date": f"ge{at[:10]}"},
        headers=auth(token),
    ).json()
    assert {screen.json()["id"], craving.json()["id"]} <= {
        e["resource"]["id"] for e in by_day["entry"]
    }
    assert client.get("/fhir/Observation/craving-999999", headers=auth(token)).status_code == 404
    assert client.get("/fhir/Observation/nothing-1", headers=auth(token)).status_code == 404


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (
            {
                "code": {"coding": [{"system": "urn:tandem:recovery:craving", "code": "alcohol"}]},
                "valueInteger": 11,
            },
            "Observation.valueInteger",
        ),
        (
            {
                "code": {"coding": [{"system": "urn:tandem:recovery:craving", "code": "alcohol"}]},
                "valueInteger": -1,
            },
            "Observation.valueInteger",
        ),
        (
            {
                "code": {"coding": [{"system": "urn:tandem:recovery:use", "code": "alcohol"}]},
                "valueQuantity": {"value": -2},
            },
            "Observation.valueQuantity.value",
        ),
        (
            {
                "code": {"coding": [{"system": "urn:tandem:recovery:use", "code": "opioids"}]},
                "valueQuantity": {"value": 2},
            },
            "Observation.valueQuantity",
        ),
        (
            {
                "code": {"coding": [{"system": "urn:tandem:recovery:use", "code": "glue"}]},
                "valueBoolean": True,
            },
            "Observation.code.coding.code",
        ),
        (
            {
                "code": {
                    "coding": [{"system": "urn:tandem:recovery:drug-screen", "code": "cocaine"}]
                },
                "valueString": "maybe",
            },
            "Observation.valueString",
        ),
        (
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "1234-5"}]},
                "valueBoolean": True,
            },
            "Observation.code",
        ),
    ],
)
def test_impossible_observations_are_refused_naming_the_path_and_nothing_is_stored(
    client, sessions, world: World, token: str, body: dict[str, object], path: str
) -> None:
    sent = {
        "resourceType": "Observation",
        "status": "final",
        "subject": {"reference": f"Patient/{world.patient_a}"},
        "effectiveDateTime": (utcnow() - timedelta(hours=1)).isoformat(),
        **body,
    }
    answer = client.post("/fhir/Observation", json=sent, headers=auth(token))
    assert answer.status_code == 422, answer.text
    outcome = answer.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["expression"] == [path]
    for model in (UseDayRow, CravingRatingRow, DrugScreenRow, DrugScreenResultRow):
        assert count(sessions, model) == 0


def test_a_use_day_in_the_future_is_refused(client, sessions, world: World, token: str) -> None:
    tomorrow = (_today() + timedelta(days=1)).isoformat()
    answer = client.post(
        "/fhir/Observation",
        json=use_body(world.patient_a, tomorrow, valueBoolean=True),
        headers=auth(token),
    )
    assert answer.status_code == 422
    assert answer.json()["issue"][0]["expression"] == ["Observation.effectiveDateTime"]
    assert count(sessions, UseDayRow) == 0


def _plan_and_sessions(sessions, world: World):  # type: ignore[no-untyped-def]
    now = utcnow()
    plan = as_staff(
        sessions,
        world,
        lambda a: care_plans.create_care_plan(
            a,
            world.patient_a,
            counselor_id=None,
            substances=["alcohol"],
            planned=[
                PlannedService("individual_counseling", "weekly"),
                PlannedService("group_therapy", "twice_weekly"),
            ],
            started_on=_today() - timedelta(days=20),
            now=now,
        ),
    )
    with session_scope(sessions) as db:
        held = TherapySessionRow(
            patient_id=world.patient_a,
            program_id=world.program_a,
            care_plan_id=plan.id,
            service="group_therapy",
            starts_at=now - timedelta(days=3),
            minutes=90,
            status="booked",
            created_at=now - timedelta(days=10),
        )
        db.add(held)
        db.flush()
        sessions_schedule.record_attendance(
            access_for(sessions, db, world), world.patient_a, held.id, status="attended", now=now
        )
        held_id = held.id
    booked = as_staff(
        sessions,
        world,
        lambda a: sessions_schedule.book_session(
            a,
            world.patient_a,
            service="individual_counseling",
            starts_at=now + timedelta(days=2),
            minutes=50,
            now=now,
        ),
    )
    return plan.id, held_id, booked.id


def test_care_plan_appointment_and_encounter_read_and_search_by_patient_and_date(
    client, sessions, world: World, token: str
) -> None:
    plan_id, held_id, booked_id = _plan_and_sessions(sessions, world)
    plan = client.get(f"/fhir/CarePlan/{plan_id}", headers=auth(token))
    assert plan.status_code == 200, plan.text
    services = {a["detail"]["code"]["coding"][0]["code"] for a in plan.json()["activity"]}
    assert services == {"individual_counseling", "group_therapy"}
    assert plan.json()["status"] == "active"
    found = client.get(
        "/fhir/CarePlan",
        params={"patient": world.patient_a, "date": _today().isoformat()},
        headers=auth(token),
    ).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [str(plan_id)]
    before = client.get(
        "/fhir/CarePlan",
        params={
            "patient": world.patient_a,
            "date": f"lt{(_today() - timedelta(days=30)).isoformat()}",
        },
        headers=auth(token),
    ).json()
    assert before.get("entry", []) == []

    appointments = client.get(
        "/fhir/Appointment", params={"patient": world.patient_a}, headers=auth(token)
    ).json()
    Bundle.model_validate(appointments)
    statuses = {e["resource"]["id"]: e["resource"]["status"] for e in appointments["entry"]}
    assert statuses == {str(held_id): "fulfilled", str(booked_id): "booked"}
    upcoming = client.get(
        "/fhir/Appointment",
        params={"patient": world.patient_a, "date": f"ge{utcnow().date().isoformat()}"},
        headers=auth(token),
    ).json()
    assert [e["resource"]["id"] for e in upcoming["entry"]] == [str(booked_id)]
    assert (
        client.get(f"/fhir/Appointment/{booked_id}", headers=auth(token)).json()["status"]
        == "booked"
    )

    encounters = client.get(
        "/fhir/Encounter", params={"patient": world.patient_a}, headers=auth(token)
    ).json()
    assert [e["resource"]["id"] for e in encounters["entry"]] == [str(held_id)]
    encounter = client.get(f"/fhir/Encounter/{held_id}", headers=auth(token)).json()
    assert encounter["status"] == "finished"
    assert encounter["appointment"] == [{"reference": f"Appointment/{held_id}"}]
    assert client.get(f"/fhir/Encounter/{booked_id}", headers=auth(token)).status_code == 404


def test_an_appointment_is_booked_through_fhir_and_an_impossible_one_is_refused(
    client, sessions, world: World, token: str
) -> None:
    def body(start, **more):  # type: ignore[no-untyped-def]
        return {
            "resourceType": "Appointment",
            "status": "booked",
            "serviceType": [
                {"coding": [{"system": "urn:tandem:recovery:service", "code": "family_session"}]}
            ],
            "start": start.isoformat(),
            "participant": [
                {"actor": {"reference": f"Patient/{world.patient_a}"}, "status": "accepted"}
            ],
            **more,
        }

    start = utcnow() + timedelta(days=3)
    made = client.post(
        "/fhir/Appointment", json=body(start, minutesDuration=60), headers=auth(token)
    )
    assert made.status_code == 201, made.text
    assert made.json()["minutesDuration"] == 60
    assert made.headers["location"].endswith(f"/Appointment/{made.json()['id']}")
    for bad, path in (
        (body(utcnow() - timedelta(days=1)), "Appointment.start"),
        (body(start, end=(start - timedelta(minutes=5)).isoformat()), "Appointment.end"),
        (body(start, minutesDuration=2), "Appointment.minutesDuration"),
        ({**body(start), "serviceType": [{"text": "yoga"}]}, "Appointment.serviceType"),
        ({**body(start), "status": "fulfilled"}, "Appointment.status"),
    ):
        refused = client.post("/fhir/Appointment", json=bad, headers=auth(token))
        assert refused.status_code == 422, refused.text
        assert refused.json()["issue"][0]["expression"] == [path]
    assert count(sessions, TherapySessionRow) == 1


def test_another_programs_staff_is_refused_and_the_refusal_audited(
    client, sessions, world: World, token: str, other_program: str
) -> None:
    plan_id, held_id, booked_id = _plan_and_sessions(sessions, world)
    use = client.post(
        "/fhir/Observation",
        json=use_body(world.patient_a, _today().isoformat(), valueBoolean=False),
        headers=auth(token),
    ).json()
    before = refusals(sessions, "Appointment")
    for path in (
        f"/fhir/CarePlan/{plan_id}",
        f"/fhir/Appointment/{booked_id}",
        f"/fhir/Encounter/{held_id}",
        f"/fhir/Observation/{use['id']}",
        f"/fhir/Appointment?patient={world.patient_a}",
        f"/fhir/Observation?patient={world.patient_a}",
        f"/fhir/CarePlan?patient={world.patient_a}",
    ):
        assert client.get(path, headers=auth(other_program)).status_code == 403, path
    assert refusals(sessions, "Appointment") == before + 2
    assert refusals(sessions, "Observation") >= 2
    # Searching without a patient shows the other program nothing.
    for kind in ("CarePlan", "Appointment", "Encounter", "Observation"):
        assert (
            client.get(f"/fhir/{kind}", headers=auth(other_program)).json().get("entry", []) == []
        )
    refused = client.post(
        "/fhir/Observation",
        json=use_body(world.patient_a, _today().isoformat(), valueBoolean=True),
        headers=auth(other_program),
    )
    assert refused.status_code == 403
    with sessions() as db:
        assert db.scalar(select(UseDayRow.used)) is False


def test_the_capability_statement_lists_observation_once_with_create_read_and_search(
    client,
) -> None:
    statement = client.get("/fhir/metadata").json()
    entries = [r for r in statement["rest"][0]["resource"] if r["type"] == "Observation"]
    assert len(entries) == 1
    assert {i["code"] for i in entries[0]["interaction"]} == {"create", "read", "search-type"}
    assert {p["name"] for p in entries[0]["searchParam"]} >= {"patient", "code", "date"}
    types = {r["type"] for r in statement["rest"][0]["resource"]}
    assert {"CarePlan", "Appointment", "Encounter"} <= types
