"""FHIR CarePlan create and update, on SQLite and PostgreSQL: a client starts a patient's rehab
program (services, status, period) and later changes it (a service ended, another added, the
patient dropped out from a day), each audited; a CarePlan read and PUT back is accepted; an
element Tandem does not store, or one of Tandem's own that says something else, is refused by
name (422 OperationOutcome) with nothing stored; another program and the patient may not write."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

from fhir.resources.R4B.careplan import CarePlan
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tandem.clock import program_today, utcnow
from tandem.recovery.storage import CarePlanRow, CarePlanServiceRow, RetentionEventRow
from tandem.storage.models import AuditEntry
from tests.conftest import World, make_token
from tests.recovery.records_helpers import auth, count

SERVICE = "urn:tandem:recovery:service"
SUBSTANCE = "urn:tandem:recovery:substance"


def today() -> Any:
    return program_today("America/New_York", utcnow())


def activity(service: str, how_often: str) -> dict[str, Any]:
    return {
        "detail": {
            "kind": "Appointment",
            "code": {"coding": [{"system": SERVICE, "code": service}]},
            "scheduledString": how_often,
        }
    }


def plan_body(world: World, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "CarePlan",
        "status": "active",
        "intent": "plan",
        "title": "Outpatient program",
        "subject": {"reference": f"Patient/{world.patient_a}"},
        "period": {"start": (today() - timedelta(days=10)).isoformat()},
        "category": [{"coding": [{"system": SUBSTANCE, "code": "alcohol"}]}],
        "activity": [
            activity("individual_counseling", "Weekly"),
            activity("group_therapy", "twice_weekly"),
        ],
    }
    body.update(changes)
    return body


def audited(sessions: sessionmaker[Session], operation: str) -> list[AuditEntry]:
    with sessions() as db:
        return list(
            db.scalars(
                select(AuditEntry).where(
                    AuditEntry.resource_type == "CarePlan",
                    AuditEntry.operation == operation,
                    AuditEntry.outcome == "0",
                )
            )
        )


def test_a_client_starts_a_plan_then_changes_its_services_and_status(
    client, sessions: sessionmaker[Session], world: World
) -> None:
    token = auth(make_token(sessions, world.email("counselor"), "user/*.cruds"))
    created = client.post("/fhir/CarePlan", json=plan_body(world), headers=token)
    assert created.status_code == 201, created.text
    plan = CarePlan.model_validate(created.json())
    assert created.headers["Location"].endswith(f"/CarePlan/{plan.id}")
    assert plan.status == "active" and plan.title == "Outpatient program"
    assert [a.detail.scheduledString for a in plan.activity] == ["Weekly", "Twice a week"]
    assert len(audited(sessions, "create")) == 1

    # Read it, change it, put it back: group therapy ends, peer support starts, and the patient
    # dropped out two days ago.
    read = client.get(f"/fhir/CarePlan/{plan.id}", headers=token).json()
    changed = copy.deepcopy(read)
    changed["activity"] = [read["activity"][0], activity("peer_support", "Weekly")]
    changed["status"] = "revoked"
    ended = (today() - timedelta(days=2)).isoformat()
    changed["period"] = {**read["period"], "end": ended}
    updated = client.put(f"/fhir/CarePlan/{plan.id}", json=changed, headers=token)
    assert updated.status_code == 200, updated.text
    after = updated.json()
    assert after["status"] == "revoked" and after["period"]["end"] == ended
    with sessions() as db:
        row = db.get(CarePlanRow, int(str(plan.id)))
        assert row is not None and row.retention == "dropped_out"
        services = {s.service: s.ended_on for s in db.scalars(select(CarePlanServiceRow))}
        history = [e.retention for e in db.scalars(select(RetentionEventRow))]
    assert services == {
        "individual_counseling": None,
        "group_therapy": today(),
        "peer_support": None,
    }
    assert history == ["active", "dropped_out"]
    assert len(audited(sessions, "update")) == 2  # the services, then the status

    # Back in treatment: put it back active (no end), as read.
    again = copy.deepcopy(after)
    again["status"] = "active"
    again["period"] = {"start": after["period"]["start"]}
    assert client.put(f"/fhir/CarePlan/{plan.id}", json=again, headers=token).status_code == 200
    assert client.get(f"/fhir/CarePlan/{plan.id}", headers=token).json()["status"] == "active"


def test_what_tandem_does_not_store_is_refused_by_name_and_nothing_is_stored(
    client, sessions: sessionmaker[Session], world: World
) -> None:
    token = auth(make_token(sessions, world.email("counselor"), "user/*.cruds"))
    cases = [
        (plan_body(world, goal=[{"reference": "Goal/1"}]), "goal"),
        (plan_body(world, careTeam=[{"display": "Team A"}]), "careTeam"),
        (plan_body(world, status="draft"), "status"),
        (plan_body(world, intent="order"), "intent"),
        (plan_body(world, description="Our own words"), "description"),
        (plan_body(world, period={"start": "2026-02-30"}), "period.start"),
        (plan_body(world, period={}), "period.start"),
        (
            plan_body(world, period={"start": (today() + timedelta(days=3)).isoformat()}),
            "period.start",
        ),
        (plan_body(world, category=[]), "category"),
        (
            plan_body(world, category=[{"coding": [{"system": SUBSTANCE, "code": "tea"}]}]),
            "category[0]",
        ),
        (plan_body(world, activity=[]), "activity"),
        (plan_body(world, activity=[activity("yoga", "Weekly")]), "activity[0].detail.code"),
        (
            plan_body(world, activity=[activity("peer_support", "Hourly")]),
            "activity[0].detail.scheduledString",
        ),
        (
            plan_body(
                world,
                activity=[{"detail": {**activity("peer_support", "Weekly")["detail"], "goal": []}}],
            ),
            "activity[0].detail.goal",
        ),
        (
            plan_body(world, activity=[{**activity("peer_support", "Weekly"), "progress": []}]),
            "activity[0].progress",
        ),
    ]
    for body, element in cases:
        refused = client.post("/fhir/CarePlan", json=body, headers=token)
        assert refused.status_code == 422, (element, refused.text)
        outcome = refused.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["expression"] == [f"CarePlan.{element}"], (element, outcome)
    assert count(sessions, CarePlanRow) == 0 and count(sessions, CarePlanServiceRow) == 0

    created = client.post("/fhir/CarePlan", json=plan_body(world), headers=token).json()
    count_before = count(sessions, CarePlanServiceRow)
    for changes, element in (
        ({"period": {"start": "2026-01-01"}}, "period.start"),
        ({"status": "completed"}, "period.end"),  # ended: on which day?
        ({"note": [{"text": "rewritten history"}]}, "note"),
        ({"subject": {"reference": f"Patient/{world.patient_a2}"}}, "subject"),
        ({"id": "999"}, "id"),
    ):
        body = {**created, **changes}
        refused = client.put(f"/fhir/CarePlan/{created['id']}", json=body, headers=token)
        assert refused.status_code == 422, (element, refused.text)
        assert refused.json()["issue"][0]["expression"] == [f"CarePlan.{element}"], refused.text
    with sessions() as db:
        row = db.get(CarePlanRow, int(created["id"]))
        assert row is not None and row.retention == "active"
    assert count(sessions, CarePlanServiceRow) == count_before
    unknown = client.put("/fhir/CarePlan/999999", json={**created, "id": "999999"}, headers=token)
    assert unknown.status_code == 404


def test_another_program_and_the_patient_may_not_write_a_plan(
    client, sessions: sessionmaker[Session], world: World
) -> None:
    counselor = auth(make_token(sessions, world.email("counselor"), "user/*.cruds"))
    created = client.post("/fhir/CarePlan", json=plan_body(world), headers=counselor).json()
    for email, scope in (
        (world.email("prescriber_b"), "user/*.cruds"),
        (world.email("patient"), "patient/*.cruds"),
        (world.email("counselor"), "user/CarePlan.rs"),  # a read-only app
    ):
        token = auth(make_token(sessions, email, scope))
        refused = client.post(
            "/fhir/CarePlan",
            json=plan_body(world, period={"start": today().isoformat()}),
            headers=token,
        )
        assert refused.status_code == 403, (email, refused.text)
        changed = {**created, "title": "Changed"}
        refused = client.put(f"/fhir/CarePlan/{created['id']}", json=changed, headers=token)
        assert refused.status_code == 403, (email, refused.text)
    assert count(sessions, CarePlanRow) == 1
    read = client.get(f"/fhir/CarePlan/{created['id']}", headers=counselor).json()
    assert read["title"] == "Outpatient program"


def test_the_capability_statement_lists_carePlan_create_and_update(client) -> None:
    statement = client.get("/fhir/metadata").json()
    care_plan = next(r for r in statement["rest"][0]["resource"] if r["type"] == "CarePlan")
    assert {"create", "update"} <= {i["code"] for i in care_plan["interaction"]}
