"""The medication FHIR API on SQLite and PostgreSQL: MedicationKnowledge, MedicationRequest
(create, read, search, refusals with nothing stored), MedicationStatement and AdverseEvent
(search by patient with paging), and the policy: other programs refused, a patient sees only
their own records."""

from __future__ import annotations

import copy
from datetime import date, timedelta

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.medicationrequest import MedicationRequest
from sqlalchemy import func, select

from tandem.medications.dose_calendar import plan_view
from tandem.medications.dose_plan import taper, titration
from tandem.medications.doses import record_administration, record_statement
from tandem.medications.facts import FactsInput, record_facts
from tandem.medications.fhir_mapping import to_medication_request
from tandem.medications.plans import create_titration
from tandem.medications.side_effects import record_side_effect
from tandem.medications.storage import DosePlanRow, SideEffectRow
from tandem.patients.service import get_patient
from tandem.storage.models import AuditEntry
from tests.conftest import World, make_token
from tests.medications.conftest import NOW, access_for

pytestmark = pytest.mark.usefixtures("frozen_clock")
FHIR = {"Content-Type": "application/fhir+json"}
TODAY = NOW.date()
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **FHIR}


def plans(sessions) -> int:  # type: ignore[no-untyped-def]
    with sessions() as db:
        return db.scalar(select(func.count()).select_from(DosePlanRow))


def titration_body(
    patient_id: str,
    target: str = "20mg-tid",
    start: date = TODAY,
    first: str = "5mg-tid",
    step: float = 5,
) -> dict:
    plan = titration("baclofen", first, step, 3, target, start)
    body = to_medication_request(plan, f"Patient/{patient_id}", status="active", intent="order")
    body.pop("note")
    return body


def test_medication_knowledge_read_and_search(client, sessions, world: World) -> None:
    token = make_token(sessions, world.email("nurse"), "user/*.rs")
    read = client.get("/fhir/MedicationKnowledge/baclofen", headers=auth(token))
    assert read.status_code == 200 and read.json()["code"]["coding"][0]["code"] == "1292"
    by_code = client.get(
        "/fhir/MedicationKnowledge", params={"code": f"{RXNORM}|1292"}, headers=auth(token)
    ).json()
    Bundle.model_validate(by_code)
    assert [e["resource"]["id"] for e in by_code["entry"]] == ["baclofen"]
    by_tablet = client.get(
        "/fhir/MedicationKnowledge", params={"code": "197391"}, headers=auth(token)
    ).json()
    assert [e["resource"]["id"] for e in by_tablet["entry"]] == ["baclofen"]
    by_brand = client.get(
        "/fhir/MedicationKnowledge", params={"name": "campral"}, headers=auth(token)
    ).json()
    assert [e["resource"]["id"] for e in by_brand["entry"]] == ["acamprosate"]
    paged = client.get(
        "/fhir/MedicationKnowledge", params={"_count": 2}, headers=auth(token)
    ).json()
    assert len(paged["entry"]) == 2 and any(link["relation"] == "next" for link in paged["link"])
    missing = client.get("/fhir/MedicationKnowledge/aspirin", headers=auth(token))
    assert missing.status_code == 404 and missing.json()["resourceType"] == "OperationOutcome"
    unknown = client.get("/fhir/MedicationKnowledge", params={"colour": "red"}, headers=auth(token))
    assert unknown.status_code == 400 and unknown.json()["resourceType"] == "OperationOutcome"
    patient_only = make_token(sessions, world.email("nurse"), "user/Patient.rs")
    assert (
        client.get("/fhir/MedicationKnowledge/baclofen", headers=auth(patient_only)).status_code
        == 403
    )


