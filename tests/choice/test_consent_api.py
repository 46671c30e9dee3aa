"""Consent end to end on SQLite and PostgreSQL: FHIR Consent (create, read, search by patient and
status, revoke), another program reading a patient only under a valid consent (refused and
audited otherwise), releases of records refused without, with an expired, or after a revoked
consent (audited), the accounting listing each release, the §2.32 notice in the Bundle and the
PDF, and the pages for staff and the patient."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.consent import Consent
from pypdf import PdfReader
from sqlalchemy import func, select

from tandem.choice.consent import rules
from tandem.choice.consent_storage import ConsentRow, DisclosureRow
from tandem.clock import program_today, utcnow
from tandem.medications.dose_calendar import plan_view
from tandem.medications.doses import record_administration
from tandem.medications.plans import create_titration
from tandem.patients.service import get_patient
from tandem.storage.db import session_scope
from tandem.storage.models import AuditEntry
from tandem.withdrawal import assessments
from tests.conftest import World, csrf_from, make_token, sign_in
from tests.medications.conftest import access_for
from tests.withdrawal.helpers import admit_to_detox, ciwa_answers

FHIR = {"Content-Type": "application/fhir+json"}
EXT = "https://tandem.example/fhir/StructureDefinition/"
CLINIC = "Dr Lee's clinic"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **FHIR}


def today() -> str:
    return program_today("America/New_York", utcnow()).isoformat()


def days(n: int) -> str:
    return (program_today("America/New_York", utcnow()) + timedelta(days=n)).isoformat()


def consent_body(
    patient_id: str,
    *,
    program_id: int | None = None,
    name: str = CLINIC,
    purpose: str = "TREAT",
    information: tuple[str, ...] = ("all",),
    signed: str | None = None,
    expires: str | None = None,
    drop: str = "",
) -> dict[str, Any]:
    reference: dict[str, Any] = {"display": name}
    if program_id is not None:
        reference = {"identifier": {"system": "urn:tandem:program", "value": str(program_id)}}
    body: dict[str, Any] = {
        "resourceType": "Consent",
        "status": "active",
        "scope": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                    "code": "patient-privacy",
                }
            ]
        },
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{patient_id}"},
        "dateTime": signed or today(),
        "performer": [{"reference": f"Patient/{patient_id}", "display": "Ana Rivera"}],
        "policyRule": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "42CFRPart2"}
            ]
        },
        "extension": [{"url": f"{EXT}consent-information", "valueCode": i} for i in information],
        "provision": {
            "type": "permit",
            "period": {"start": signed or today(), "end": expires or days(30)},
            "actor": [
                {
                    "role": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                "code": "IRCP",
                            }
                        ]
                    },
                    "reference": reference,
                }
            ],
            "purpose": [
                {"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": purpose}
            ],
        },
    }
    if drop == "purpose":
        del body["provision"]["purpose"]
    elif drop == "recipient":
        del body["provision"]["actor"]
    elif drop == "expiry":
        del body["provision"]["period"]["end"]
    elif drop == "signed_by":
        body["performer"] = [{"reference": f"Patient/{patient_id}"}]
    elif drop == "information":
        del body["extension"]
    return body


def count(sessions, model) -> int:  # type: ignore[no-untyped-def]
    with sessions() as db:
        return int(db.scalar(select(func.count()).select_from(model)) or 0)


def refusals(sessions, operation: str) -> list[AuditEntry]:  # type: ignore[no-untyped-def]
    with sessions() as db:
        return list(
            db.scalars(
                select(AuditEntry).where(
                    AuditEntry.operation == operation, AuditEntry.outcome != "0"
                )
            )
        )


def seed_assessment(sessions, world: World) -> None:  # type: ignore[no-untyped-def]
    admit_to_detox(sessions, world, world.patient_a)
    with session_scope(sessions) as db:
        nurse = access_for(db, sessions, world.email("nurse"))
        assessments.save_assessment(
            nurse, world.patient_a, "ciwa_ar", ciwa_answers(12), utcnow() - timedelta(minutes=5)
        )


def seed_medication(sessions, world: World) -> None:  # type: ignore[no-untyped-def]
    """A baclofen dose plan started yesterday, with its first dose given."""
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
        record_administration(
            prescriber,
            world.patient_a,
            plan.id,
            due_at=doses[0].planned.due_at,
            given=True,
            administered_at=doses[0].planned.due_at,
            now=now,
        )


def test_consent_create_read_search_and_revoke(client, sessions, world: World) -> None:
    nurse = make_token(sessions, world.email("nurse"), "user/*.cruds")
    created = client.post(
        "/fhir/Consent",
        json=consent_body(world.patient_a, program_id=world.program_b),
        headers=auth(nurse),
    )
    assert created.status_code == 201, created.text
    consent = created.json()
    Consent.model_validate(consent)
    assert consent["status"] == "active"
    assert consent["provision"]["actor"][0]["reference"]["display"] == "Bravo Outpatient"
    assert consent["provision"]["purpose"][0]["code"] == "TREAT"
    assert consent["category"][1]["coding"][0]["code"] == "IDSCL"
    read = client.get(f"/fhir/Consent/{consent['id']}", headers=auth(nurse))
    assert read.status_code == 200 and read.json()["id"] == consent["id"]

    found = client.get(
        "/fhir/Consent",
        params={"patient": world.patient_a, "status": "active"},
        headers=auth(nurse),
    ).json()
    Bundle.model_validate(found)
    assert [e["resource"]["id"] for e in found["entry"]] == [consent["id"]]

    revoked = client.put(
        f"/fhir/Consent/{consent['id']}",
        json={**consent, "status": "inactive"},
        headers=auth(nurse),
    )
    assert revoked.status_code == 200 and revoked.json()["status"] == "inactive"
    assert any(e["url"] == f"{EXT}consent-revoked" for e in revoked.json()["extension"])
    active = client.get(
        "/fhir/Consent",
        params={"patient": world.patient_a, "status": "active"},
        headers=auth(nurse),
    ).json()
    assert active.get("entry", []) == []
    inactive = client.get(
        "/fhir/Consent",
        params={"patient": world.patient_a, "status": "inactive"},
        headers=auth(nurse),
    ).json()
    assert [e["resource"]["id"] for e in inactive["entry"]] == [consent["id"]]
    # Never deleted, and a revoked consent is not changed back.
    again = client.put(
        f"/fhir/Consent/{consent['id']}", json={**consent, "status": "active"}, headers=auth(nurse)
    )
    assert again.status_code == 422 and count(sessions, ConsentRow) == 1


@pytest.mark.parametrize(
    ("drop", "field"),
    [
        ("purpose", "Consent.purpose"),
        ("recipient", "Consent.recipient"),
        ("expiry", "Consent.expiry"),
        ("signed_by", "Consent.signed_by"),
        ("information", "Consent.information"),
    ],
)
def test_a_consent_missing_a_required_element_is_refused_naming_it(
    client, sessions, world: World, drop: str, field: str
) -> None:
    nurse = make_token(sessions, world.email("nurse"), "user/*.cruds")
    response = client.post(
        "/fhir/Consent", json=consent_body(world.patient_a, drop=drop), headers=auth(nurse)
    )
    assert response.status_code == 422, response.text
    issue = response.json()["issue"][0]
    assert issue["expression"] == [field] and "2.31" in issue["diagnostics"]
    assert count(sessions, ConsentRow) == 0


def test_another_program_reads_only_under_a_valid_consent_for_treatment(
    client, sessions, world: World
) -> None:
    seed_assessment(sessions, world)
    nurse = make_token(sessions, world.email("nurse"), "user/*.cruds")
    other = make_token(sessions, world.email("prescriber_b"), "user/*.rs")
    refused = client.get(f"/fhir/Patient/{world.patient_a}", headers=auth(other))
    assert refused.status_code == 403 and "no valid consent" in refused.text
    assert (
        client.get(
            "/fhir/Observation", params={"patient": world.patient_a}, headers=auth(other)
        ).status_code
        == 403
    )
    assert len(refusals(sessions, "read")) == 1

    # A consent for payment, or for another program, changes nothing.
    client.post(
        "/fhir/Consent",
        json=consent_body(world.patient_a, program_id=world.program_b, purpose="HPAYMT"),
        headers=auth(nurse),
    )
    assert client.get(f"/fhir/Patient/{world.patient_a}", headers=auth(other)).status_code == 403

    medications_only = client.post(
        "/fhir/Consent",
        json=consent_body(
            world.patient_a, program_id=world.program_b, information=("medications",)
        ),
        headers=auth(nurse),
    ).json()
    assert client.get(f"/fhir/Patient/{world.patient_a}", headers=auth(other)).status_code == 200
    assert (
        client.get(
            "/fhir/Observation", params={"patient": world.patient_a}, headers=auth(other)
        ).status_code
        == 403
    )
    assert (
        client.get(
            "/fhir/MedicationRequest", params={"patient": world.patient_a}, headers=auth(other)
        ).status_code
        == 200
    )
    client.put(
        f"/fhir/Consent/{medications_only['id']}",
        json={**medications_only, "status": "inactive"},
        headers=auth(nurse),
    )

    every = client.post(
        "/fhir/Consent",
        json=consent_body(world.patient_a, program_id=world.program_b),
        headers=auth(nurse),
    ).json()
    observations = client.get(
        "/fhir/Observation", params={"patient": world.patient_a}, headers=auth(other)
    )
    assert observations.status_code == 200 and observations.json()["entry"], observations.text
    # Consent opens the named patient's records, not the program's others (patient A2).
    assert client.get(f"/fhir/Patient/{world.patient_a2}", headers=auth(other)).status_code == 403
    # Still read only.
    assert (
        client.post(
            "/fhir/Consent",
            json=consent_body(world.patient_a),
            headers=auth(make_token(sessions, world.email("prescriber_b"), "user/*.cruds")),
        ).status_code
        == 403
    )

    client.put(
        f"/fhir/Consent/{every['id']}", json={**every, "status": "inactive"}, headers=auth(nurse)
    )
    after = client.get(f"/fhir/Patient/{world.patient_a}", headers=auth(other))
    assert after.status_code == 403
    with sessions() as db:
        last = db.scalars(select(AuditEntry).order_by(AuditEntry.id.desc())).first()
        assert last is not None and last.outcome != "0" and last.patient_id == world.patient_a


def disclose(
    client,
    token: str,
    patient_id: str,
    recipient: str = CLINIC,
    purpose: str = "TREAT",
    information: str = "all",
):  # type: ignore[no-untyped-def]
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "recipient", "valueString": recipient},
            {"name": "purpose", "valueCode": purpose},
            {"name": "information", "valueCode": information},
        ],
    }
    return client.post(f"/fhir/Patient/{patient_id}/$disclose", json=body, headers=auth(token))


def test_a_release_is_refused_and_audited_without_expired_or_after_revoked_consent(
    client, sessions, world: World
) -> None:
    seed_assessment(sessions, world)
    seed_medication(sessions, world)
    nurse = make_token(sessions, world.email("nurse"), "user/*.cruds")

    for odd in (
        {"parameter": 5},
        {"parameter": [{"name": "recipient", "valueIdentifier": {"value": "x"}}]},
        {},
    ):
        answer = client.post(
            f"/fhir/Patient/{world.patient_a}/$disclose",
            json={"resourceType": "Parameters", **odd},
            headers=auth(nurse),
        )
        assert (
            400 <= answer.status_code < 500 and answer.json()["resourceType"] == "OperationOutcome"
        )

    none = disclose(client, nurse, world.patient_a)
    assert none.status_code == 403 and none.json()["resourceType"] == "OperationOutcome"
    assert "no consent" in none.text

    expired = consent_body(world.patient_a, signed=days(-60), expires=days(-30))
    assert client.post("/fhir/Consent", json=expired, headers=auth(nurse)).status_code == 201
    was_expired = disclose(client, nurse, world.patient_a)
    assert was_expired.status_code == 403 and "expired" in was_expired.text

    valid = client.post(
        "/fhir/Consent", json=consent_body(world.patient_a), headers=auth(nurse)
    ).json()
    assert disclose(client, nurse, world.patient_a, recipient="An employer").status_code == 403
    assert disclose(client, nurse, world.patient_a, purpose="HPAYMT").status_code == 403

    released = disclose(client, nurse, world.patient_a)
    assert released.status_code == 200, released.text
    bundle = released.json()
    Bundle.model_validate(bundle)
    assert bundle["type"] == "document"
    composition = bundle["entry"][0]["resource"]
    assert "42 CFR 2.32" in composition["section"][0]["title"]
    notice = composition["section"][0]["text"]["div"]
    assert "prohibit you from making any other use or disclosure of this record" in notice
    assert "NOT sufficient" in notice
    kinds = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert kinds[:3] == ["Composition", "Consent", "Patient"]
    assert {"QuestionnaireResponse", "Observation", "MedicationRequest"} <= set(kinds)
    assert "MedicationAdministration" in kinds
    assert bundle["meta"]["security"][0]["code"] == "NORDSCLCD"

    client.put(
        f"/fhir/Consent/{valid['id']}", json={**valid, "status": "inactive"}, headers=auth(nurse)
    )
    after = disclose(client, nurse, world.patient_a)
    assert after.status_code == 403 and "revoked" in after.text

    refused = refusals(sessions, "disclose")
    assert len(refused) == 5 and all(r.patient_id == world.patient_a for r in refused)
    assert all(r.resource_type == "Disclosure" for r in refused)
    with sessions() as db:
        rows = list(db.scalars(select(DisclosureRow)))
    assert (
        len(rows) == 1
        and rows[0].recipient_name == CLINIC
        and rows[0].consent_id == int(valid["id"])
    )
    assert "QuestionnaireResponse 1" in rows[0].contents


def test_staff_record_release_a_pdf_and_the_patient_sees_the_accounting_and_revokes(
    client, sessions, world: World
) -> None:
    seed_assessment(sessions, world)
    csrf = sign_in(client, world.email("nurse"), world.passwords["nurse"])
    page = client.get(f"/patients/{world.patient_a}/consents")
    assert page.status_code == 200 and "Record a signed consent" in page.text
    form = {
        "csrf_token": csrf,
        "recipient_kind": "outside",
        "recipient_name": CLINIC,
        "purpose": "TREAT",
        "information": ["assessments", "medications"],
        "expires_on": "",
        "expiry_event": "the end of treatment",
        "signed_on": today(),
        "signed_by": "Ana Rivera",
        "signer_role": "patient",
    }
    missing = client.post(f"/patients/{world.patient_a}/consents", data={**form, "signed_by": ""})
    assert (
        missing.status_code == 422
        and 'id="signed_by-error"' in missing.text
        and "2.31(a)(8)" in missing.text
    )
    assert count(sessions, ConsentRow) == 0
    saved = client.post(f"/patients/{world.patient_a}/consents", data=form)
    assert saved.status_code == 303, saved.text

    release = {
        "csrf_token": csrf,
        "recipient_kind": "outside",
        "recipient_name": CLINIC,
        "purpose": "TREAT",
        "information": ["assessments"],
        "form": "pdf",
    }
    wrong = client.post(
        f"/patients/{world.patient_a}/disclosures", data={**release, "purpose": "HRESCH"}
    )
    assert wrong.status_code == 403 and "Refused" in wrong.text
    pdf = client.post(f"/patients/{world.patient_a}/disclosures", data=release)
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    text = " ".join(
        " ".join(page.extract_text().split()) for page in PdfReader(io.BytesIO(pdf.content)).pages
    )
    assert "Notice prohibiting redisclosure" in text
    for phrase in (
        "This record which has been disclosed to you is protected by Federal confidentiality rules",
        "(iii) You have received the record from a covered entity",
    ):
        assert " ".join(phrase.split()) in text, phrase
    assert CLINIC in text and "QuestionnaireResponse" in text
    bundle = client.post(
        f"/patients/{world.patient_a}/disclosures", data={**release, "form": "bundle"}
    )
    assert bundle.status_code == 200 and bundle.json()["type"] == "document"
    assert len(refusals(sessions, "disclose")) == 1

    client.cookies.clear()
    sign_in(client, world.email("patient"), world.passwords["patient"])
    mine = client.get(f"/patients/{world.patient_a}/consents")
    assert mine.status_code == 200
    assert "When your records were shared" in mine.text and mine.text.count("Dr Lee") >= 2
    assert "Record a signed consent" not in mine.text and "Take back this consent" in mine.text
    patient_csrf = csrf_from(mine.text)
    with sessions() as db:
        consent_id = db.scalars(select(ConsentRow.id)).one()
    taken_back = client.post(
        f"/patients/{world.patient_a}/consents/{consent_id}/revoke",
        data={"csrf_token": patient_csrf},
    )
    assert taken_back.status_code == 303
    with sessions() as db:
        row = db.get(ConsentRow, consent_id)
        assert row is not None and row.revoked_at is not None
    # Another patient sees none of it.
    client.cookies.clear()
    sign_in(client, world.email("patient2"), world.passwords["patient2"])
    assert client.get(f"/patients/{world.patient_a}/consents").status_code == 403


def test_the_notice_is_the_regulations_statement_with_its_source() -> None:
    notice = rules().notice
    assert notice.text.startswith("This record which has been disclosed to you is protected")
    assert len(notice.items) == 3 and "45 CFR part 164" in notice.items[2]
    assert rules().sources[notice.source].url.endswith("section-2.32")  # type: ignore[union-attr]


def test_the_capability_statement_lists_consent(client) -> None:
    metadata = client.get("/fhir/metadata").json()
    (consent,) = [r for r in metadata["rest"][0]["resource"] if r["type"] == "Consent"]
    assert {i["code"] for i in consent["interaction"]} == {
        "read",
        "create",
        "update",
        "search-type",
    }
    assert {"patient", "status"} <= {p["name"] for p in consent["searchParam"]}


def test_the_chart_pages_honour_a_consent_with_no_code_of_their_own(
    client, sessions, world: World
) -> None:
    """Every existing page reads through the data-access layer: under a consent the other
    program's prescriber opens the chart and its tabs; without it, each is refused."""
    seed_assessment(sessions, world)
    tabs = ("", "/withdrawal", "/medications")
    sign_in(client, world.email("prescriber_b"), world.passwords["prescriber_b"])
    for tab in tabs:
        assert client.get(f"/patients/{world.patient_a}{tab}").status_code == 403, tab
    nurse = make_token(sessions, world.email("nurse"), "user/*.cruds")
    client.post(
        "/fhir/Consent",
        json=consent_body(world.patient_a, program_id=world.program_b),
        headers=auth(nurse),
    )
    for tab in tabs:
        page = client.get(f"/patients/{world.patient_a}{tab}")
        assert page.status_code == 200 and "RIVERA" in page.text.upper(), tab
    # The consents and their accounting stay with the patient's own program.
    assert client.get(f"/patients/{world.patient_a}/consents").status_code == 403
    # Never a write: the forms refuse.
    csrf = csrf_from(client.get(f"/patients/{world.patient_a}").text)
    assert (
        client.post(
            f"/patients/{world.patient_a}/edit", data={"csrf_token": csrf, "family": "X"}
        ).status_code
        == 403
    )


