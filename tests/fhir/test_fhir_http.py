"""FHIR HTTP behaviour a client relies on (issue 8, item 10): Location that resolves (vread),
conditional create, content negotiation, HTTP dates, 304, 405 with Allow, meta.security.
Raw HTTP through the real app, on SQLite and PostgreSQL."""

from __future__ import annotations

from email.utils import parsedate_to_datetime

from sqlalchemy import func, select, update

from tandem.storage.models import Patient
from tests.conftest import World, make_token

FHIR = {"Content-Type": "application/fhir+json"}


def nurse(sessions, world: World) -> dict[str, str]:  # type: ignore[no-untyped-def]
    token = make_token(sessions, world.email("nurse"), "user/Patient.cruds")
    return {"Authorization": f"Bearer {token}", **FHIR}


def test_the_location_of_a_create_can_be_read(client, sessions, world: World) -> None:
    headers = nurse(sessions, world)
    body = {"resourceType": "Patient", "name": [{"family": "Located"}]}
    created = client.post("/fhir/Patient", json=body, headers=headers)
    assert created.status_code == 201
    location = created.headers["location"].replace("https://testserver", "")
    read = client.get(location, headers=headers)
    assert read.status_code == 200, read.text
    assert read.json()["id"] == created.json()["id"]
    assert read.headers["etag"] == 'W/"1"'
    old = client.get(location.replace("_history/1", "_history/7"), headers=headers)
    assert old.status_code == 404 and old.json()["resourceType"] == "OperationOutcome"


def test_conditional_create_answers_the_existing_patient(client, sessions, world: World) -> None:
    headers = nurse(sessions, world)
    body = {"resourceType": "Patient", "name": [{"family": "Again"}]}

    def patients() -> int:
        with sessions() as db:
            return int(db.scalar(select(func.count()).select_from(Patient)))

    before = patients()
    existing = client.post(
        "/fhir/Patient", json=body, headers={**headers, "If-None-Exist": "identifier=ALP-1"}
    )
    assert existing.status_code == 200, existing.text
    assert existing.json()["id"] == world.patient_a
    several = client.post(
        "/fhir/Patient", json=body, headers={**headers, "If-None-Exist": "identifier=ALP-1,ALP-2"}
    )
    assert several.status_code == 412
    assert patients() == before
    new = client.post(
        "/fhir/Patient", json=body, headers={**headers, "If-None-Exist": "identifier=ALP-404"}
    )
    assert new.status_code == 201
    assert patients() == before + 1


def test_xml_and_unknown_formats_are_refused_with_406(client, sessions, world: World) -> None:
    headers = nurse(sessions, world)
    url = f"/fhir/Patient/{world.patient_a}"
    for response in (
        client.get(url, params={"_format": "xml"}, headers=headers),
        client.get(url, params={"_format": "application/fhir+xml"}, headers=headers),
        client.get(url, params={"_format": "turtle"}, headers=headers),
        client.get(url, headers={**headers, "Accept": "application/fhir+xml"}),
        client.get("/fhir/metadata", headers={"Accept": "application/xml"}),
    ):
        assert response.status_code == 406, response.text
        assert response.json()["resourceType"] == "OperationOutcome"
    for accept in ("application/fhir+json", "application/json", "*/*", "text/html, */*;q=0.8"):
        assert client.get(url, headers={**headers, "Accept": accept}).status_code == 200
    assert client.get(url, params={"_format": "json"}, headers=headers).status_code == 200