def test_create_read_and_search_a_titration(client, sessions, world: World) -> None:
    token = make_token(sessions, world.email("prescriber"), "user/*.cruds")
    created = client.post(
        "/fhir/MedicationRequest", json=titration_body(world.patient_a), headers=auth(token)
    )
    assert created.status_code == 201, created.text
    body = created.json()
    MedicationRequest.model_validate(body)
    assert body["status"] == "active" and body["intent"] == "order"
    assert created.headers["location"].endswith(f"/fhir/MedicationRequest/{body['id']}")
    assert [d["doseAndRate"][0]["doseQuantity"]["value"] for d in body["dosageInstruction"]] == [
        5,
        10,
        15,
        20,
    ]
    assert body["dosageInstruction"][0]["maxDosePerPeriod"]["numerator"]["value"] == 80
    assert any("Titration plan" in n["text"] for n in body["note"])
    assert any("Kidney function not given" in n["text"] for n in body["note"])
    read = client.get(f"/fhir/MedicationRequest/{body['id']}", headers=auth(token))
    assert read.status_code == 200 and read.json()["id"] == body["id"]
    assert read.json()["meta"]["lastUpdated"]  # every resource says when it last changed
    found = client.get(
        "/fhir/MedicationRequest", params={"patient": world.patient_a}, headers=auth(token)
    ).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [body["id"]]
    active = client.get(
        "/fhir/MedicationRequest",
        params={"patient": f"Patient/{world.patient_a}", "status": "active"},
        headers=auth(token),
    ).json()
    assert len(active["entry"]) == 1
    stopped = client.get(
        "/fhir/MedicationRequest", params={"status": "stopped"}, headers=auth(token)
    ).json()
    assert stopped["entry"] == []
    with sessions() as db:
        row = db.scalars(select(DosePlanRow)).one()
        assert row.kind == "titration" and row.prescriber_id is not None
        assert (
            db.scalar(
                select(func.count())
                .select_from(AuditEntry)
                .where(
                    AuditEntry.resource_type == "MedicationRequest",
                    AuditEntry.operation == "create",
                )
            )
            == 1
        )


def test_a_posted_taper_replaces_the_titration(client, sessions, world: World) -> None:
    token = make_token(sessions, world.email("prescriber"), "user/*.cruds")
    first = client.post(
        "/fhir/MedicationRequest", json=titration_body(world.patient_a), headers=auth(token)
    ).json()
    plan = taper("baclofen", "20mg-tid", 14, TODAY + timedelta(days=20))
    body = to_medication_request(
        plan, f"Patient/{world.patient_a}", status="active", intent="order"
    )
    body.pop("note")
    created = client.post("/fhir/MedicationRequest", json=body, headers=auth(token))
    assert created.status_code == 201, created.text
    assert created.json()["priorPrescription"]["reference"] == f"MedicationRequest/{first['id']}"
    old = client.get(f"/fhir/MedicationRequest/{first['id']}", headers=auth(token)).json()
    assert old["status"] == "stopped" and "Replaced by plan" in old["statusReason"]["text"]
    with sessions() as db:
        kinds = {r.kind: r for r in db.scalars(select(DosePlanRow))}
        assert kinds["taper"].ends_on == TODAY + timedelta(days=34)


def _bad(body: dict, **change: object) -> dict:
    out = copy.deepcopy(body)
    out.update(change)
    return out


@pytest.mark.parametrize(
    ("mutate", "status", "expression", "words"),
    [
        # A target above the label maximum (25 mg TID = 75 mg/day is fine; 30 mg QID is 120).
        (
            lambda b: (
                b["dosageInstruction"][-1]["doseAndRate"][0]["doseQuantity"].update(value=30)
                or b["dosageInstruction"][-1]["timing"]["repeat"].update(frequency=4)
            ),
            422,
            "MedicationRequest.dosageInstruction[3]",
            "80 mg/day ceiling",
        ),
        # Ends abruptly: the last step has an end and no taper.
        (
            lambda b: b["dosageInstruction"][-1]["timing"]["repeat"]["boundsPeriod"].update(
                end=(TODAY + timedelta(days=11)).isoformat()
            ),
            422,
            "dosageInstruction[3]",
            "must not be stopped at once",
        ),
        (
            lambda b: b.update(medicationCodeableConcept={"text": "aspirin"}),
            422,
            "MedicationRequest.medicationCodeableConcept",
            "unknown medication",
        ),
        (
            lambda b: b["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"].update(value=-5),
            422,
            "doseQuantity",
            "more than 0 mg",
        ),
        (
            lambda b: b["dosageInstruction"][0]["timing"]["repeat"].update(frequency=0),
            422,
            "frequency",
            "",
        ),
        (
            lambda b: b["dosageInstruction"][1]["timing"]["repeat"]["boundsPeriod"].update(
                start=(TODAY + timedelta(days=5)).isoformat()
            ),
            422,
            "dosageInstruction[1]",
            "day after the previous step",
        ),
        (lambda b: b.update(status="draft"), 422, "MedicationRequest.status", "active plans"),
        (
            lambda b: b.update(reasonCode=[{"text": "AUD"}]),
            422,
            "MedicationRequest.reasonCode",
            "does not store",
        ),
        (
            lambda b: b["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"].update(
                unit="g", code="g"
            ),
            422,
            "doseQuantity",
            "mg",
        ),
        (
            lambda b: b.update(subject={"reference": "Patient/no-such-patient"}),
            422,
            "MedicationRequest.subject",
            "not known",
        ),
        (lambda b: b.update(intent="banana"), 422, "MedicationRequest.intent", ""),
    ],
)
def test_bad_requests_are_refused_with_an_outcome_and_nothing_stored(
    client, sessions, world, mutate, status, expression, words
) -> None:
    token = make_token(sessions, world.email("prescriber"), "user/*.cruds")
    body = titration_body(world.patient_a)
    mutate(body)
    response = client.post("/fhir/MedicationRequest", json=body, headers=auth(token))
    assert response.status_code == status, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    text = " ".join(
        " ".join(i.get("expression", [])) + " " + i["diagnostics"] for i in outcome["issue"]
    )
    assert expression in text and words in text
    assert plans(sessions) == 0


