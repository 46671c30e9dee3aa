"""The FHIR round trip of a self-report scale with an off-the-shelf client (SMART on FHIR's
`fhirclient`) against a live Tandem over HTTP, on SQLite and PostgreSQL: the client reads the
PHQ-9 Questionnaire, answers it from the Questionnaire's own answer options, posts the
QuestionnaireResponse, reads it back, finds it by patient and questionnaire, and finds the total
as an Observation by its LOINC code. An impossible answer and another patient's record are
refused and nothing is stored."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests
from fhirclient.models.coding import Coding
from fhirclient.models.fhirreference import FHIRReference
from fhirclient.models.observation import Observation
from fhirclient.models.questionnaire import Questionnaire
from fhirclient.models.questionnaireresponse import (
    QuestionnaireResponse,
    QuestionnaireResponseItem,
    QuestionnaireResponseItemAnswer,
)
from fhirclient.server import FHIRPermissionDeniedException, FHIRServer
from sqlalchemy import func, select

from tandem.access import accounts
from tandem.access.credentials import create_token
from tandem.alerts.models import Alert
from tandem.recovery.storage import QuestionnaireResponseRow
from tandem.settings import Settings
from tandem.storage.db import make_engine, make_sessionmaker, session_scope, utcnow
from tandem.storage.models import Patient as PatientRow


@dataclass
class Live:
    base: str
    counselor: str  # tokens
    patient: str
    patient_id: str
    other_patient_id: str
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
            db, "harbor", "Harbor Recovery", time_zone="America/Chicago"
        )
        people = []
        for family in ("Mendes", "Olsen"):
            row = PatientRow(
                program_id=program.id,
                family=family,
                given="Sam",
                family_lower=family.lower(),
                given_lower="sam",
            )
            db.add(row)
            people.append(row)
        db.flush()
        counselor = accounts.create_user(
            db,
            "c@harbor.example",
            "Cora Counselor",
            "counselor",
            "counselor-pw-12345",
            [program.id],
        )
        me = accounts.create_user(
            db,
            "p@harbor.example",
            "Sam Mendes",
            "patient",
            "patient-pw-123456",
            [program.id],
            people[0].id,
        )
        counselor_token, _ = create_token(db, counselor, ["user/*.cruds"], "fhirclient", utcnow())
        patient_token, _ = create_token(db, me, ["patient/*.cruds"], "fhirclient", utcnow())
        ids = (people[0].id, people[1].id)
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
        yield Live(
            f"http://127.0.0.1:{port}/fhir",
            counselor_token,
            patient_token,
            ids[0],
            ids[1],
            database_url,
        )
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        app.state.engine.dispose()


def fhir(live: Live, token: str) -> FHIRServer:
    return FHIRServer(
        None,
        state={"base_uri": live.base + "/", "auth_type": "oauth2", "auth": {"access_token": token}},
    )


def stored(database_url: str) -> tuple[int, int]:
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            return (
                int(
                    conn.execute(
                        select(func.count()).select_from(QuestionnaireResponseRow)
                    ).scalar_one()
                ),
                int(conn.execute(select(func.count()).select_from(Alert)).scalar_one()),
            )
    finally:
        engine.dispose()


def answered(
    questionnaire: Questionnaire, patient_id: str, pick: dict[str, str]
) -> QuestionnaireResponse:
    """A response built from the Questionnaire's own answer options (`pick`: linkId -> code;
    other items take their first option)."""
    response = QuestionnaireResponse()
    response.status = "completed"
    response.questionnaire = questionnaire.url
    subject = FHIRReference()
    subject.reference = f"Patient/{patient_id}"
    response.subject = subject
    response.item = []
    for item in questionnaire.item or []:
        options = {o.valueCoding.code: o.valueCoding for o in item.answerOption or []}
        code = pick.get(item.linkId, next(iter(options)))
        chosen = options.get(code)
        if chosen is None:  # an impossible answer, not among the options
            chosen = Coding()
            chosen.code = code
        answer = QuestionnaireResponseItemAnswer()
        answer.valueCoding = chosen
        entry = QuestionnaireResponseItem()
        entry.linkId = item.linkId
        entry.answer = [answer]
        response.item.append(entry)
    return response


def test_fhirclient_round_trip_of_a_phq9(live: Live) -> None:
    server = fhir(live, live.counselor)
    phq9 = Questionnaire.read("phq9", server)
    assert phq9.status == "active" and len(phq9.item or []) == 9

    created = answered(phq9, live.patient_id, {"sleep": "2", "tired_energy": "3"}).create(server)
    assert created["resourceType"] == "QuestionnaireResponse" and created["id"].startswith("scale-")

    read = QuestionnaireResponse.read(created["id"], server)
    assert read.subject.reference == f"Patient/{live.patient_id}"
    assert {i.linkId: i.answer[0].valueCoding.code for i in read.item}["tired_energy"] == "3"

    found = QuestionnaireResponse.where(
        {"patient": live.patient_id, "questionnaire": "Questionnaire/phq9"}
    ).perform_resources(server)
    assert [r.id for r in found] == [created["id"]]
    totals = Observation.where(
        {"patient": live.patient_id, "code": "http://loinc.org|44261-6"}
    ).perform_resources(server)
    assert [(o.valueInteger, o.id) for o in totals] == [(5, created["id"])]
    assert stored(live.database_url) == (1, 0)


def test_fhirclient_patient_answers_their_own_item9_and_the_team_is_alerted(live: Live) -> None:
    server = fhir(live, live.patient)
    phq9 = Questionnaire.read("phq9", server)
    created = answered(phq9, live.patient_id, {"self_harm_thoughts": "1"}).create(server)
    assert {"code": "urgent"}.items() <= created["meta"]["tag"][0].items()
    assert stored(live.database_url) == (1, 1)


def test_fhirclient_impossible_answer_and_another_patient_are_refused_nothing_stored(
    live: Live,
) -> None:
    counselor = fhir(live, live.counselor)
    pacs = Questionnaire.read("pacs", counselor)
    assert pacs.status == "draft"  # items 2-5 not checked against the printed form
    with pytest.raises(requests.HTTPError) as refused:
        answered(pacs, live.patient_id, {"overall": "7"}).create(counselor)
    assert refused.value.response.status_code == 422
    assert "overall" in refused.value.response.json()["issue"][0]["expression"][0]

    patient = fhir(live, live.patient)
    phq9 = Questionnaire.read("phq9", patient)
    with pytest.raises(FHIRPermissionDeniedException):
        answered(phq9, live.other_patient_id, {"self_harm_thoughts": "2"}).create(patient)
    assert stored(live.database_url) == (0, 0)
