"""Patient searches integrators expect (issue 8, items 10-11): US Core parameters, partial
dates, _sort, _summary=count, _count capped, keyset next links that neither repeat nor skip
while patients are written. Raw HTTP through the real app, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update

from tandem.storage.models import Patient
from tests.conftest import World, make_token

FHIR = {"Content-Type": "application/fhir+json"}


def nurse(sessions, world: World) -> dict[str, str]:  # type: ignore[no-untyped-def]
    token = make_token(sessions, world.email("nurse"), "user/Patient.cruds")
    return {"Authorization": f"Bearer {token}", **FHIR}


def make(client, headers, family: str, given: str, **extra: Any) -> str:  # type: ignore[no-untyped-def]
    body = {"resourceType": "Patient", "name": [{"family": family, "given": [given]}], **extra}
    response = client.post("/fhir/Patient", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def test_us_core_parameters_and_partial_dates(client, sessions, world: World) -> None:
    headers = nurse(sessions, world)
    may = make(client, headers, "Searle", "Maya", gender="female", birthDate="1984-05-17")
    june = make(client, headers, "Searle", "Jonah", gender="male", birthDate="1984-06-02")
    other = make(client, headers, "Searby", "Maya", gender="female", birthDate="1990-01-09")

    def found(query: str) -> set[str]:
        response = client.get(f"/fhir/Patient?{query}", headers=headers)
        assert response.status_code == 200, response.text
        return {e["resource"]["id"] for e in response.json().get("entry", [])}

    assert found("family=searle") == {may, june}
    assert found("family=sear&given=maya") == {may, other}
    assert found("given=jon") == {june}
    assert found("family=sear&gender=male") == {june}
    assert found("family=sear&gender=male,female") == {may, june, other}
    assert found(f"_id={may},{other}") == {may, other}
    assert found("family=sear&birthdate=1984") == {may, june}
    assert found("family=sear&birthdate=1984-05") == {may}
    assert found("family=sear&birthdate=ge1984-06") == {june, other}
    assert found("family=sear&birthdate=lt1984-06") == {may}
    with sessions.begin() as db:
        db.execute(update(Patient).where(Patient.id == other).values(version_id=2))
    assert may in found("_lastUpdated=ge2000")
    assert found("family=sear&_lastUpdated=lt2000") == set()
    bad = client.get("/fhir/Patient?gender=robot", headers=headers)
    assert bad.status_code == 400 and "gender" in bad.text


def test_sort_summary_count_and_count_cap(client, sessions, world: World) -> None:
    headers = nurse(sessions, world)
    make(client, headers, "Sortb", "A", birthDate="1970-01-01")
    make(client, headers, "Sorta", "B", birthDate="1980-01-01")
    make(client, headers, "Sortc", "C")

    def families(query: str) -> list[str]:
        response = client.get(f"/fhir/Patient?family=sort&{query}", headers=headers)
        assert response.status_code == 200, response.text
        return [e["resource"]["name"][0]["family"] for e in response.json()["entry"]]

    assert families("_sort=family") == ["Sorta", "Sortb", "Sortc"]
    assert families("_sort=-family") == ["Sortc", "Sortb", "Sorta"]
    assert families("_sort=birthdate") == ["Sortb", "Sorta", "Sortc"]  # no date last
    assert families("_sort=-birthdate") == ["Sorta", "Sortb", "Sortc"]
    assert len(families("_sort=-_lastUpdated")) == 3
    refused = client.get("/fhir/Patient?_sort=colour", headers=headers)
    assert refused.status_code == 400 and "_sort" in refused.text

    total = client.get("/fhir/Patient?family=sort&_summary=count", headers=headers).json()
    assert total == {"resourceType": "Bundle", "type": "searchset", "total": 3}
    everyone = client.get("/fhir/Patient?_summary=count", headers=headers).json()
    assert everyone["total"] == 5  # alpha's two and these three; never bravo's patient

    capped = client.get("/fhir/Patient?_count=100000", headers=headers)
    assert capped.status_code == 200, capped.text
    assert "_count=200" in capped.json()["link"][0]["url"]


def test_next_links_neither_repeat_nor_skip_while_patients_are_added(
    client, sessions, world: World
) -> None:
    headers = nurse(sessions, world)
    first = [make(client, headers, "Crawl", f"K{i}") for i in range(6)]
    seen: list[str] = []
    url = "/fhir/Patient?family=crawl&_count=2"
    pages = 0
    while url:
        bundle = client.get(url, headers=headers).json()
        seen += [e["resource"]["id"] for e in bundle["entry"]]
        pages += 1
        if pages == 1:  # written between pages: sorted before everything seen so far
            make(client, headers, "Crawl", "A0")
        nxt = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        url = nxt[0].replace("https://testserver", "") if nxt else ""
    assert len(seen) == len(set(seen))  # nothing twice
    assert set(first) <= set(seen)  # nothing skipped
    broken = client.get("/fhir/Patient?_cursor=not-a-token", headers=headers)
    assert broken.status_code == 400 and "_cursor" in broken.text