def test_last_modified_is_an_http_date_and_etags_give_304(client, sessions, world: World) -> None:
    headers = nurse(sessions, world)
    read = client.get(f"/fhir/Patient/{world.patient_a}", headers=headers)
    modified = parsedate_to_datetime(read.headers["last-modified"])
    assert read.headers["last-modified"].endswith(" GMT") and modified.tzinfo is not None
    again = client.get(
        f"/fhir/Patient/{world.patient_a}",
        headers={**headers, "If-None-Match": read.headers["etag"]},
    )
    assert again.status_code == 304 and again.content == b""
    with sessions.begin() as db:
        db.execute(update(Patient).where(Patient.id == world.patient_a).values(version_id=5))
    changed = client.get(
        f"/fhir/Patient/{world.patient_a}",
        headers={**headers, "If-None-Match": read.headers["etag"]},
    )
    assert changed.status_code == 200 and changed.headers["etag"] == 'W/"5"'


def test_method_not_allowed_says_what_is(client, sessions, world: World) -> None:
    headers = nurse(sessions, world)
    response = client.delete(f"/fhir/Patient/{world.patient_a}", headers=headers)
    assert response.status_code == 405
    assert set(response.headers["allow"].replace(" ", "").split(",")) >= {"GET", "PUT"}
    assert response.json()["resourceType"] == "OperationOutcome"


def test_the_synthetic_marker_is_a_security_label(client, sessions, world: World) -> None:
    headers = nurse(sessions, world)
    with sessions.begin() as db:
        db.execute(update(Patient).where(Patient.id == world.patient_a).values(synthetic=True))
    meta = client.get(f"/fhir/Patient/{world.patient_a}", headers=headers).json()["meta"]
    assert "tag" not in meta
    assert [c["code"] for c in meta["security"]] == ["HTEST"]


def test_audit_events_page_by_a_stable_key(client, sessions, world: World) -> None:
    nurse_headers = nurse(sessions, world)
    for _ in range(3):
        client.get(f"/fhir/Patient/{world.patient_a}", headers=nurse_headers)
    admin = make_token(sessions, world.email("admin"), "user/AuditEvent.rs")
    headers = {"Authorization": f"Bearer {admin}"}
    url = f"/fhir/AuditEvent?patient={world.patient_a}&_count=1"
    seen: list[str] = []
    while url:
        bundle = client.get(url, headers=headers).json()
        seen += [e["resource"]["id"] for e in bundle["entry"]]
        assert all("lastUpdated" in e["resource"]["meta"] for e in bundle["entry"])
        # Reads between pages add newer entries: offset paging would repeat rows.
        client.get(f"/fhir/Patient/{world.patient_a}", headers=nurse_headers)
        nxt = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        url = nxt[0].replace("https://testserver", "") if nxt else ""
    assert len(seen) == len(set(seen)) >= 3


def test_every_declared_search_parameter_is_served_and_no_other(
    client, sessions, world: World
) -> None:
    """The CapabilityStatement claims nothing the server refuses, and the server takes
    nothing it does not declare."""
    nurse_token = make_token(sessions, world.email("nurse"), "user/*.rs")
    admin_token = make_token(sessions, world.email("admin"), "user/AuditEvent.rs")
    statement = client.get("/fhir/metadata").json()
    values = {
        "reference": f"Patient/{world.patient_a}",
        "date": "2020",
        "token": "x",
        "string": "x",
        "number": "1",
        "uri": "https://example.org/fhir/Questionnaire/x",
    }
    special = {"_summary": "count", "_sort": "_id", "_cursor": None}
    for resource in statement["rest"][0]["resource"]:
        if "search-type" not in {i["code"] for i in resource["interaction"]}:
            continue
        token = admin_token if resource["type"] == "AuditEvent" else nurse_token
        headers = {"Authorization": f"Bearer {token}"}
        for param in resource.get("searchParam", []):
            value = special.get(param["name"], values[param["type"]])
            if value is None:
                continue
            response = client.get(
                f"/fhir/{resource['type']}", params={param["name"]: value}, headers=headers
            )
            assert response.status_code < 500, response.text
            assert "unknown search parameter" not in response.text, (resource["type"], param)
        undeclared = client.get(f"/fhir/{resource['type']}?colour=blue", headers=headers)
        assert undeclared.status_code == 400 and "colour" in undeclared.text