def test_kidney_function_on_record_bounds_a_posted_plan(client, sessions, world: World) -> None:
    with sessions() as db:
        from tandem.storage.models import Patient

        db.get(Patient, world.patient_a2).birth_date = date(1956, 1, 15)
        db.commit()
        access = access_for(db, sessions, world.email("nurse"))
        record_facts(
            access,
            world.patient_a2,
            FactsInput(weight_kg=60, creatinine_mg_dl=3.0, creatinine_on=TODAY),
            now=NOW,
        )
        db.commit()
    token = make_token(sessions, world.email("prescriber"), "user/*.cruds")
    refused = client.post(
        "/fhir/MedicationRequest", json=titration_body(world.patient_a2), headers=auth(token)
    )
    assert refused.status_code == 422
    issue = refused.json()["issue"][0]
    assert issue["code"] == "business-rule" and "26.7 mg/day ceiling" in issue["diagnostics"]
    assert "J Clin Pharmacol 2014" in issue["diagnostics"]
    # Issue 9 item 3: the start and the step are reduced too (by 2/3 below CrCl 30).
    full_start = client.post(
        "/fhir/MedicationRequest",
        json=titration_body(world.patient_a2, target="5mg-qid"),
        headers=auth(token),
    )
    assert full_start.status_code == 422
    issue = full_start.json()["issue"][0]
    assert "start is reduced by 2/3: at most 1.67 mg per dose" in issue["diagnostics"]
    assert issue["expression"] == ["MedicationRequest.dosageInstruction[0]"]
    big_step = client.post(
        "/fhir/MedicationRequest",
        json=titration_body(world.patient_a2, target="5mg-qid", first="1.67mg-tid", step=3.33),
        headers=auth(token),
    )
    assert big_step.status_code == 422
    assert "each step is reduced by 2/3" in big_step.json()["issue"][0]["diagnostics"]
    ok = client.post(
        "/fhir/MedicationRequest",
        json=titration_body(world.patient_a2, target="5mg-qid", first="1.67mg-tid", step=1.67),
        headers=auth(token),
    )
    assert ok.status_code == 201, ok.text
    assert any("CrCl 19.4 mL/min" in n["text"] for n in ok.json()["note"])
    assert any("start, step and target reduced by 2/3" in n["text"] for n in ok.json()["note"])
    assert plans(sessions) == 1


