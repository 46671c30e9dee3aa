"""An off-the-shelf FHIR client (SMART on FHIR's `fhirclient`) against a live Tandem over HTTP.

Uvicorn serves the app on a free loopback port; the client holds a bearer token made the way
`tandem token create` makes one. Runs on SQLite and on PostgreSQL (see `database_url`).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fhirclient.models.humanname import HumanName
from fhirclient.models.identifier import Identifier
from fhirclient.models.patient import Patient
from fhirclient.server import FHIRPermissionDeniedException, FHIRServer, FHIRUnauthorizedException
from sqlalchemy import func, select

from tandem.access import accounts
from tandem.access.credentials import create_token
from tandem.settings import Settings
from tandem.storage.db import make_engine, make_sessionmaker, session_scope, utcnow
from tandem.storage.models import Patient as PatientRow

LAB_SYSTEM = "urn:oid:2.16.840.1.113883.19.5"  # the reference lab's own patient numbers


@dataclass
class Live:
    base: str  # the FHIR base URL
    token: str
    read_only_token: str
    database_url: str


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def live(database_url: str) -> Iterator[Live]:
    import uvicorn

    from tandem.web.app import create_app

    engine = make_engine(database_url)
    with session_scope(make_sessionmaker(engine)) as db:
        program = accounts.create_program(
            db, "lakeside", "Lakeside Detox", time_zone="America/Chicago"
        )
        accounts.add_unit(db, program, "detox", "Detox unit", "detox")
        nurse = accounts.create_user(
            db, "nurse@lakeside.example", "Nora Nurse", "nurse", "nurse-password-123", [program.id]
        )
        token, _ = create_token(db, nurse, ["user/Patient.cruds"], "fhirclient test", utcnow())
        read_only, _ = create_token(
            db, nurse, ["user/Patient.rs"], "fhirclient read-only", utcnow()
        )
    engine.dispose()

    app = create_app(Settings(database_url=database_url, cookie_secure=True))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield Live(f"http://127.0.0.1:{port}/fhir", token, read_only, database_url)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        app.state.engine.dispose()


def client(live: Live, token: str | None) -> FHIRServer:
    """fhirclient's server object, holding the bearer token as its OAuth2 access token."""
    state = {
        "base_uri": live.base + "/",
        "auth_type": "oauth2" if token else "none",
        "auth": {"access_token": token} if token else None,
    }
    return FHIRServer(None, state=state)


def new_patient(
    family: str, given: str, mrn: str | None = None, lab_id: str | None = None
) -> Patient:
    patient = Patient()
    name = HumanName()
    name.family, name.given, name.use = family, [given], "official"
    patient.name = [name]
    patient.gender = "female"
    patient.identifier = []
    if mrn:
        ident = Identifier()
        ident.value = mrn  # no system: the program's MRN
        patient.identifier.append(ident)
    if lab_id:
        ident = Identifier()
        ident.system, ident.value = LAB_SYSTEM, lab_id
        patient.identifier.append(ident)
    return patient


def ids(found: Iterator[Patient]) -> list[str]:
    return [p.id for p in found]


def patient_count(database_url: str) -> int:
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(PatientRow)).scalar_one())
    finally:
        engine.dispose()


def test_fhirclient_creates_a_patient_and_finds_it_by_name_and_identifier(live: Live) -> None:
    server = client(live, live.token)

    # The lab happens to number her with the same value as her MRN: still one patient in searches.
    created = new_patient("Okonkwo", "Adaeze", mrn="LAKE-0001", lab_id="LAKE-0001").create(server)

    assert created["resourceType"] == "Patient"
    patient_id = created["id"]
    systems = sorted(i["system"] for i in created["identifier"] if i["value"] == "LAKE-0001")
    assert systems == sorted(["urn:tandem:program:lakeside:mrn", LAB_SYSTEM])
    mrn = {"system": "urn:tandem:program:lakeside:mrn"}

    read = Patient.read(patient_id, server)
    assert (read.name[0].family, read.name[0].given) == ("Okonkwo", ["Adaeze"])

    assert ids(Patient.where({"name": "Okonkwo"}).perform_resources_iter(server)) == [patient_id]
    assert ids(Patient.where({"name": "adaeze"}).perform_resources_iter(server)) == [patient_id]
    assert ids(Patient.where({"identifier": "LAKE-0001"}).perform_resources_iter(server)) == [
        patient_id
    ]
    system_and_value = f"{mrn['system']}|LAKE-0001"
    assert ids(Patient.where({"identifier": system_and_value}).perform_resources_iter(server)) == [
        patient_id
    ]
    lab = f"{LAB_SYSTEM}|LAKE-0001"
    assert ids(Patient.where({"identifier": lab}).perform_resources_iter(server)) == [patient_id]
    assert ids(Patient.where({"name": "Nobody"}).perform_resources_iter(server)) == []


def test_fhirclient_follows_next_links_through_every_page(live: Live) -> None:
    server = client(live, live.token)
    made = {new_patient("Pagewalker", f"Kid{i}").create(server)["id"] for i in range(5)}

    pages = list(Patient.where({"name": "pagewalker", "_count": "2"}).perform_iter(server))

    assert [len(page.entry or []) for page in pages] == [2, 2, 1]
    assert {entry.resource.id for page in pages for entry in page.entry or []} == made


def test_a_client_without_a_token_is_refused_and_creates_nothing(live: Live) -> None:
    anonymous = client(live, None)
    before = patient_count(live.database_url)

    with pytest.raises(FHIRUnauthorizedException) as refused:
        new_patient("Intruder", "Ivan").create(anonymous)
    assert refused.value.response.json()["resourceType"] == "OperationOutcome"
    assert "Bearer" in refused.value.response.headers["WWW-Authenticate"]
    with pytest.raises(FHIRUnauthorizedException):
        list(Patient.where({"name": "Okonkwo"}).perform_resources_iter(anonymous))

    assert patient_count(live.database_url) == before


def test_a_client_with_a_wrong_or_read_only_token_cannot_create(live: Live) -> None:
    with pytest.raises(FHIRUnauthorizedException):
        new_patient("Guess", "Gus").create(client(live, "tdm_not-a-real-token"))

    reader = client(live, live.read_only_token)
    with pytest.raises(FHIRPermissionDeniedException) as refused:
        new_patient("Reader", "Rita").create(reader)
    assert refused.value.response.status_code == 403
    assert list(Patient.where({"name": "Reader"}).perform_resources_iter(reader)) == []
