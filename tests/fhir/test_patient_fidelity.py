"""FHIR Patient answers that never mislead (issue 8, items 7-9): what a client sends is stored
as sent or refused by name; an update keeps what Tandem issued; searches combine values the
FHIR way. Raw HTTP through the real app, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from tandem.storage.models import Patient, PatientIdentifier
from tests.conftest import World, make_token

FHIR = {"Content-Type": "application/fhir+json"}
MRN_A = "urn:tandem:program:alpha:mrn"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **FHIR}


def nurse(sessions, world: World) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return auth(make_token(sessions, world.email("nurse"), "user/Patient.cruds"))


def identifiers(sessions, patient_id: str) -> set[tuple[str, str]]:  # type: ignore[no-untyped-def]
    with sessions() as db:
        rows = db.scalars(
            select(PatientIdentifier).where(PatientIdentifier.patient_id == patient_id)
        ).all()
        return {(r.system, r.value) for r in rows}


def outcome_names(response: Any, path: str) -> bool:
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome", response.text
    return any(
        path in " ".join(i.get("expression", [])) + " " + i.get("diagnostics", "")
        for i in outcome["issue"]
    )


# --- 7. an update keeps the MRN and the program, or is refused by name ---------------------


def test_put_without_identifier_keeps_the_mrn(client, sessions, world: World) -> None:
    headers = nurse(sessions, world)
    body = {"resourceType": "Patient", "id": world.patient_a, "name": [{"family": "Rivera"}]}
    response = client.put(f"/fhir/Patient/{world.patient_a}", json=body, headers=headers)
    assert response.status_code == 200, response.text
    assert identifiers(sessions, world.patient_a) == {(MRN_A, "ALP-1")}
    assert [(i["system"], i["value"]) for i in response.json()["identifier"]] == [(MRN_A, "ALP-1")]


def test_put_that_drops_or_changes_the_mrn_is_refused(client, sessions, world: World) -> None:
    headers = nurse(sessions, world)
    url = f"/fhir/Patient/{world.patient_a}"
    base = {"resourceType": "Patient", "id": world.patient_a, "name": [{"family": "Rivera"}]}
    other = {"system": "urn:oid:2.16.840.1.113883.19.5", "value": "LAB-7"}
    for sent in ([], [other], [{"system": MRN_A, "value": "ALP-99"}]):
        response = client.put(url, json={**base, "identifier": sent}, headers=headers)
        assert response.status_code == 422, response.text
        assert outcome_names(response, "Patient.identifier")
    assert identifiers(sessions, world.patient_a) == {(MRN_A, "ALP-1")}
    kept = client.put(
        url,
        json={**base, "identifier": [{"system": MRN_A, "value": "ALP-1"}, other]},
        headers=headers,
    )
    assert kept.status_code == 200, kept.text
    assert identifiers(sessions, world.patient_a) == {(MRN_A, "ALP-1"), (other["system"], "LAB-7")}


def test_put_moving_the_patient_to_another_program_is_refused(
    client, sessions, world: World
) -> None:
    headers = nurse(sessions, world)
    url = f"/fhir/Patient/{world.patient_a}"
    base = {"resourceType": "Patient", "id": world.patient_a, "name": [{"family": "Moved"}]}
    moved = {**base, "managingOrganization": {"reference": f"Organization/{world.program_b}"}}
    response = client.put(url, json=moved, headers=headers)
    assert response.status_code == 422, response.text
    assert outcome_names(response, "Patient.managingOrganization")
    with sessions() as db:
        row = db.get(Patient, world.patient_a)
        assert (row.program_id, row.family) == (world.program_a, "Rivera")
    same = {**base, "managingOrganization": {"reference": f"Organization/{world.program_a}"}}
    assert client.put(url, json=same, headers=headers).status_code == 200


# --- 9. what Tandem does not store is refused by its path, what it stores comes back as sent


@pytest.mark.parametrize(
    ("extra", "path"),
    [
        (
            {
                "text": {
                    "status": "generated",
                    "div": '<div xmlns="http://www.w3.org/1999/xhtml">x</div>',
                }
            },
            "Patient.text",
        ),
        ({"meta": {"tag": [{"system": "urn:x", "code": "vip"}]}}, "Patient.meta.tag"),
        (
            {"name": [{"family": "Allen", "given": ["Mary"], "prefix": ["Dr"]}]},
            "Patient.name.prefix",
        ),
        ({"name": [{"family": "Allen", "use": "nickname"}]}, "Patient.name.use"),
        (
            {"telecom": [{"system": "phone", "value": "555-0100", "use": "work"}]},
            "Patient.telecom.use",
        ),
        (
            {"identifier": [{"system": "urn:x", "value": "X1", "period": {"start": "2020-01-01"}}]},
            "Patient.identifier.period",
        ),
        (
            {"identifier": [{"system": "urn:x", "value": "X1", "type": {"text": "DL"}}]},
            "Patient.identifier.type",
        ),
        (
            {"name": [{"family": "Allen", "extension": [{"url": "urn:x", "valueString": "y"}]}]},
            "Patient.name.extension",
        ),
        ({"_birthDate": {"id": "b"}}, "Patient._birthDate"),
        ({"meta": {"security": [{"system": "urn:x", "code": "R"}]}}, "Patient.meta.security"),
    ],
)
def test_elements_not_stored_are_refused_by_path(
    client, sessions, world: World, extra: dict[str, Any], path: str
) -> None:
    body = {"resourceType": "Patient", "name": [{"family": "Allen"}], **extra}
    with sessions() as db:
        before = db.scalar(select(Patient.id).where(Patient.family == "Allen"))
    response = client.post("/fhir/Patient", json=body, headers=nurse(sessions, world))
    assert response.status_code == 422, response.text
    assert outcome_names(response, path)
    with sessions() as db:
        assert db.scalar(select(Patient.id).where(Patient.family == "Allen")) == before


def test_given_names_come_back_as_sent(client, sessions, world: World) -> None:
    headers = nurse(sessions, world)
    body = {"resourceType": "Patient", "name": [{"family": "Allen", "given": ["Mary Ann", "Jo"]}]}
    created = client.post("/fhir/Patient", json=body, headers=headers)
    assert created.status_code == 201, created.text
    assert created.json()["name"][0]["given"] == ["Mary Ann", "Jo"]
    read = client.get(f"/fhir/Patient/{created.json()['id']}", headers=headers).json()
    assert read["name"][0]["given"] == ["Mary Ann", "Jo"]
    found = client.get("/fhir/Patient", params={"name": "ann"}, headers=headers).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [read["id"]]


def test_other_identifiers_are_kept_as_themselves_not_as_mrns(
    client, sessions, world: World
) -> None:
    headers = nurse(sessions, world)
    lab = {"system": "urn:oid:2.16.840.1.113883.19.5", "value": "lab 0042/7"}
    body = {"resourceType": "Patient", "name": [{"family": "Allen"}], "identifier": [lab]}
    created = client.post("/fhir/Patient", json=body, headers=headers)
    assert created.status_code == 201, created.text  # not an MRN: not held to the MRN format
    sent_back = created.json()["identifier"]
    assert {"system": lab["system"], "value": lab["value"]} in sent_back
    (mrn,) = [i for i in sent_back if i["system"] == MRN_A]
    assert mrn["type"]["coding"][0]["code"] == "MR"
    other_program = {"system": "urn:tandem:program:bravo:mrn", "value": "BRA-77"}
    refused = client.post(
        "/fhir/Patient", json={**body, "identifier": [other_program]}, headers=headers
    )
    assert refused.status_code == 422 and outcome_names(refused, "Patient.identifier")
    two = [{"system": MRN_A, "value": "ALP-70"}, {"system": MRN_A, "value": "ALP-71"}]
    refused = client.post("/fhir/Patient", json={**body, "identifier": two}, headers=headers)
    assert refused.status_code == 422 and outcome_names(refused, "Patient.identifier")


def test_a_resource_read_can_be_sent_back_unchanged(client, sessions, world: World) -> None:
    headers = nurse(sessions, world)
    read = client.get(f"/fhir/Patient/{world.patient_a}", headers=headers).json()
    again = client.put(f"/fhir/Patient/{world.patient_a}", json=read, headers=headers)
    assert again.status_code == 200, again.text
    assert again.json()["identifier"] == read["identifier"]


# --- 8. repeated values AND, comma-separated values OR ------------------------------------


def test_repeated_search_values_and_comma_separated_values_or(
    client, sessions, world: World
) -> None:
    headers = nurse(sessions, world)
    made = {}
    for family, given in (("Allen", "Owen"), ("Allen", "Mary"), ("Owens", "Zed")):
        body = {"resourceType": "Patient", "name": [{"family": family, "given": [given]}]}
        made[given] = client.post("/fhir/Patient", json=body, headers=headers).json()["id"]

    def found(query: str) -> set[str]:
        response = client.get(f"/fhir/Patient?{query}", headers=headers)
        assert response.status_code == 200, response.text
        return {e["resource"]["id"] for e in response.json().get("entry", [])}

    assert found("name=Allen&name=Owen") == {made["Owen"]}
    assert found("name=Allen,zzzz") == {made["Owen"], made["Mary"]}
    assert found("name=zzzz,Zed") == {made["Zed"]}
    assert found("identifier=ALP-1,ALP-2") == {world.patient_a, world.patient_a2}
    assert found(f"identifier={MRN_A}|ALP-1,nosuch") == {world.patient_a}
    assert found("identifier=ALP-1&identifier=ALP-2") == set()
    assert found("name=rivera&identifier=ALP-1,ALP-2") == {world.patient_a}


def test_saving_the_edit_page_keeps_what_the_form_does_not_show(
    client, sessions, world: World
) -> None:
    from tests.conftest import sign_in

    headers = nurse(sessions, world)
    lab = {"system": "urn:oid:2.16.840.1.113883.19.5", "value": "LAB-9"}
    body = {
        "resourceType": "Patient",
        "name": [{"family": "Paged", "given": ["Mary Ann"]}],
        "identifier": [lab],
    }
    created = client.post("/fhir/Patient", json=body, headers=headers).json()
    (mrn,) = [i["value"] for i in created["identifier"] if i["system"] == MRN_A]
    csrf = sign_in(client, world.email("nurse"), world.passwords["nurse"])
    saved = client.post(
        f"/patients/{created['id']}/edit",
        data={
            "csrf_token": csrf,
            "family": "Paged",
            "given": "Mary Ann",
            "mrn": mrn,
            "gender": "female",
        },
    )
    assert saved.status_code == 303, saved.text[:500]
    read = client.get(f"/fhir/Patient/{created['id']}", headers=headers).json()
    assert read["name"][0]["given"] == ["Mary Ann"]
    assert read["gender"] == "female"
    assert {(i["system"], i["value"]) for i in read["identifier"]} == {
        (MRN_A, mrn),
        (lab["system"], "LAB-9"),
    }
