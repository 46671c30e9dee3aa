"""Withdrawal FHIR API on SQLite and PostgreSQL: Questionnaire, QuestionnaireResponse scored and
stored like the form, Observation and MedicationAdministration searches with paging, refusals."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fhir.resources.R4B.bundle import Bundle
from sqlalchemy import func, select

from tandem.medications.storage import MedicationAdministrationRow
from tandem.storage.db import session_scope, utcnow
from tandem.storage.models import AuditEntry
from tandem.withdrawal import assessments, doses, prn
from tandem.withdrawal.protocol import load_protocol
from tandem.withdrawal.storage import AssessmentRow, MonitoringRow, ObservationRow
from tests.conftest import World, make_token
from tests.withdrawal.helpers import (
    access_for,
    admit_to_detox,
    ciwa_answers,
    cows_answers,
    questionnaire_response,
)

FHIR = {"Content-Type": "application/fhir+json"}


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **FHIR}


def counts(sessions) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    with sessions() as db:
        return (
            db.scalar(select(func.count()).select_from(AssessmentRow)),
            db.scalar(select(func.count()).select_from(ObservationRow)),
        )


@pytest.fixture
def nurse_token(sessions, world: World) -> str:
    return make_token(sessions, world.email("nurse"), "user/*.cruds")


def test_questionnaires_list_every_instrument_with_its_allowed_values(client, nurse_token) -> None:
    bundle = client.get("/fhir/Questionnaire", headers=auth(nurse_token))
    assert bundle.status_code == 200, bundle.text
    Bundle.model_validate(bundle.json())
    ids = {e["resource"]["id"] for e in bundle.json()["entry"]}
    assert {"ciwa-ar", "cows", "sows-gossop"} <= ids
    cows = client.get("/fhir/Questionnaire/cows", headers=auth(nurse_token)).json()
    pulse = next(i for i in cows["item"] if i["linkId"] == "resting_pulse")
    assert [o["valueCoding"]["code"] for o in pulse["answerOption"]] == ["0", "1", "2", "4"]
    assert client.get("/fhir/Questionnaire/nope", headers=auth(nurse_token)).status_code == 404


def test_a_valid_response_is_scored_and_stored_with_observations(
    client, sessions, world: World, nurse_token
) -> None:
    admit_to_detox(sessions, world, world.patient_a)
    authored = utcnow().replace(microsecond=0) - timedelta(minutes=10)
    body = questionnaire_response("ciwa_ar", world.patient_a, ciwa_answers(12), authored)
    created = client.post("/fhir/QuestionnaireResponse", json=body, headers=auth(nurse_token))
    assert created.status_code == 201, created.text
    qr = created.json()
    assert created.headers["location"].endswith(f"/fhir/QuestionnaireResponse/{qr['id']}")
    assert {
        i["linkId"]: int(i["answer"][0]["valueCoding"]["code"]) for i in qr["item"]
    } == ciwa_answers(12)

    read = client.get(f"/fhir/QuestionnaireResponse/{qr['id']}", headers=auth(nurse_token))
    assert read.status_code == 200 and read.json()["item"] == qr["item"]
    assert read.json()["meta"]["lastUpdated"]  # every resource says when it last changed

    totals = client.get(
        "/fhir/Observation",
        headers=auth(nurse_token),
        params={"patient": world.patient_a, "code": "urn:tandem:instrument:ciwa_ar|total"},
    ).json()
    Bundle.model_validate(totals)
    (total,) = [e["resource"] for e in totals["entry"]]
    assert total["valueInteger"] == 12
    assert total["meta"]["lastUpdated"] == qr["meta"]["lastUpdated"]
    assert total["interpretation"][0]["coding"][0]["code"] == "moderate"  # PMC6286444 8-15
    # Tandem's own code only: no LOINC code for the CIWA-Ar total is confirmed
    assert [(c["system"], c["code"]) for c in total["code"]["coding"]] == [
        ("urn:tandem:instrument:ciwa_ar", "total")
    ]
    assert total["derivedFrom"] == [{"reference": f"QuestionnaireResponse/{qr['id']}"}]
    every = client.get(
        "/fhir/Observation",
        params={"patient": f"Patient/{world.patient_a}"},
        headers=auth(nurse_token),
    ).json()
    assert len(every["entry"]) == 11  # the total and ten items

    with sessions() as db:
        row = db.scalar(select(MonitoringRow))
        assessment = db.scalar(select(AssessmentRow))
    # 11-15: every hour (CCJM table, shorter end) from the time it was assessed
    assert row.due_at == authored + timedelta(minutes=60)
    assert assessment.due_at == row.due_at
    assert assessment.protocol_version == load_protocol().version


@pytest.mark.parametrize(
    ("instrument", "answers", "item", "allowed"),
    [
        ("ciwa_ar", {**ciwa_answers(0), "orientation": 5}, "orientation", "0, 1, 2, 3, 4"),
        ("cows", cows_answers(resting_pulse=3), "resting_pulse", "0, 1, 2, 4"),
        (
            "cows",
            {k: v for k, v in cows_answers().items() if k != "gooseflesh"},
            "gooseflesh",
            "0, 3, 5",
        ),
        ("cows", {**cows_answers(), "mood": 1}, "mood", "items:"),
    ],
)
def test_an_invalid_response_is_refused_naming_the_item_and_nothing_is_stored(
    client, sessions, world: World, nurse_token, instrument, answers, item, allowed
) -> None:
    admit_to_detox(sessions, world, world.patient_a)
    body = questionnaire_response(instrument, world.patient_a, answers)
    refused = client.post("/fhir/QuestionnaireResponse", json=body, headers=auth(nurse_token))
    assert refused.status_code == 422, refused.text
    outcome = refused.json()
    assert outcome["resourceType"] == "OperationOutcome"
    (problem,) = outcome["issue"]
    assert item in problem["diagnostics"] and allowed in problem["diagnostics"]
    assert problem["expression"] == [f"QuestionnaireResponse.item.where(linkId='{item}')"]
    assert counts(sessions) == (0, 0)
    with sessions() as db:
        refusal = db.scalar(
            select(AuditEntry).where(
                AuditEntry.outcome == "4", AuditEntry.resource_type == "QuestionnaireResponse"
            )
        )
    assert refusal is not None and item in refusal.outcome_detail


def test_refusals_other_program_missing_scope_and_no_episode(
    client, sessions, world: World, nurse_token
) -> None:
    body = questionnaire_response("ciwa_ar", world.patient_a, ciwa_answers(3))
    no_episode = client.post("/fhir/QuestionnaireResponse", json=body, headers=auth(nurse_token))
    assert no_episode.status_code == 422 and "episode" in no_episode.text
    admit_to_detox(sessions, world, world.patient_a)
    other = make_token(sessions, world.email("nurse_b"), "user/*.cruds")
    assert (
        client.post("/fhir/QuestionnaireResponse", json=body, headers=auth(other)).status_code
        == 403
    )
    read_only = make_token(sessions, world.email("nurse"), "user/*.rs")
    assert (
        client.post("/fhir/QuestionnaireResponse", json=body, headers=auth(read_only)).status_code
        == 403
    )
    future = questionnaire_response(
        "ciwa_ar", world.patient_a, ciwa_answers(3), utcnow() + timedelta(hours=1)
    )
    assert (
        client.post(
            "/fhir/QuestionnaireResponse", json=future, headers=auth(nurse_token)
        ).status_code
        == 422
    )
    naive = {**body, "authored": "2024-06-01T10:00:00"}
    assert (
        client.post(
            "/fhir/QuestionnaireResponse", json=naive, headers=auth(nurse_token)
        ).status_code
        == 422
    )
    assert counts(sessions) == (0, 0)


def test_observation_search_pages_and_filters_by_code_and_date(
    client, sessions, world: World, nurse_token
) -> None:
    admit_to_detox(sessions, world, world.patient_a, hours_ago=48)
    start = utcnow().replace(microsecond=0) - timedelta(hours=40)
    for n, total in enumerate((18, 12, 9, 5)):
        body = questionnaire_response(
            "ciwa_ar", world.patient_a, ciwa_answers(total), start + timedelta(hours=2 * n)
        )
        assert (
            client.post(
                "/fhir/QuestionnaireResponse", json=body, headers=auth(nurse_token)
            ).status_code
            == 201
        )
    seen, url = [], "/fhir/Observation?code=urn:tandem:instrument:ciwa_ar|total&_count=3"
    while url:
        bundle = client.get(url, headers=auth(nurse_token)).json()
        seen += [e["resource"]["valueInteger"] for e in bundle["entry"]]
        nxt = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        url = nxt[0].replace("https://testserver", "") if nxt else ""
    assert seen == [5, 9, 12, 18]  # newest first
    since = (start + timedelta(hours=3)).isoformat().replace("+00:00", "Z")
    recent = client.get(
        "/fhir/Observation",
        headers=auth(nurse_token),
        params={"code": "total", "date": f"ge{since}", "patient": world.patient_a},
    ).json()
    assert [e["resource"]["valueInteger"] for e in recent["entry"]] == [5, 9]
    tremor = client.get(
        "/fhir/Observation",
        headers=auth(nurse_token),
        params={"code": "urn:tandem:instrument:ciwa_ar|tremor"},
    ).json()
    assert len(tremor["entry"]) == 4
    bad = client.get(
        "/fhir/Observation", params={"date": "ge2024-06-01T10:00"}, headers=auth(nurse_token)
    )
    assert bad.status_code == 400 and bad.json()["resourceType"] == "OperationOutcome"
    other = make_token(sessions, world.email("nurse_b"), "user/*.cruds")
    assert client.get("/fhir/Observation", headers=auth(other)).json().get("entry", []) == []


def test_medication_administrations_are_searchable_and_linked_to_the_assessment(
    client, sessions, world: World, nurse_token
) -> None:
    admit_to_detox(sessions, world, world.patient_a)
    body = questionnaire_response("ciwa_ar", world.patient_a, ciwa_answers(12))
    qr = client.post("/fhir/QuestionnaireResponse", json=body, headers=auth(nurse_token)).json()
    with session_scope(sessions) as db:
        access = access_for(sessions, db, world)
        options = doses.dose_options(db, db.get(AssessmentRow, int(qr["id"])))
        assert [(o.drug, o.dose_text) for o in options] == [
            ("chlordiazepoxide", "50-75 mg"),
            ("lorazepam", "2-3 mg"),
        ]
        # The second dose for the same assessment needs a prescriber's override.
        prescriber = access_for(sessions, db, world, "prescriber")
        for who, dose, why in ((access, "2", ""), (prescriber, "3", "still tremulous")):
            doses.record_dose(
                who,
                world.patient_a,
                prn.DoseInput(
                    assessment_id=int(qr["id"]),
                    suggestion=1,
                    dose=dose,
                    route="oral",
                    administered_at=utcnow(),
                    override_reason=why,
                ),
            )
    page = client.get(
        "/fhir/MedicationAdministration",
        params={"patient": world.patient_a, "_count": 1},
        headers=auth(nurse_token),
    ).json()
    Bundle.model_validate(page)
    (given,) = [e["resource"] for e in page["entry"]]
    assert given["supportingInformation"] == [{"reference": f"QuestionnaireResponse/{qr['id']}"}]
    assert (
        given["dosage"]["dose"]["unit"] == "mg"
        and given["performer"][0]["actor"]["display"] == "Prescriber"  # the newest: the override
    )
    assert any(link["relation"] == "next" for link in page["link"])
    read = client.get(f"/fhir/MedicationAdministration/{given['id']}", headers=auth(nurse_token))
    assert read.status_code == 200
    with sessions() as db:
        assert db.scalar(select(func.count()).select_from(MedicationAdministrationRow)) == 2


def test_a_dose_outside_the_protocol_suggestion_is_refused(sessions, world: World) -> None:
    from tandem.errors import InvalidInput

    admit_to_detox(sessions, world, world.patient_a)
    with session_scope(sessions) as db:
        access = access_for(sessions, db, world)
        saved = assessments.save_assessment(access, world.patient_a, "ciwa_ar", ciwa_answers(9))
        db.flush()
        for suggestion, dose, field in (
            (0, "100", "dose"),
            (1, "abc", "dose"),
            (5, "1", "suggestion"),
        ):
            with pytest.raises(InvalidInput) as refused:
                doses.record_dose(
                    access,
                    world.patient_a,
                    prn.DoseInput(saved.assessment.id, suggestion, dose, "oral", utcnow()),
                )
            assert refused.value.field == field
        low = assessments.save_assessment(access, world.patient_a, "ciwa_ar", ciwa_answers(3))
        with pytest.raises(InvalidInput, match="suggests no medication"):
            doses.record_dose(
                access,
                world.patient_a,
                prn.DoseInput(low.assessment.id, 0, "25", "oral", utcnow()),
            )


def test_every_resource_of_a_synthetic_patient_is_labelled_htest(
    client, sessions, world: World, nurse_token
) -> None:
    from sqlalchemy import update

    from tandem.storage.models import Patient

    with session_scope(sessions) as db:
        db.execute(update(Patient).where(Patient.id == world.patient_a).values(synthetic=True))
    authored = utcnow().replace(microsecond=0) - timedelta(minutes=10)
    for patient in (world.patient_a, world.patient_a2):
        admit_to_detox(sessions, world, patient)
        body = questionnaire_response("ciwa_ar", patient, ciwa_answers(3), authored)
        created = client.post("/fhir/QuestionnaireResponse", json=body, headers=auth(nurse_token))
        assert created.status_code == 201, created.text

    def labels(resource: dict) -> list[str]:
        return [c["code"] for c in resource.get("meta", {}).get("security", [])]

    bundle = client.get("/fhir/Observation?_count=50", headers=auth(nurse_token)).json()
    by_patient = {
        e["resource"]["subject"]["reference"]: labels(e["resource"]) for e in bundle["entry"]
    }
    assert by_patient == {
        f"Patient/{world.patient_a}": ["HTEST"],
        f"Patient/{world.patient_a2}": [],
    }
    synthetic_qr = next(
        e["resource"]["derivedFrom"][0]["reference"]
        for e in bundle["entry"]
        if e["resource"]["subject"]["reference"] == f"Patient/{world.patient_a}"
    )
    read = client.get(f"/fhir/{synthetic_qr}", headers=auth(nurse_token)).json()
    assert labels(read) == ["HTEST"]
