"""The decision aid through the browser's HTTP (SQLite; their storage and API run on both engines):
the options side by side with medication-free recovery and the patient's safety screen, the PDF
handout, recording a decision (history kept, audited), "no medication" respected on the medication
pages, a patient sees only their own options, another program's staff is refused, and bad input is
refused naming the field with nothing stored."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime

import pytest
from fhir.resources.R4B.observation import Observation
from pypdf import PdfReader
from sqlalchemy import func, select

from tandem.choice.decision_storage import TreatmentDecisionRow
from tandem.storage.models import AuditEntry
from tests.conftest import World, sign_in

pytestmark = pytest.mark.one_engine  # a page test: see tests/conftest.py

NOW = datetime(2026, 3, 4, 21, 0, tzinfo=UTC)
TODAY = "2026-03-04"


@pytest.fixture(autouse=True)
def frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in ("tandem.choice.decision_pages", "tandem.choice.decisions"):
        monkeypatch.setattr(f"{module}.utcnow", lambda: NOW)


def decisions(sessions) -> list[TreatmentDecisionRow]:  # type: ignore[no-untyped-def]
    with sessions() as db:
        return list(db.scalars(select(TreatmentDecisionRow).order_by(TreatmentDecisionRow.id)))


def decide(client, world: World, csrf: str, **values: str):  # type: ignore[no-untyped-def]
    data = {
        "csrf_token": csrf,
        "substance": "alcohol",
        "phase": "staying_stopped",
        "choice": "no_medication",
        "discussed_on": TODAY,
        "discussed_by": "Casey Counselor",
        "preferences": "Wants to try meetings first",
        "notes": "",
    }
    data.update(values)
    return client.post(f"/patients/{world.patient_a}/options/decisions", data=data)


def test_options_show_medication_free_recovery_and_the_safety_screen(client, world: World) -> None:
    csrf = sign_in(client, world.email("prescriber"), world.passwords["prescriber"])
    # Record a kidney function that makes acamprosate contraindicated (CrCl 30 or less).
    facts = client.post(
        f"/patients/{world.patient_a}/medications/facts",
        data={
            "csrf_token": csrf,
            "on_dialysis": "yes",
            "taking_recorded": "yes",
        },
    )
    assert facts.status_code == 303, facts.text[:500]
    page = client.get(
        f"/patients/{world.patient_a}/options",
        params={"substance": "alcohol", "phase": "staying_stopped"},
    )
    assert page.status_code == 200
    text = page.text
    assert "Recovery without medication" in text and "Alcoholics Anonymous" in text
    assert "Naltrexone" in text and "Acamprosate" in text and "Disulfiram" in text
    # Off-label uses are labelled as such; evidence carries its citations.
    assert "Off-label" in text and "Baclofen" in text
    assert "Kelly JF, Humphreys K, Ferri M" in text
    # How it is taken comes from the monograph, not restated.
    assert "666 mg (two 333 mg tablets) three times daily" in text  # in the label details
    assert "Two tablets by mouth three times a day" in text  # in plain words
    # This patient's screen: acamprosate on dialysis is not safe, shown with the rule's reason.
    assert "Contraindicated for this patient now" in text
    assert "On dialysis: kidney function is below a clearance of 30 mL/min" in text
    # Opioid withdrawal: the medication-free option carries its overdose warning.
    opioids = client.get(
        f"/patients/{world.patient_a}/options",
        params={"substance": "opioids", "phase": "withdrawal"},
    ).text
    assert "Buprenorphine" in opioids and "a dose you used to take can kill" in opioids
    assert "Not advised on its own" in opioids


def test_the_handout_pdf_lists_the_options(client, world: World) -> None:
    sign_in(client, world.email("counselor"), world.passwords["counselor"])
    response = client.get(
        f"/patients/{world.patient_a}/options.pdf",
        params={"substance": "alcohol", "phase": "staying_stopped"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pdf"
    reader = PdfReader(io.BytesIO(response.content))
    text = " ".join(page.extract_text() for page in reader.pages)
    for name in ("Naltrexone", "Acamprosate", "Disulfiram", "Recovery without medication"):
        assert name in text, name
    assert "off-label" in text and "Rivera" in text


def test_recording_a_decision_keeps_history_and_is_audited(client, world: World, sessions) -> None:
    csrf = sign_in(client, world.email("counselor"), world.passwords["counselor"])
    first = decide(client, world, csrf, choice="undecided")
    assert first.status_code == 303
    second = decide(client, world, csrf, choice="naltrexone", discussed_by="Dr Lee")
    assert second.status_code == 303
    rows = decisions(sessions)
    assert [r.choice for r in rows] == ["undecided", "naltrexone"]  # nothing overwritten
    assert rows[1].discussed_by == "Dr Lee" and rows[1].discussed_on == date(2026, 3, 4)
    page = client.get(f"/patients/{world.patient_a}/options").text
    assert "Not decided yet" in page and "Naltrexone" in page and "Dr Lee" in page
    with sessions() as db:
        created = db.scalars(
            select(AuditEntry.resource_id).where(
                AuditEntry.resource_type == "TreatmentDecision",
                AuditEntry.operation == "create",
                AuditEntry.patient_id == world.patient_a,
            )
        ).all()
    assert sorted(created) == sorted(str(r.id) for r in rows)
    listed = client.get(f"/patients/{world.patient_a}/options/decisions.json").json()
    assert [d["choice"] for d in listed["decisions"]] == ["naltrexone", "undecided"]
    # Each decision also as a FHIR Observation (US Core's preference coding, the choice as text).
    observation = Observation.model_validate(listed["decisions"][0]["fhir"])
    assert observation.code.coding[0].code == "75773-2"
    assert observation.valueString.startswith("Naltrexone")
    assert observation.subject.reference == f"Patient/{world.patient_a}"


def test_no_medication_replaces_the_prescription_prompt(client, world: World) -> None:
    csrf = sign_in(client, world.email("prescriber"), world.passwords["prescriber"])
    before = client.get(f"/patients/{world.patient_a}/medications").text
    assert "No medication plans." in before and "no decision recorded yet" in before
    assert decide(client, world, csrf).status_code == 303
    after = client.get(f"/patients/{world.patient_a}/medications").text
    assert "No medication plans." not in after
    assert "The patient chose no medication" in after and "Casey Counselor" in after
    # The prescriber can still start a plan deliberately, behind a disclosure, choice shown.
    assert "Start a plan anyway" in after
    form = client.get(
        f"/patients/{world.patient_a}/medications/plans/new",
        params={"kind": "maintenance", "medication": "naltrexone"},
    ).text
    assert "The patient chose no medication" in form
    # The patient sees their own choice, worded for them.
    sign_in(client, world.email("patient"), world.passwords["patient"])
    own = client.get(f"/patients/{world.patient_a}/medications").text
    assert "You chose no medication" in own


def test_a_patient_sees_only_their_own_options(client, world: World) -> None:
    sign_in(client, world.email("patient"), world.passwords["patient"])
    mine = client.get(f"/patients/{world.patient_a}/options")
    assert mine.status_code == 200
    assert "My options" in mine.text and "Your safety check" in mine.text
    assert "Record the patient's decision" not in mine.text  # staff record it
    # Plain words for the patient, not the label's clinical wording.
    assert "Label details" not in mine.text and "CNS depressant" not in mine.text
    assert "Drowsiness, dizziness and weakness are common" in mine.text
    assert "Off-label: Baclofen is not approved in the US for this use" in mine.text
    assert "Your safety check" in mine.text and "Contraindicated for this patient" not in mine.text
    home = client.get(f"/patients/{world.patient_a}").text
    assert f"/patients/{world.patient_a}/options" in home and 'href="/learn"' in home
    other = client.get(f"/patients/{world.patient_a2}/options")
    assert other.status_code == 403
    assert client.get(f"/patients/{world.patient_a2}/options.pdf").status_code == 403


def test_another_programs_staff_is_refused(client, world: World, sessions) -> None:
    csrf = sign_in(client, world.email("prescriber_b"), world.passwords["prescriber_b"])
    assert client.get(f"/patients/{world.patient_a}/options").status_code == 403
    assert client.get(f"/patients/{world.patient_a}/options.pdf").status_code == 403
    refused = decide(client, world, csrf)
    assert refused.status_code == 403
    assert decisions(sessions) == []


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("choice", "cannabis-oil", "decision"),
        ("discussed_on", "", "date discussed"),
        ("discussed_on", "2099-01-01", "date discussed"),
        ("discussed_on", "yesterday", "date discussed"),
        ("discussed_by", "   ", "discussed by"),
        ("notes", "x" * 2001, "notes"),
        ("substance", "tobacco", "substance"),
    ],
)
def test_bad_input_names_the_field_and_stores_nothing(
    client, world: World, sessions, field: str, value: str, named: str
) -> None:
    csrf = sign_in(client, world.email("counselor"), world.passwords["counselor"])
    response = decide(client, world, csrf, **{field: value})
    assert response.status_code == 422
    assert f"Check {named}:" in response.text
    assert decisions(sessions) == []
    with sessions() as db:
        assert (
            db.scalar(
                select(func.count())
                .select_from(AuditEntry)
                .where(
                    AuditEntry.resource_type == "TreatmentDecision",
                    AuditEntry.operation == "create",
                )
            )
            == 0
        )