def test_policy_other_program_and_patients(client, sessions, world: World) -> None:
    nurse = make_token(
        sessions, world.email("prescriber"), "user/*.cruds"
    )  # a prescriber of program A
    refused = client.post(
        "/fhir/MedicationRequest", json=titration_body(world.patient_b), headers=auth(nurse)
    )
    assert refused.status_code == 403 and refused.json()["resourceType"] == "OperationOutcome"
    assert plans(sessions) == 0
    nurse_b = make_token(sessions, world.email("prescriber_b"), "user/*.cruds")
    own_b = client.post(
        "/fhir/MedicationRequest", json=titration_body(world.patient_b), headers=auth(nurse_b)
    )
    assert own_b.status_code == 201
    b_id = own_b.json()["id"]
    assert client.get(f"/fhir/MedicationRequest/{b_id}", headers=auth(nurse)).status_code == 403
    other = client.get(
        "/fhir/MedicationRequest", params={"patient": world.patient_b}, headers=auth(nurse)
    )
    assert other.status_code == 403
    everything = client.get("/fhir/MedicationRequest", headers=auth(nurse)).json()
    assert everything["entry"] == []
    mine = client.post(
        "/fhir/MedicationRequest", json=titration_body(world.patient_a), headers=auth(nurse)
    ).json()
    theirs = client.post(
        "/fhir/MedicationRequest", json=titration_body(world.patient_a2), headers=auth(nurse)
    ).json()
    patient = make_token(sessions, world.email("patient"), "patient/*.rs")
    assert (
        client.get(f"/fhir/MedicationRequest/{mine['id']}", headers=auth(patient)).status_code
        == 200
    )
    assert (
        client.get(f"/fhir/MedicationRequest/{theirs['id']}", headers=auth(patient)).status_code
        == 403
    )
    listed = client.get("/fhir/MedicationRequest", headers=auth(patient)).json()
    assert [e["resource"]["id"] for e in listed["entry"]] == [mine["id"]]
    assert (
        client.post(
            "/fhir/MedicationRequest", json=titration_body(world.patient_a), headers=auth(patient)
        ).status_code
        == 403
    )
    read_only = make_token(sessions, world.email("prescriber"), "user/MedicationRequest.rs")
    assert (
        client.post(
            "/fhir/MedicationRequest", json=titration_body(world.patient_a), headers=auth(read_only)
        ).status_code
        == 403
    )
    assert plans(sessions) == 3
    # Prescribing is the prescriber's: a nurse and an administrator may read plans, not write them.
    for role in ("nurse", "admin"):
        token = make_token(sessions, world.email(role), "user/*.cruds")
        refused = client.post(
            "/fhir/MedicationRequest", json=titration_body(world.patient_a), headers=auth(token)
        )
        assert refused.status_code == 403, role
        assert (
            client.get(f"/fhir/MedicationRequest/{mine['id']}", headers=auth(token)).status_code
            == 200
        )
    assert plans(sessions) == 3


def _seed_records(sessions, world: World) -> int:  # type: ignore[no-untyped-def]
    """A plan from yesterday for patient A (3 reports, a dose given, 2 side effects) and one for A2."""
    with sessions() as db:
        access = access_for(db, sessions, world.email("prescriber"))
        row = create_titration(
            access,
            world.patient_a,
            "baclofen",
            start="5mg-tid",
            step_mg=5,
            every_days=3,
            target="20mg-tid",
            start_date=TODAY - timedelta(days=1),
            now=NOW,
        )
        patient = get_patient(access, world.patient_a)
        doses = plan_view(access, patient, row, NOW).doses
        for dose, taken in zip(doses[:3], (True, False, True), strict=True):
            record_statement(
                access,
                world.patient_a,
                row.id,
                due_at=dose.planned.due_at,
                taken=taken,
                reason="" if taken else "forgot",
                now=NOW,
            )
        record_administration(
            access,
            world.patient_a,
            row.id,
            due_at=doses[3].planned.due_at,
            given=True,
            administered_at=doses[3].planned.due_at,
            now=NOW,
        )
        for effect, severity in (("drowsiness", "mild"), ("dizziness", "moderate")):
            record_side_effect(
                access,
                world.patient_a,
                medication_id="baclofen",
                effect=effect,
                severity=severity,
                onset_at=NOW - timedelta(hours=3),
                plan_id=row.id,
                now=NOW,
            )
        other = create_titration(
            access,
            world.patient_a2,
            "baclofen",
            start="5mg-tid",
            step_mg=5,
            every_days=3,
            target="10mg-tid",
            start_date=TODAY,
            now=NOW,
        )
        first_a2 = plan_view(access, get_patient(access, world.patient_a2), other, NOW).doses[0]
        record_statement(
            access, world.patient_a2, other.id, due_at=first_a2.planned.due_at, taken=True, now=NOW
        )
        record_side_effect(
            access,
            world.patient_a2,
            medication_id="baclofen",
            effect="weakness",
            severity="severe",
            onset_at=NOW,
            now=NOW,
        )
        db.commit()
        return row.id


