"""Ask a counselor, end to end on both engines: the public form and its protections, the
private link, crisis signals, the counselors' queue, a patient's own questions, and the FHIR
Communication and CommunicationRequest resources."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tandem.access import accounts
from tandem.alerts.models import Alert
from tandem.counseling.storage import MessageRow, NoteRow, QuestionRow
from tandem.settings import Settings
from tandem.storage.db import session_scope, utcnow
from tandem.storage.models import AnonymousRefusal, AuditEntry
from tests.conftest import World, csrf_from, make_token, sign_in

LINK = re.compile(r'href="(https://testserver/ask/t/[^"]+)"')


def ask(client: TestClient, world: World, **fields: str) -> tuple[int, str]:
    page = client.get("/ask")
    assert page.status_code == 200
    data = {"csrf_token": csrf_from(page.text), "program": str(world.program_a), **fields}
    response = client.post("/ask", data=data)
    return response.status_code, response.text


def link_of(html: str) -> str:
    found = LINK.search(html)
    assert found, html[:2000]
    return found.group(1).removeprefix("https://testserver")


def stored(sessions: sessionmaker[Session]) -> int:
    with sessions() as db:
        return int(db.scalar(select(func.count()).select_from(QuestionRow)) or 0)


def question_id(sessions: sessionmaker[Session], text: str) -> int:
    with sessions() as db:
        found = db.scalar(select(QuestionRow.id).where(QuestionRow.preview == text[:160]))
        assert found is not None
        return int(found)


def counselor_b(sessions: sessionmaker[Session], world: World) -> tuple[str, str]:
    email, password = world.email("counselor_b"), "pw-counselor-b-0123456789"
    with session_scope(sessions) as db:
        accounts.create_user(db, email, "Counselor B", "counselor", password, [world.program_b])
    return email, password


def test_a_visitor_asks_and_reads_the_counselors_reply_at_the_private_link(
    client: TestClient, world: World, sessions: sessionmaker[Session]
) -> None:
    status, sent = ask(client, world, question="How long do cravings last after detox?")
    assert status == 200 and "Your question is sent" in sent
    link = link_of(sent)
    assert client.get(link).headers["referrer-policy"] == "no-referrer"
    waiting = client.get(link).text
    assert "How long do cravings last after detox?" in waiting
    assert "Waiting for a counselor" in waiting
    with sessions() as db:  # only the link's hash is stored
        row = db.scalars(select(QuestionRow)).one()
        assert (
            row.token_hash
            and row.token_hash not in link
            and link.split("/")[-1] not in str(row.token_hash)
        )

    csrf = sign_in(client, world.email("counselor"), world.passwords["counselor"])
    queue = client.get("/questions").text
    assert "How long do cravings last after detox?" in queue
    qid = question_id(sessions, "How long do cravings last after detox?")
    for action, data in (
        ("assign", {}),
        ("notes", {"note": "Internal: brother of a former patient"}),
        ("reply", {"reply": "Cravings often ease over weeks; we can talk it through."}),
    ):
        answer = client.post(f"/questions/{qid}/{action}", data={"csrf_token": csrf, **data})
        assert answer.status_code == 303, answer.text[:500]
    client.cookies.clear()  # the visitor has no account: only the link
    seen = client.get(link).text
    assert "Cravings often ease over weeks" in seen
    assert "Answered" in seen
    assert "Internal: brother" not in seen  # notes stay with the counselors
    with sessions() as db:
        reads = db.scalars(
            select(AuditEntry).where(
                AuditEntry.actor == "visitor (private link)", AuditEntry.resource_id == str(qid)
            )
        ).all()
        assert len(reads) >= 2  # each visit to the link is in the audit trail


def test_a_wrong_link_shows_nothing(
    client: TestClient, world: World, sessions: sessionmaker[Session]
) -> None:
    status, sent = ask(client, world, question="A private matter about my mother")
    assert status == 200
    link = link_of(sent)
    for wrong in (link[:-1] + ("A" if link[-1] != "A" else "B"), "/ask/t/x", "/ask/t/" + "a" * 300):
        response = client.get(wrong)
        assert response.status_code == 404
        assert "A private matter" not in response.text
        assert "does not open a question" in response.text
    with sessions() as db:  # counted per address and minute, the first one audited
        assert db.scalar(select(func.sum(AnonymousRefusal.count))) == 3
        audited = db.scalars(
            select(AuditEntry).where(AuditEntry.outcome_detail.startswith("a private link"))
        ).all()
        minutes = db.scalar(select(func.count()).select_from(AnonymousRefusal))
        assert len(audited) == minutes  # one a minute (the three may straddle a minute)


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"question": "x" * 2001}, "Your question is too long"),
        ({"question": "Hello", "name": "n" * 101}, "Your name is too long"),
        ({"question": "<script>alert('x')</script> help"}, "Your question looks like web code"),
        (
            {"question": "Hi", "name": "<img src=x onerror=alert(1)>"},
            "Your name looks like web code",
        ),
        ({"question": ""}, "Your question: please write something"),
        ({"question": "ok", "kind": "callback", "phone": "call me maybe"}, "Phone number"),
        ({"question": "ok", "program": "999999"}, "Program: choose"),
    ],
)
def test_the_public_form_refuses_bad_input_with_a_message_and_stores_nothing(
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    fields: dict[str, str],
    named: str,
) -> None:
    status, page = ask(client, world, **fields)
    assert status == 422
    assert named in page
    assert "<script>alert" not in page and "<img src=x" not in page  # shown escaped, inert
    assert stored(sessions) == 0


def test_the_public_form_refuses_too_frequent_posts_and_counts_across_processes(
    client: TestClient, world: World, sessions: sessionmaker[Session]
) -> None:
    for n in range(5):
        status, _ = ask(client, world, question=f"Question number {n}")
        assert status == 200
    status, page = ask(client, world, question="One more question")
    assert status == 429
    assert "Too many questions" in page and "988" in page  # crisis resources even so
    assert stored(sessions) == 5
    # The count is in the database: a second server process (another app) refuses too.
    from tandem.web.app import create_app

    other = create_app(Settings(database_url=str(sessions.kw["bind"].url.render_as_string(False))))
    with TestClient(other, base_url="https://testserver") as second:
        status, _ = ask(second, world, question="From another process")
    other.state.engine.dispose()
    assert status == 429
    assert stored(sessions) == 5


@pytest.fixture
def proxied_client(settings: Settings, world: World) -> Iterator[TestClient]:
    from tandem.web.app import create_app

    app = create_app(settings.model_copy(update={"trusted_proxies": 1}))
    with TestClient(app, base_url="https://testserver") as test_client:
        yield test_client
    app.state.engine.dispose()


def test_behind_a_trusted_proxy_the_limit_is_per_client_address(
    proxied_client: TestClient, world: World, sessions: sessionmaker[Session]
) -> None:
    client = proxied_client
    client.headers["X-Forwarded-For"] = "203.0.113.5"
    for n in range(5):
        assert ask(client, world, question=f"From the first address {n}")[0] == 200
    assert ask(client, world, question="Sixth from the first")[0] == 429
    client.headers["X-Forwarded-For"] = "203.0.113.6"
    assert ask(client, world, question="From a second address")[0] == 200
    assert stored(sessions) == 6


def test_the_spam_trap_pretends_success_and_stores_nothing(
    client: TestClient, world: World, sessions: sessionmaker[Session]
) -> None:
    status, page = ask(client, world, question="Buy cheap pills", website="http://spam.example")
    assert status == 200 and "Your question is sent" in page
    assert client.get(link_of(page)).status_code == 404
    assert stored(sessions) == 0


def test_a_post_without_the_forms_token_is_refused(
    client: TestClient, world: World, sessions: sessionmaker[Session]
) -> None:
    client.get("/ask")
    response = client.post(
        "/ask", data={"csrf_token": "forged", "program": str(world.program_a), "question": "Hi"}
    )
    assert response.status_code == 403 and "The form expired" in response.text
    assert stored(sessions) == 0


def test_a_crisis_message_is_urgent_on_arrival_alerts_the_team_and_shows_help_at_once(
    client: TestClient, world: World, sessions: sessionmaker[Session]
) -> None:
    assert ask(client, world, question="What time are visiting hours?")[0] == 200
    status, page = ask(client, world, question="I relapsed and I want to kill myself tonight")
    assert status == 200
    for number in ("Call 911", "Call or text 988", "1-800-662-4357"):
        assert number in page
    assert 'href="tel:988"' in page and 'href="sms:988"' in page
    with sessions() as db:
        crisis_q = db.scalars(select(QuestionRow).where(QuestionRow.urgent.is_(True))).one()
        assert crisis_q.status == "new" and "kill myself" in crisis_q.crisis
        alert = db.scalars(select(Alert).where(Alert.kind == "crisis_signal")).one()
        assert alert.program_id == world.program_a and alert.patient_id is None
        assert alert.severity == "critical" and alert.related_id == str(crisis_q.id)
    assert "If you are in danger" in client.get(link_of(page)).text

    sign_in(client, world.email("counselor"), world.passwords["counselor"])
    queue = client.get("/questions").text
    assert queue.index("I relapsed and I want to kill myself") < queue.index("visiting hours")
    assert re.search(r'nav-count">1<span class="visually-hidden"> urgent', queue)
    client.cookies.clear()
    sign_in(client, world.email("nurse"), world.passwords["nurse"])
    alerts = client.get("/alerts").text
    assert "Crisis signal in a question to a counselor" in alerts
    assert f'href="/questions/{crisis_q.id}"' in alerts


def test_a_counselor_of_another_program_cannot_see_the_question(
    client: TestClient, world: World, sessions: sessionmaker[Session]
) -> None:
    assert ask(client, world, question="Secret question for Alpha")[0] == 200
    qid = question_id(sessions, "Secret question for Alpha")
    email, password = counselor_b(sessions, world)
    csrf = sign_in(client, email, password)
    assert "Secret question for Alpha" not in client.get("/questions").text
    assert client.get(f"/questions?program={world.program_a}").status_code in (200, 403)
    assert "Secret question" not in client.get(f"/questions?program={world.program_a}").text
    refused = client.get(f"/questions/{qid}")
    assert refused.status_code == 403 and "Secret question" not in refused.text
    answer = client.post(f"/questions/{qid}/reply", data={"csrf_token": csrf, "reply": "x"})
    assert answer.status_code == 403
    with sessions() as db:
        assert db.scalar(select(func.count()).select_from(MessageRow)) == 1
    token = make_token(sessions, email, "user/*.rs")
    bundle = client.get("/fhir/Communication", headers={"Authorization": f"Bearer {token}"}).json()
    assert not bundle.get("entry")


def test_a_patient_asks_from_their_record_and_reads_the_answer_there_and_by_fhir(
    client: TestClient, world: World, sessions: sessionmaker[Session]
) -> None:
    csrf = sign_in(client, world.email("patient"), world.passwords["patient"])
    chart = client.get(f"/patients/{world.patient_a}").text
    assert f'href="/patients/{world.patient_a}/questions"' in chart
    tomorrow = (utcnow() + timedelta(days=1)).date().isoformat()
    sent = client.post(
        f"/patients/{world.patient_a}/questions",
        data={
            "csrf_token": csrf,
            "kind": "callback",
            "question": "Can we talk about my medication choice?",
            "phone": "555 0100",
            "callback_date": tomorrow,
            "callback_from": "10:00",
            "callback_to": "12:00",
        },
    )
    assert sent.status_code == 303, sent.text[:500]
    qid = question_id(sessions, "Can we talk about my medication choice?")
    with sessions() as db:
        row = db.get(QuestionRow, qid)
        assert row is not None and row.patient_id == world.patient_a and row.token_hash is None
    client.cookies.clear()
    csrf = sign_in(client, world.email("counselor"), world.passwords["counselor"])
    page = client.get(f"/questions/{qid}").text
    assert "rivera" in page.lower() and "555 0100" in page
    for action, data in (
        ("call", {"call_at": f"{tomorrow}T10:30"}),
        ("reply", {"reply": "I will call you tomorrow at 10:30."}),
        ("notes", {"note": "Discuss the decision aid"}),
    ):
        assert (
            client.post(f"/questions/{qid}/{action}", data={"csrf_token": csrf, **data}).status_code
            == 303
        )
    refused = client.post(f"/questions/{qid}/reply", data={"csrf_token": csrf, "reply": " "})
    assert refused.status_code == 422 and "Reply: please write something" in refused.text
    client.cookies.clear()
    sign_in(client, world.email("patient"), world.passwords["patient"])
    mine = client.get(f"/patients/{world.patient_a}/questions").text
    assert "I will call you tomorrow at 10:30." in mine
    assert "A counselor will call you" in mine and "10:30" in mine
    assert "Discuss the decision aid" not in mine

    token = make_token(sessions, world.email("patient"), "patient/*.rs")
    headers = {"Authorization": f"Bearer {token}"}
    bundle = client.get(
        f"/fhir/Communication?patient={world.patient_a}&status=completed", headers=headers
    ).json()
    texts = [e["resource"]["payload"][0]["contentString"] for e in bundle["entry"]]
    assert texts == [
        "I will call you tomorrow at 10:30.",
        "Can we talk about my medication choice?",
    ]
    requests = client.get(
        f"/fhir/CommunicationRequest?patient={world.patient_a}&status=active", headers=headers
    ).json()
    (callback,) = [e["resource"] for e in requests["entry"]]
    assert callback["id"] == str(qid) and callback["occurrenceDateTime"]
    assert callback["subject"]["reference"] == f"Patient/{world.patient_a}"
    closed = client.get(
        f"/fhir/CommunicationRequest?patient={world.patient_a}&status=completed", headers=headers
    ).json()
    assert not closed.get("entry")
    read = client.get(f"/fhir/CommunicationRequest/{qid}", headers=headers)
    assert read.status_code == 200
    with sessions() as db:
        assert db.scalar(select(func.count()).select_from(NoteRow)) == 1
        audited = db.scalars(
            select(AuditEntry).where(
                AuditEntry.resource_type == "CommunicationRequest",
                AuditEntry.operation == "read",
                AuditEntry.resource_id == str(qid),
            )
        ).all()
        assert audited
    other = make_token(sessions, world.email("patient2"), "patient/*.rs")
    refused_read = client.get(
        f"/fhir/CommunicationRequest/{qid}", headers={"Authorization": f"Bearer {other}"}
    )
    assert refused_read.status_code == 403
    bad = client.get("/fhir/Communication?status=sent", headers=headers)
    assert bad.status_code == 400


def test_the_capability_statement_lists_communications(client: TestClient) -> None:
    metadata = client.get("/fhir/metadata").json()
    types = {r["type"]: r for r in metadata["rest"][0]["resource"]}
    for name in ("Communication", "CommunicationRequest"):
        assert {"patient", "status"} <= {p["name"] for p in types[name]["searchParam"]}


def test_the_prescriber_acknowledges_a_visitors_crisis_alert_and_another_program_cannot(
    client: TestClient, world: World, sessions: sessionmaker[Session]
) -> None:
    assert ask(client, world, question="My friend overdosed and is not breathing")[0] == 200
    with sessions() as db:
        alert_id = db.scalars(select(Alert.id).where(Alert.kind == "crisis_signal")).one()
    csrf = sign_in(client, world.email("prescriber_b"), world.passwords["prescriber_b"])
    refused = client.post(
        f"/alerts/{alert_id}/acknowledge", data={"csrf_token": csrf, "note": "seen"}
    )
    assert refused.status_code == 403
    client.cookies.clear()
    csrf = sign_in(client, world.email("prescriber"), world.passwords["prescriber"])
    done = client.post(
        f"/alerts/{alert_id}/acknowledge", data={"csrf_token": csrf, "note": "called 911 with them"}
    )
    assert done.status_code == 303
    with sessions() as db:
        alert = db.get(Alert, alert_id)
        assert alert is not None and alert.acknowledgement_note == "called 911 with them"
