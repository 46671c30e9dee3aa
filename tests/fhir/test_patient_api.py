"""FHIR Patient API on SQLite and PostgreSQL: create, read, update, search, paging, refusals."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from tandem.storage.models import AuditEntry, Patient
from tests.conftest import World, make_token

FHIR = {"Content-Type": "application/fhir+json"}


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **FHIR}


def new_patient(family: str = "Garcia", given: str = "Lucia", **extra: object) -> dict:
    return {
        "resourceType": "Patient",
        "name": [{"family": family, "given": [given]}],
        "gender": "female",
        "birthDate": "1990-04-02",
        **extra,
    }


def count_patients(sessions) -> int:  # type: ignore[no-untyped-def]
    with sessions() as db:
        return db.scalar(select(func.count()).select_from(Patient))


def test_create_read_update_search(client, sessions, world: World) -> None:
    token = make_token(sessions, world.email("nurse"), "user/Patient.cruds")
    created = client.post("/fhir/Patient", json=new_patient(), headers=auth(token))
    assert created.status_code == 201, created.text
    assert created.headers["content-type"].startswith("application/fhir+json")
    body = created.json()
    assert body["meta"]["versionId"] == "1"
    assert created.headers["location"].endswith(f"/fhir/Patient/{body['id']}/_history/1")
    assert body["managingOrganization"]["reference"] == f"Organization/{world.program_a}"
    assert body["identifier"][0]["system"] == "urn:tandem:program:alpha:mrn"

    read = client.get(f"/fhir/Patient/{body['id']}", headers=auth(token))
    assert read.status_code == 200
    assert read.json()["name"][0]["family"] == "Garcia"
    assert read.headers["etag"] == 'W/"1"'

    changed = dict(read.json())
    changed["birthDate"] = "1991-05-06"
    updated = client.put(
        f"/fhir/Patient/{body['id']}", json=changed, headers={**auth(token), "If-Match": 'W/"1"'}
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["meta"]["versionId"] == "2"
    stale = client.put(
        f"/fhir/Patient/{body['id']}", json=changed, headers={**auth(token), "If-Match": 'W/"1"'}
    )
    assert stale.status_code == 412
    assert stale.json()["resourceType"] == "OperationOutcome"

    found = client.get("/fhir/Patient", params={"name": "garc"}, headers=auth(token)).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [body["id"]]
    by_mrn = client.get("/fhir/Patient", params={"identifier": "ALP-2"}, headers=auth(token)).json()
    assert [e["resource"]["id"] for e in by_mrn["entry"]] == [world.patient_a2]
    by_birth = client.get(
        "/fhir/Patient", params={"birthdate": "ge1991-01-01"}, headers=auth(token)
    ).json()
    assert [e["resource"]["id"] for e in by_birth["entry"]] == [body["id"]]


def test_search_pages_with_next_links_and_never_shows_other_programs(
    client, sessions, world: World
) -> None:
    token = make_token(sessions, world.email("nurse"), "user/Patient.cruds")
    for i in range(5):
        assert (
            client.post(
                "/fhir/Patient", json=new_patient("Pagetest", f"P{i}"), headers=auth(token)
            ).status_code
            == 201
        )
    seen: list[str] = []
    url = "/fhir/Patient?name=pagetest&_count=2"
    while url:
        bundle = client.get(url, headers=auth(token)).json()
        seen += [e["resource"]["id"] for e in bundle["entry"]]
        nxt = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        url = nxt[0].replace("https://testserver", "") if nxt else ""
    assert len(seen) == 5 and len(set(seen)) == 5
    everyone = client.get("/fhir/Patient?_count=200", headers=auth(token)).json()
    ids = {e["resource"]["id"] for e in everyone["entry"]}
    assert world.patient_b not in ids and world.patient_a in ids


@pytest.mark.parametrize(
    ("body", "status", "expression"),
    [
        (new_patient(birthDate="1990-13-01"), 422, "Patient.birthDate"),
        (new_patient(gender="robot"), 422, "Patient.gender"),
        (new_patient(maritalStatus={"text": "single"}), 422, "Patient.maritalStatus"),
        (new_patient(birthDate="2999-01-01"), 422, "birthDate"),
        ({"resourceType": "Observation"}, 400, "Patient"),
        ({"resourceType": "Patient", "name": [{"family": ""}]}, 422, "name"),
    ],
)
def test_bad_patients_are_refused_with_an_outcome_and_nothing_stored(
    client, sessions, world, body, status, expression
) -> None:
    token = make_token(sessions, world.email("nurse"), "user/Patient.cruds")
    before = count_patients(sessions)
    response = client.post("/fhir/Patient", json=body, headers=auth(token))
    assert response.status_code == status, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert any(
        expression in " ".join(i.get("expression", [])) + i["diagnostics"] for i in outcome["issue"]
    )
    assert count_patients(sessions) == before


def test_not_json_and_unknown_search_parameters(client, sessions, world: World) -> None:
    token = make_token(sessions, world.email("nurse"), "user/Patient.cruds")
    broken = client.post("/fhir/Patient", content=b"{not json", headers=auth(token))
    assert broken.status_code == 400 and broken.json()["resourceType"] == "OperationOutcome"
    unknown = client.get("/fhir/Patient?colour=blue", headers=auth(token))
    assert unknown.status_code == 400 and "colour" in unknown.text
    bad_count = client.get("/fhir/Patient?_count=0", headers=auth(token))
    assert bad_count.status_code == 400
    missing = client.get("/fhir/Patient/no-such-id", headers=auth(token))
    assert missing.status_code == 404 and missing.json()["issue"][0]["code"] == "not-found"


def test_token_needs_the_scope(client, sessions, world: World) -> None:
    read_only = make_token(sessions, world.email("nurse"), "user/Patient.rs")
    response = client.post("/fhir/Patient", json=new_patient(), headers=auth(read_only))
    assert response.status_code == 403
    assert "user/Patient.c" in response.json()["issue"][0]["diagnostics"]
    observation_only = make_token(sessions, world.email("nurse"), "user/Observation.rs")
    assert (
        client.get(f"/fhir/Patient/{world.patient_a}", headers=auth(observation_only)).status_code
        == 403
    )
    assert (
        client.get(f"/fhir/Patient/{world.patient_a}", headers=auth(read_only)).status_code == 200
    )


def test_missing_unknown_and_revoked_tokens_are_refused(client, sessions, world: World) -> None:
    from tandem.access.credentials import revoke_token
    from tandem.storage.db import session_scope, utcnow

    assert client.get("/fhir/Patient").status_code == 401
    assert client.get("/fhir/Patient", headers=auth("tdm_nonsense")).status_code == 401
    token = make_token(sessions, world.email("nurse"), "user/*.cruds")
    assert client.get("/fhir/Patient", headers=auth(token)).status_code == 200
    with session_scope(sessions) as db:
        revoke_token(db, token, utcnow())
    refused = client.get("/fhir/Patient", headers=auth(token))
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer")


def test_a_patient_reads_only_their_own_record(client, sessions, world: World) -> None:
    token = make_token(sessions, world.email("patient"), "patient/*.rs")
    assert client.get(f"/fhir/Patient/{world.patient_a}", headers=auth(token)).status_code == 200
    other = client.get(f"/fhir/Patient/{world.patient_a2}", headers=auth(token))
    assert other.status_code == 403
    listed = client.get("/fhir/Patient", headers=auth(token)).json()
    assert [e["resource"]["id"] for e in listed["entry"]] == [world.patient_a]


def test_other_programs_patient_is_refused(client, sessions, world: World) -> None:
    token = make_token(sessions, world.email("nurse"), "user/*.cruds")
    assert client.get(f"/fhir/Patient/{world.patient_b}", headers=auth(token)).status_code == 403
    changed = {"resourceType": "Patient", "id": world.patient_b, "name": [{"family": "Changed"}]}
    assert (
        client.put(
            f"/fhir/Patient/{world.patient_b}", json=changed, headers=auth(token)
        ).status_code
        == 403
    )
    with sessions() as db:
        assert db.get(Patient, world.patient_b).family == "Novak"


def test_every_read_and_refusal_is_audited(client, sessions, world: World) -> None:
    token = make_token(sessions, world.email("nurse"), "user/*.cruds")
    client.get(f"/fhir/Patient/{world.patient_a}", headers=auth(token))
    client.get(f"/fhir/Patient/{world.patient_b}", headers=auth(token))
    with sessions() as db:
        rows = db.scalars(select(AuditEntry).where(AuditEntry.operation == "read")).all()
    by_patient = {(r.patient_id, r.outcome) for r in rows}
    assert (world.patient_a, "0") in by_patient
    assert (world.patient_b, "4") in by_patient
    entry = next(r for r in rows if r.patient_id == world.patient_a)
    assert entry.actor == world.email("nurse") and entry.channel == "api" and entry.source_ip


def test_admins_read_the_audit_trail_as_audit_events(client, sessions, world: World) -> None:
    nurse = make_token(sessions, world.email("nurse"), "user/*.cruds")
    client.get(f"/fhir/Patient/{world.patient_a}", headers=auth(nurse))
    assert client.get("/fhir/AuditEvent", headers=auth(nurse)).status_code == 403
    admin = make_token(sessions, world.email("admin"), "user/AuditEvent.rs")
    bundle = client.get(f"/fhir/AuditEvent?patient=Patient/{world.patient_a}", headers=auth(admin))
    assert bundle.status_code == 200, bundle.text
    events = [e["resource"] for e in bundle.json()["entry"]]
    assert events and all(e["resourceType"] == "AuditEvent" for e in events)
    assert events[0]["entity"][0]["what"]["reference"] == f"Patient/{world.patient_a}"
    assert events[0]["agent"][0]["who"]["display"] == world.email("nurse")
    # No route changes or deletes an audit entry.
    event_id = events[0]["id"]
    assert client.delete(f"/fhir/AuditEvent/{event_id}", headers=auth(admin)).status_code in (
        404,
        405,
    )
    assert client.put(
        f"/fhir/AuditEvent/{event_id}", json=events[0], headers=auth(admin)
    ).status_code in (404, 405)


def test_capability_statement_lists_only_what_works(client) -> None:
    statement = client.get("/fhir/metadata").json()
    resources = {r["type"]: r for r in statement["rest"][0]["resource"]}
    assert {"read", "vread", "create", "update", "search-type"} == {
        i["code"] for i in resources["Patient"]["interaction"]
    }
    assert {"name", "identifier", "birthdate"} <= {
        p["name"] for p in resources["Patient"]["searchParam"]
    }
    assert "delete" not in {i["code"] for r in resources.values() for i in r["interaction"]}


def test_name_search_matches_the_start_of_any_part_of_the_name(
    client, sessions, world: World
) -> None:
    token = make_token(sessions, world.email("nurse"), "user/Patient.cruds")
    body = {
        "resourceType": "Patient",
        "name": [{"family": "Garcia-Lopez", "given": ["Ana", "Maria"]}],
    }
    created = client.post("/fhir/Patient", json=body, headers=auth(token)).json()["id"]
    renamed = client.put(
        f"/fhir/Patient/{world.patient_a2}",
        headers=auth(token),
        json={
            "resourceType": "Patient",
            "id": world.patient_a2,
            "name": [{"family": "Okafor", "given": ["Mariam"]}],
        },
    )
    assert renamed.status_code == 200

    def names(query: str) -> set[str]:
        bundle = client.get("/fhir/Patient", params={"name": query}, headers=auth(token)).json()
        return {e["resource"]["id"] for e in bundle.get("entry", [])}

    assert names("mari") == {
        created,
        world.patient_a2,
    }  # a middle given name, and a renamed patient
    assert names("LOPEZ") == {created}  # the second part of a hyphenated family name
    assert names("ana gar") == {created}  # every word must match
    assert names("kofi") == set()  # the old given name no longer matches after the update
    assert names("novak") == set()  # another program's patient never appears


def test_a_patient_with_given_names_only_comes_back_as_valid_fhir(
    client, sessions, world: World
) -> None:
    """Found by the fuzz test: a null family name was stored, then sent back as `family: ""`."""
    from fhir.resources.R4B.patient import Patient as FhirPatient

    token = make_token(sessions, world.email("nurse"), "user/Patient.cruds")
    body = {"resourceType": "Patient", "name": [{"family": None, "given": ["Zed"]}]}
    created = client.post("/fhir/Patient", json=body, headers=auth(token))
    assert created.status_code == 201, created.text
    resource = created.json()
    assert "family" not in resource["name"][0] and resource["name"][0]["given"] == ["Zed"]
    FhirPatient.model_validate(resource)
    read = client.get(f"/fhir/Patient/{resource['id']}", headers=auth(token))
    assert read.status_code == 200
    FhirPatient.model_validate(read.json())