def test_statements_and_adverse_events_search_by_patient_with_paging(
    client, sessions, world: World
) -> None:
    plan_id = _seed_records(sessions, world)
    token = make_token(sessions, world.email("counselor"), "user/*.rs")
    seen: list[dict] = []
    url = f"/fhir/MedicationStatement?patient={world.patient_a}&_count=2"
    while url:
        bundle = client.get(url, headers=auth(token)).json()
        Bundle.model_validate(bundle)
        seen += [e["resource"] for e in bundle["entry"]]
        nxt = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        url = nxt[0].replace("https://testserver", "") if nxt else ""
    assert len(seen) == 3
    assert sorted(s["status"] for s in seen) == ["completed", "completed", "not-taken"]
    assert all(s["basedOn"][0]["reference"] == f"MedicationRequest/{plan_id}" for s in seen)
    missed = next(s for s in seen if s["status"] == "not-taken")
    assert missed["statusReason"][0]["text"] == "forgot"
    read = client.get(f"/fhir/MedicationStatement/{missed['id']}", headers=auth(token))
    assert read.status_code == 200 and read.json()["id"] == missed["id"]
    assert read.json()["meta"]["lastUpdated"]
    events = client.get(
        "/fhir/AdverseEvent", params={"subject": f"Patient/{world.patient_a}"}, headers=auth(token)
    ).json()
    Bundle.model_validate(events)
    assert sorted(e["resource"]["event"]["text"] for e in events["entry"]) == [
        "Dizziness",
        "Drowsiness",
    ]
    assert {e["resource"]["severity"]["coding"][0]["code"] for e in events["entry"]} == {
        "mild",
        "moderate",
    }
    assert events["entry"][0]["resource"]["suspectEntity"][0]["instance"]["display"] == "Baclofen"
    with sessions() as db:
        event_id = db.scalars(
            select(SideEffectRow.id).where(SideEffectRow.patient_id == world.patient_a)
        ).first()
    assert client.get(f"/fhir/AdverseEvent/{event_id}", headers=auth(token)).status_code == 200
    assert client.get("/fhir/AdverseEvent/99999", headers=auth(token)).status_code == 404
    assert client.get("/fhir/AdverseEvent/abc", headers=auth(token)).status_code == 404
    bad = client.get("/fhir/MedicationStatement", params={"_count": "lots"}, headers=auth(token))
    assert bad.status_code == 400 and bad.json()["resourceType"] == "OperationOutcome"


def test_a_patient_sees_only_their_own_statements_and_events(
    client, sessions, world: World
) -> None:
    _seed_records(sessions, world)
    token = make_token(sessions, world.email("patient"), "patient/*.rs")
    statements = client.get("/fhir/MedicationStatement", headers=auth(token)).json()
    assert {e["resource"]["subject"]["reference"] for e in statements["entry"]} == {
        f"Patient/{world.patient_a}"
    }
    assert (
        client.get(
            "/fhir/MedicationStatement", params={"patient": world.patient_a2}, headers=auth(token)
        ).status_code
        == 403
    )
    events = client.get("/fhir/AdverseEvent", headers=auth(token)).json()
    assert len(events["entry"]) == 2
    nurse_b = make_token(sessions, world.email("nurse_b"), "user/*.rs")
    assert client.get("/fhir/AdverseEvent", headers=auth(nurse_b)).json()["entry"] == []
    assert (
        client.get(
            "/fhir/AdverseEvent", params={"patient": world.patient_a}, headers=auth(nurse_b)
        ).status_code
        == 403
    )


def test_plan_doses_given_appear_as_medication_administrations(
    client, sessions, world: World
) -> None:
    plan_id = _seed_records(sessions, world)
    token = make_token(sessions, world.email("nurse"), "user/*.rs")
    bundle = client.get(
        "/fhir/MedicationAdministration", params={"patient": world.patient_a}, headers=auth(token)
    )
    assert bundle.status_code == 200
    entries = [e["resource"] for e in bundle.json()["entry"]]
    assert len(entries) == 1 and entries[0]["status"] == "completed"
    assert entries[0]["dosage"]["dose"]["value"] == 5
    assert plan_id


def test_capability_statement_declares_the_medication_resources(
    client, sessions, world: World
) -> None:
    statement = client.get("/fhir/metadata").json()
    types = {r["type"]: r for r in statement["rest"][0]["resource"]}
    for name in ("MedicationKnowledge", "MedicationRequest", "MedicationStatement", "AdverseEvent"):
        assert name in types
    assert {i["code"] for i in types["MedicationRequest"]["interaction"]} == {
        "read",
        "create",
        "search-type",
    }
