"""The patient's treatment decision in /fhir/Observation, on SQLite and PostgreSQL: found by
patient, code and date beside the other Observations, read by its id, shown to the patient
themselves; another program's staff see it only under a consent for all records (not under one
for assessments, which opens the scale scores), and a refused read is audited."""

from __future__ import annotations

from datetime import timedelta

from fhir.resources.R4B.observation import Observation
from sqlalchemy import select

from tandem.choice.decisions import DecisionInput, record_decision
from tandem.clock import program_today, utcnow
from tandem.storage.db import session_scope
from tandem.storage.models import AuditEntry
from tests.choice.test_consent_api import auth, consent_body, seed_assessment
from tests.conftest import World, make_token
from tests.medications.conftest import access_for

LOINC = "http://loinc.org"


def record(sessions, world: World, choice: str, days_ago: int) -> int:  # type: ignore[no-untyped-def]
    now = utcnow()
    with session_scope(sessions) as db:
        counselor = access_for(db, sessions, world.email("counselor"))
        row = record_decision(
            counselor,
            world.patient_a,
            DecisionInput(
                substance="alcohol",
                phase="staying_stopped",
                choice=choice,
                discussed_on=program_today("America/New_York", now) - timedelta(days=days_ago),
                discussed_by="Casey Counselor",
                preferences="Wants to try meetings first",
            ),
            now,
        )
        return row.id


def decisions_in(bundle: dict) -> list[dict]:  # type: ignore[type-arg]
    return [
        e["resource"]
        for e in bundle.get("entry", [])
        if e["resource"]["id"].startswith("treatment-decision-")
    ]


def test_the_decision_is_an_observation_searchable_by_patient_code_and_date(
    client, sessions, world: World
) -> None:
    first = record(sessions, world, "undecided", days_ago=20)
    latest = record(sessions, world, "no_medication", days_ago=2)
    seed_assessment(sessions, world)
    staff = auth(make_token(sessions, world.email("counselor"), "user/*.rs"))

    everything = client.get("/fhir/Observation", params={"patient": world.patient_a}, headers=staff)
    assert everything.status_code == 200, everything.text
    found = decisions_in(everything.json())
    assert [o["id"] for o in found] == [
        f"treatment-decision-{latest}",
        f"treatment-decision-{first}",
    ]
    shown = Observation.model_validate(found[0])
    assert shown.valueString.startswith("No medication")
    assert shown.code.coding[0].code == "75773-2"
    # The withdrawal score is still there beside it.
    assert len(everything.json()["entry"]) > len(found)

    for code in ("75773-2", f"{LOINC}|75773-2", f"{LOINC}|", "|75773-2"):
        by_code = client.get(
            "/fhir/Observation", params={"patient": world.patient_a, "code": code}, headers=staff
        ).json()
        assert [e["resource"]["id"] for e in by_code["entry"]] == [o["id"] for o in found], code
    other_code = client.get(
        "/fhir/Observation", params={"patient": world.patient_a, "code": "72514-3"}, headers=staff
    ).json()
    assert decisions_in(other_code) == []

    since = (program_today("America/New_York", utcnow()) - timedelta(days=7)).isoformat()
    recent = client.get(
        "/fhir/Observation",
        params={"patient": world.patient_a, "code": "75773-2", "date": f"ge{since}"},
        headers=staff,
    ).json()
    assert [o["id"] for o in decisions_in(recent)] == [f"treatment-decision-{latest}"]

    read = client.get(f"/fhir/Observation/treatment-decision-{first}", headers=staff)
    assert read.status_code == 200 and read.json()["valueString"].startswith("Not decided")
    missing = client.get("/fhir/Observation/treatment-decision-999999", headers=staff)
    assert missing.status_code == 404 and missing.json()["resourceType"] == "OperationOutcome"
    # Another patient of the same program has no decision: none of patient A's shows up.
    assert (
        decisions_in(
            client.get(
                "/fhir/Observation", params={"patient": world.patient_a2}, headers=staff
            ).json()
        )
        == []
    )


def test_the_patient_sees_their_own_decision_and_no_one_elses(
    client, sessions, world: World
) -> None:
    decision = record(sessions, world, "no_medication", days_ago=1)
    mine = auth(make_token(sessions, world.email("patient"), "patient/*.rs"))
    own = client.get("/fhir/Observation", params={"patient": world.patient_a}, headers=mine)
    assert [o["id"] for o in decisions_in(own.json())] == [f"treatment-decision-{decision}"]
    assert (
        client.get(f"/fhir/Observation/treatment-decision-{decision}", headers=mine).status_code
        == 200
    )
    # An app with scopes for Observation alone does not reach treatment decisions.
    narrow = auth(make_token(sessions, world.email("patient"), "patient/Observation.rs"))
    assert (
        decisions_in(
            client.get(
                "/fhir/Observation", params={"patient": world.patient_a}, headers=narrow
            ).json()
        )
        == []
    )
    assert (
        client.get(f"/fhir/Observation/treatment-decision-{decision}", headers=narrow).status_code
        == 403
    )


def test_another_program_sees_the_decision_only_under_a_consent_for_all_records(
    client, sessions, world: World
) -> None:
    decision = record(sessions, world, "no_medication", days_ago=1)
    seed_assessment(sessions, world)
    nurse = auth(make_token(sessions, world.email("nurse"), "user/*.cruds"))
    other = auth(make_token(sessions, world.email("prescriber_b"), "user/*.rs"))
    path = f"/fhir/Observation/treatment-decision-{decision}"

    assert client.get(path, headers=other).status_code == 403
    search = {"patient": world.patient_a}
    assert client.get("/fhir/Observation", params=search, headers=other).status_code == 403

    # A consent for assessments opens the scores, not the treatment decision.
    assessments = client.post(
        "/fhir/Consent",
        json=consent_body(
            world.patient_a, program_id=world.program_b, information=("assessments",)
        ),
        headers=nurse,
    ).json()
    scores = client.get("/fhir/Observation", params=search, headers=other)
    assert scores.status_code == 200 and scores.json()["entry"]
    assert decisions_in(scores.json()) == []
    assert client.get(path, headers=other).status_code == 403
    with sessions() as db:
        refused = db.scalars(
            select(AuditEntry).where(
                AuditEntry.resource_type == "TreatmentDecision",
                AuditEntry.outcome != "0",
                AuditEntry.patient_id == world.patient_a,
            )
        ).all()
    assert refused, "the refused read is in the audit trail"
    client.put(
        f"/fhir/Consent/{assessments['id']}",
        json={**assessments, "status": "inactive"},
        headers=nurse,
    )

    client.post(
        "/fhir/Consent",
        json=consent_body(world.patient_a, program_id=world.program_b),
        headers=nurse,
    )
    under_consent = client.get("/fhir/Observation", params=search, headers=other)
    assert [o["id"] for o in decisions_in(under_consent.json())] == [
        f"treatment-decision-{decision}"
    ]
    assert client.get(path, headers=other).status_code == 200