def test_consent_rules_the_core_checks() -> None:
    from datetime import date

    from tandem.choice.consent import ConsentInput, check_consent
    from tandem.errors import InvalidInput

    now = utcnow()
    base = ConsentInput(
        recipient_name=CLINIC,
        purpose="TREAT",
        information=("all",),
        expires_on=None,
        expiry_event="end of treatment",
        signed_on=date.fromisoformat(today()),
        signed_by="Ana Rivera",
    )
    kwargs = dict(
        patient_name="Ana Rivera",
        program_name="Alpha",
        recipient_program_name=None,
        own_program_id=1,
        time_zone="America/New_York",
        now=now,
    )
    assert check_consent(base, **kwargs).expires_at is None  # type: ignore[arg-type]
    cases = {
        "signed_on": base.__class__(**{**base.__dict__, "signed_on": date.fromisoformat(days(2))}),
        "expiry": base.__class__(
            **{**base.__dict__, "expires_on": date.fromisoformat(days(-3)), "expiry_event": ""}
        ),
        "purpose": base.__class__(**{**base.__dict__, "purpose": "PATRQT"}),
        "recipient": base.__class__(
            **{**base.__dict__, "recipient_name": "", "recipient_program_id": 1}
        ),
    }
    for field, values in cases.items():
        with pytest.raises(InvalidInput) as refused:
            check_consent(
                values,
                **{**kwargs, "recipient_program_name": "Alpha"} if field == "recipient" else kwargs,
            )  # type: ignore[arg-type]
        assert refused.value.field == field
    dated = check_consent(
        base.__class__(**{**base.__dict__, "expires_on": date.fromisoformat(days(3))}), **kwargs
    )  # type: ignore[arg-type]
    assert dated.expires_at is not None and dated.expires_at > now + timedelta(days=3)


