"""Self-report scales over FHIR on SQLite and PostgreSQL: every scale a Questionnaire (read,
search by name and url), a QuestionnaireResponse accepted from staff and from the patient for
themselves, scored, stored and audited; impossible answers refused naming the item with nothing
stored; another patient's record refused (403, audited); PHQ-9 item 9 raising the urgent alert;
the total as an Observation with its confirmed LOINC code; search by patient, questionnaire and
date."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.questionnaire import Questionnaire
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse
from sqlalchemy import func, select

from tandem.alerts.models import Alert
from tandem.recovery.storage import QuestionnaireResponseRow
from tandem.storage.db import utcnow
from tandem.storage.models import AuditEntry
from tests.conftest import World, make_token
from tests.instruments.facts import ITEMS, answers

FHIR = {"Content-Type": "application/fhir+json"}
SCALES = ("phq9", "gad7", "pacs", "audit", "audit_c", "dast10")


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **FHIR}


def response_body(
    instrument_id: str, patient_id: str, values: dict[str, Any], authored: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": f"Questionnaire/{instrument_id.replace('_', '-')}",
        "status": "completed",
        "subject": {"reference": f"Patient/{patient_id}"},
        "item": [
            {"linkId": k, "answer": [{"valueCoding": {"code": str(v)}}]} for k, v in values.items()
        ],
    }
    if authored:
        body["authored"] = authored
    return body


def stored(sessions) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    with sessions() as db:
        return (
            db.scalar(select(func.count()).select_from(QuestionnaireResponseRow)) or 0,
            db.scalar(select(func.count()).select_from(Alert)) or 0,
        )


@pytest.fixture
def counselor(sessions, world: World) -> str:
    return make_token(sessions, world.email("counselor"), "user/*.cruds")


@pytest.fixture
def patient(sessions, world: World) -> str:
    return make_token(sessions, world.email("patient"), "patient/*.cruds")


def phq9(item9: int, others: int = 0) -> dict[str, int]:
    return answers("phq9", [others] * 8 + [item9])


@pytest.mark.parametrize("instrument_id", SCALES)
def test_every_self_report_scale_is_a_questionnaire_found_by_name_and_url(
    client, counselor, instrument_id: str
) -> None:
    qid = instrument_id.replace("_", "-")
    read = client.get(f"/fhir/Questionnaire/{qid}", headers=auth(counselor))
    assert read.status_code == 200, read.text
    questionnaire = Questionnaire.model_validate(read.json())
    assert [i.linkId for i in questionnaire.item or []] == [i for i, _ in ITEMS[instrument_id]]
    by_name = client.get(f"/fhir/Questionnaire?name={questionnaire.name}", headers=auth(counselor))
    found = {e["resource"]["id"]: e["resource"]["name"] for e in by_name.json()["entry"]}
    # a FHIR string search matches names that start with it ("Audit" finds AUDIT and AUDIT-C)
    assert qid in found and all(n.startswith(questionnaire.name or "") for n in found.values())
    assert set(found) == ({"audit", "audit-c"} if instrument_id == "audit" else {qid})
    by_url = client.get(
        "/fhir/Questionnaire", params={"url": questionnaire.url}, headers=auth(counselor)
    )
    assert [e["resource"]["id"] for e in by_url.json()["entry"]] == [qid]
    # PACS items 2-5 are not checked against the published form: the Questionnaire says so
    assert questionnaire.status == ("draft" if instrument_id == "pacs" else "active")


def test_a_counselor_posts_a_gad7_it_is_scored_stored_audited_and_read_back(
    client, sessions, world: World, counselor
) -> None:
    authored = (utcnow() - timedelta(hours=1)).replace(microsecond=0).isoformat()
    body = response_body("gad7", world.patient_a, answers("gad7", [2, 2, 2, 2, 1, 1, 0]), authored)
    created = client.post("/fhir/QuestionnaireResponse", json=body, headers=auth(counselor))
    assert created.status_code == 201, created.text
    qr = QuestionnaireResponse.model_validate(created.json())
    assert qr.id is not None and qr.id.startswith("scale-")
    assert created.headers["location"].endswith(f"/fhir/QuestionnaireResponse/{qr.id}")
    with sessions() as db:
        row = db.scalars(select(QuestionnaireResponseRow)).one()
        assert (row.instrument_id, row.total, row.band_id, row.urgent) == (
            "gad7",
            10,
            "moderate",
            False,
        )
        assert row.source == "api" and row.patient_id == world.patient_a
        audited = db.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(
                AuditEntry.operation == "create",
                AuditEntry.resource_type == "QuestionnaireResponse",
                AuditEntry.resource_id == str(row.id),
            )
        )
        assert audited == 1
    again = client.get(f"/fhir/QuestionnaireResponse/{qr.id}", headers=auth(counselor))
    assert again.status_code == 200 and again.json()["item"] == created.json()["item"]
    total = client.get(f"/fhir/Observation/{qr.id}", headers=auth(counselor))
    assert total.status_code == 200, total.text
    observation = Observation.model_validate(total.json())
    codes = {(c.system, c.code) for c in observation.code.coding or []}
    assert ("http://loinc.org", "70274-6") in codes
    assert observation.valueInteger == 10
    assert total.json()["interpretation"][0]["text"] == "Moderate"


def test_pacs_totals_carry_no_loinc_code_and_say_there_are_no_bands(
    client, world: World, counselor
) -> None:
    body = response_body("pacs", world.patient_a, answers("pacs", [6, 6, 6, 6, 6]))
    created = client.post("/fhir/QuestionnaireResponse", json=body, headers=auth(counselor))
    assert created.status_code == 201, created.text
    total = client.get(f"/fhir/Observation/{created.json()['id']}", headers=auth(counselor)).json()
    assert [c["system"] for c in total["code"]["coding"]] == ["urn:tandem:instrument:pacs"]
    assert total["valueInteger"] == 30 and "interpretation" not in total
    assert ">=" not in total["note"][0]["text"] and "15 or more" in total["note"][0]["text"]


@pytest.mark.parametrize(
    ("instrument_id", "values", "item"),
    [
        ("pacs", [7, 0, 0, 0, 0], "frequency"),  # 0-6 only
        ("pacs", [0, 0, 0, 0, -1], "overall"),
        ("audit", [0, 0, 0, 0, 0, 0, 0, 0, 1, 0], "injury"),  # 0, 2 or 4
        ("phq9", [0, 0, 0, 0, 0, 0, 0, 0, 4], "self_harm_thoughts"),
        ("dast10", [0, 0, 2, 0, 0, 0, 0, 0, 0, 0], "able_to_stop"),
    ],
)
def test_an_impossible_answer_is_refused_naming_the_item_and_nothing_is_stored(
    client, sessions, world: World, counselor, instrument_id: str, values: list[int], item: str
) -> None:
    body = response_body(instrument_id, world.patient_a, answers(instrument_id, values))
    refused = client.post("/fhir/QuestionnaireResponse", json=body, headers=auth(counselor))
    assert refused.status_code == 422, refused.text
    outcome = refused.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["expression"] == [
        f"QuestionnaireResponse.item.where(linkId='{item}')"
    ]
    assert stored(sessions) == (0, 0)


def test_a_missing_item_is_refused_too(client, sessions, world: World, counselor) -> None:
    values = answers("gad7", [1] * 7)
    del values["afraid"]
    refused = client.post(
        "/fhir/QuestionnaireResponse",
        json=response_body("gad7", world.patient_a, values),
        headers=auth(counselor),
    )
    assert refused.status_code == 422
    assert "afraid" in refused.json()["issue"][0]["diagnostics"]
    assert stored(sessions) == (0, 0)


def test_a_patient_posts_their_own_phq9_and_item9_raises_an_urgent_alert_at_once(
    client, sessions, world: World, patient
) -> None:
    created = client.post(
        "/fhir/QuestionnaireResponse",
        json=response_body("phq9", world.patient_a, phq9(item9=1)),
        headers=auth(patient),
    )
    assert created.status_code == 201, created.text
    assert {
        "system": "urn:tandem:flag",
        "code": "urgent",
        "display": "Urgent: the care team was alerted",
    } in created.json()["meta"]["tag"]
    with sessions() as db:
        row = db.scalars(select(QuestionnaireResponseRow)).one()
        assert row.urgent and row.source == "api" and row.flags == ["suicide_risk_screen"]
        alert = db.scalars(select(Alert)).one()
        assert alert.patient_id == world.patient_a and alert.severity == "critical"
        assert alert.kind == "self_report_urgent" and alert.acknowledged_at is None
        assert alert.related_id == f"scale-{row.id}"


def test_phq9_item9_at_zero_raises_nothing(client, sessions, world: World, patient) -> None:
    created = client.post(
        "/fhir/QuestionnaireResponse",
        json=response_body("phq9", world.patient_a, phq9(item9=0, others=3)),
        headers=auth(patient),
    )
    assert created.status_code == 201, created.text
    assert "meta" not in created.json() or "tag" not in created.json()["meta"]
    with sessions() as db:
        row = db.scalars(select(QuestionnaireResponseRow)).one()
        assert (row.total, row.band_id, row.urgent) == (24, "severe", False)
    assert stored(sessions) == (1, 0)


def test_a_patient_cannot_post_for_another_patient_refused_and_audited(
    client, sessions, world: World, patient
) -> None:
    refused = client.post(
        "/fhir/QuestionnaireResponse",
        json=response_body("phq9", world.patient_a2, phq9(item9=2)),
        headers=auth(patient),
    )
    assert refused.status_code == 403, refused.text
    assert stored(sessions) == (0, 0)
    with sessions() as db:
        refusal = db.scalars(
            select(AuditEntry).where(
                AuditEntry.outcome != "0", AuditEntry.patient_id == world.patient_a2
            )
        ).all()
        assert refusal, "the refusal is in the audit trail"


def test_a_patient_cannot_record_a_withdrawal_assessment(
    client, sessions, world: World, patient
) -> None:
    from tests.withdrawal.helpers import admit_to_detox, ciwa_answers, questionnaire_response

    admit_to_detox(sessions, world, world.patient_a)
    body = questionnaire_response("ciwa_ar", world.patient_a, ciwa_answers(10))
    assert (
        client.post("/fhir/QuestionnaireResponse", json=body, headers=auth(patient)).status_code
        == 403
    )


def test_search_by_patient_questionnaire_and_date(
    client, sessions, world: World, counselor, patient
) -> None:
    now = utcnow().replace(microsecond=0)
    for days, instrument_id, values in (
        (10, "phq9", [1] * 9),
        (3, "phq9", [2] * 9),
        (2, "gad7", [1] * 7),
    ):
        body = response_body(
            instrument_id,
            world.patient_a,
            answers(instrument_id, values),
            (now - timedelta(days=days)).isoformat(),
        )
        assert (
            client.post(
                "/fhir/QuestionnaireResponse", json=body, headers=auth(counselor)
            ).status_code
            == 201
        )
    other = response_body("phq9", world.patient_a2, answers("phq9", [0] * 9))
    assert (
        client.post("/fhir/QuestionnaireResponse", json=other, headers=auth(counselor)).status_code
        == 201
    )

    def ids(query: dict[str, str], token: str = counselor) -> list[int]:
        found = client.get("/fhir/QuestionnaireResponse", params=query, headers=auth(token))
        assert found.status_code == 200, found.text
        Bundle.model_validate(found.json())
        return [
            sum(int(i["answer"][0]["valueCoding"]["code"]) for i in e["resource"]["item"])
            for e in found.json().get("entry", [])
        ]

    assert ids({"patient": world.patient_a}) == [7, 18, 9]  # newest first
    assert ids({"patient": world.patient_a, "questionnaire": "Questionnaire/phq9"}) == [18, 9]
    since = (now - timedelta(days=5)).date().isoformat()
    assert ids({"patient": world.patient_a, "authored": f"ge{since}"}) == [7, 18]
    assert ids({"patient": world.patient_a, "questionnaire": "ciwa-ar"}) == []
    # the patient sees only their own responses; naming another patient is refused
    assert ids({}, patient) == [7, 18, 9]
    assert (
        client.get(
            "/fhir/QuestionnaireResponse",
            params={"patient": world.patient_a2},
            headers=auth(patient),
        ).status_code
        == 403
    )
    totals = client.get(
        "/fhir/Observation",
        params={"patient": world.patient_a, "code": "http://loinc.org|44261-6"},
        headers=auth(counselor),
    ).json()
    assert [e["resource"]["valueInteger"] for e in totals["entry"]] == [18, 9]


def test_totals_by_tandem_code_and_date_and_responses_page_by_count(
    client, world: World, counselor
) -> None:
    now = utcnow().replace(microsecond=0)
    for days, values in ((9, [1, 1, 1, 1, 1]), (1, [2, 2, 2, 2, 2]), (0, [6, 6, 6, 6, 6])):
        body = response_body(
            "pacs",
            world.patient_a,
            answers("pacs", values),
            (now - timedelta(days=days)).isoformat(),
        )
        assert (
            client.post(
                "/fhir/QuestionnaireResponse", json=body, headers=auth(counselor)
            ).status_code
            == 201
        )
    since = (now - timedelta(days=3)).date().isoformat()
    totals = client.get(
        "/fhir/Observation",
        params={
            "patient": world.patient_a,
            "code": "urn:tandem:instrument:pacs|total",
            "date": f"ge{since}",
        },
        headers=auth(counselor),
    )
    assert totals.status_code == 200, totals.text
    assert [e["resource"]["valueInteger"] for e in totals.json()["entry"]] == [30, 10]
    # an item code of a self-report scale is not an Observation: nothing, not an error
    items = client.get(
        "/fhir/Observation",
        params={"patient": world.patient_a, "code": "urn:tandem:instrument:pacs|overall"},
        headers=auth(counselor),
    )
    assert items.status_code == 200 and items.json().get("entry", []) == []
    first = client.get(
        "/fhir/QuestionnaireResponse",
        params={"patient": world.patient_a, "_count": "2"},
        headers=auth(counselor),
    ).json()
    assert len(first["entry"]) == 2
    following = next(link["url"] for link in first["link"] if link["relation"] == "next")
    rest = client.get(following, headers=auth(counselor)).json()
    assert len(rest["entry"]) == 1
    bad = client.get(
        "/fhir/QuestionnaireResponse", params={"authored": "yesterday"}, headers=auth(counselor)
    )
    assert bad.status_code == 400 and bad.json()["issue"][0]["expression"] == ["authored"]