def test_a_consent_ending_on_an_event_ends_when_staff_record_it(
    client, sessions, world: World
) -> None:
    csrf = sign_in(client, world.email("counselor"), world.passwords["counselor"])
    saved = client.post(
        f"/patients/{world.patient_a}/consents",
        data={
            "csrf_token": csrf,
            "recipient_kind": "program",
            "recipient_program_id": str(world.program_b),
            "purpose": "TREAT",
            "information": ["all"],
            "expiry_event": "discharge from detox",
            "signed_on": today(),
            "signed_by": "Ana Rivera",
            "signer_role": "patient",
        },
    )
    assert saved.status_code == 303, saved.text
    other = make_token(sessions, world.email("nurse_b"), "user/*.rs")
    assert client.get(f"/fhir/Patient/{world.patient_a}", headers=auth(other)).status_code == 200
    with sessions() as db:
        consent_id = db.scalars(select(ConsentRow.id)).one()
    ended = client.post(
        f"/patients/{world.patient_a}/consents/{consent_id}/ended", data={"csrf_token": csrf}
    )
    assert ended.status_code == 303
    assert (
        "Ended (its expiry event happened)"
        in client.get(f"/patients/{world.patient_a}/consents").text
    )
    assert client.get(f"/fhir/Patient/{world.patient_a}", headers=auth(other)).status_code == 403
    nurse = make_token(sessions, world.email("nurse"), "user/*.rs")
    resource = client.get(f"/fhir/Consent/{consent_id}", headers=auth(nurse)).json()
    assert any(e["url"].endswith("consent-ended") for e in resource["extension"])
