"""The asker hears of a counselor's reply, on SQLite and PostgreSQL: a signed-in patient sees it
flagged on their Today page until they open their questions (marked "New reply" there); with SMTP
configured they get one e-mail saying there is a reply, with the link to it and never its words,
sent once even by racing processes' schedulers, to a real SMTP server the test starts (aiosmtpd);
no e-mail for a reply already read, for a patient who turned e-mails off, or without SMTP."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from email.message import Message

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tandem import scheduler
from tandem.counseling import reply_notices
from tandem.counseling.domain import DOMAIN
from tandem.counseling.reply_notices import send_notices
from tandem.counseling.storage import QuestionRow
from tandem.recovery.portal_storage import ReminderPreferenceRow, ReminderSentRow
from tandem.recovery.reminders_service import smtp_mailer
from tandem.settings import get_settings
from tandem.storage.db import make_engine, make_sessionmaker, session_scope, utcnow
from tests.conftest import World, sign_in
from tests.recovery.test_reminders import Smtp, smtp  # noqa: F401 (the SMTP server fixture)

SITE = "https://tandem.example.org"
QUESTION = "Is it normal to feel tired in the second week?"
REPLY = "Yes, tiredness in the second week is common; tell us if it lasts."


def ask_and_get_a_reply(client: TestClient, sessions: sessionmaker[Session], world: World) -> int:
    csrf = sign_in(client, world.email("patient"), world.passwords["patient"])
    sent = client.post(
        f"/patients/{world.patient_a}/questions",
        data={"csrf_token": csrf, "kind": "question", "question": QUESTION},
    )
    assert sent.status_code == 303, sent.text[:500]
    with sessions() as db:
        qid = db.scalar(select(QuestionRow.id).where(QuestionRow.patient_id == world.patient_a))
    assert qid is not None
    client.cookies.clear()
    csrf = sign_in(client, world.email("counselor"), world.passwords["counselor"])
    answered = client.post(f"/questions/{qid}/reply", data={"csrf_token": csrf, "reply": REPLY})
    assert answered.status_code == 303
    client.cookies.clear()
    return int(qid)


def text_of(message: Message) -> str:
    """The e-mail's text as the patient's mail program shows it (long lines are sent encoded)."""
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode()


def later() -> datetime:
    return utcnow() + timedelta(minutes=1)


def test_the_patient_sees_the_reply_flagged_on_their_today_page_until_they_open_it(
    client: TestClient, sessions: sessionmaker[Session], world: World
) -> None:
    qid = ask_and_get_a_reply(client, sessions, world)
    sign_in(client, world.email("patient"), world.passwords["patient"])
    today = client.get(f"/patients/{world.patient_a}/today").text
    assert "A counselor replied to your question" in today
    assert f'href="/patients/{world.patient_a}/questions#question-{qid}"' in today
    assert REPLY not in today  # the flag, not the reply

    questions = client.get(f"/patients/{world.patient_a}/questions").text
    assert "New reply" in questions and REPLY in questions
    assert "replied to your question" not in client.get(f"/patients/{world.patient_a}/today").text
    assert "New reply" not in client.get(f"/patients/{world.patient_a}/questions").text

    # Staff opening the patient's questions do not read the replies for the patient.
    client.cookies.clear()
    csrf = sign_in(client, world.email("counselor"), world.passwords["counselor"])
    client.post(f"/questions/{qid}/reply", data={"csrf_token": csrf, "reply": "One more thing."})
    assert client.get(f"/patients/{world.patient_a}/questions").status_code == 200
    staff_view = client.get(f"/patients/{world.patient_a}/today")
    assert staff_view.status_code == 200 and "replied to your question" not in staff_view.text
    client.cookies.clear()
    sign_in(client, world.email("patient"), world.passwords["patient"])
    assert (
        "A counselor replied to your question"
        in client.get(f"/patients/{world.patient_a}/today").text
    )


def test_a_reply_is_emailed_once_with_its_link_and_never_its_words(
    client: TestClient,
    sessions: sessionmaker[Session],
    world: World,
    smtp: Smtp,  # noqa: F811
) -> None:
    qid = ask_and_get_a_reply(client, sessions, world)
    mailer = smtp_mailer(smtp.config)
    assert send_notices(sessions, later(), mailer, SITE, "a") == 1
    [message] = smtp.inbox.to(world.email("patient"))
    body = text_of(message)
    assert f"{SITE}/patients/{world.patient_a}/questions#question-{qid}" in body
    assert "You have a reply to your question." in body
    text = (message["Subject"] + body).lower()
    for private in ("tiredness", "second week", "counselor", "alpha", "rivera"):
        assert private not in text, private
    # Still unread five minutes later: not sent again.
    assert send_notices(sessions, later() + timedelta(minutes=5), mailer, SITE, "b") == 0
    with sessions() as db:
        claims = db.scalars(select(ReminderSentRow)).all()
    assert [(c.kind, c.status, c.patient_id) for c in claims] == [
        ("reply", "sent", world.patient_a)
    ]

    # A second reply is a new notice.
    csrf = sign_in(client, world.email("counselor"), world.passwords["counselor"])
    client.post(f"/questions/{qid}/reply", data={"csrf_token": csrf, "reply": "And drink water."})
    assert send_notices(sessions, later(), mailer, SITE, "a") == 1
    assert len(smtp.inbox.mails) == 2


def test_racing_schedulers_send_the_notice_once(
    client: TestClient,
    database_url: str,
    sessions: sessionmaker[Session],
    world: World,
    smtp: Smtp,  # noqa: F811
) -> None:
    ask_and_get_a_reply(client, sessions, world)
    engines = [make_engine(database_url) for _ in range(3)]
    gate = threading.Barrier(len(engines))
    sent: list[int] = []
    errors: list[BaseException] = []
    when = later()

    def claim(index: int) -> None:
        try:
            gate.wait(10)
            mailer = smtp_mailer(smtp.config)
            sessions_of_mine = make_sessionmaker(engines[index])
            sent.append(send_notices(sessions_of_mine, when, mailer, SITE, f"claimer-{index}"))
        except BaseException as exc:  # re-raised in the test's thread
            errors.append(exc)

    try:
        threads = [threading.Thread(target=claim, args=(i,)) for i in range(len(engines))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        for engine in engines:
            engine.dispose()
    assert not errors, errors
    assert sum(sent) == 1, sent
    assert len(smtp.inbox.mails) == 1


def test_no_email_for_a_reply_already_read_or_with_emails_turned_off(
    client: TestClient,
    sessions: sessionmaker[Session],
    world: World,
    smtp: Smtp,  # noqa: F811
) -> None:
    ask_and_get_a_reply(client, sessions, world)
    sign_in(client, world.email("patient"), world.passwords["patient"])
    client.get(f"/patients/{world.patient_a}/questions")  # read in the portal first
    mailer = smtp_mailer(smtp.config)
    assert send_notices(sessions, later(), mailer, SITE) == 0

    client.cookies.clear()
    with session_scope(sessions) as db:
        db.add(
            ReminderPreferenceRow(
                patient_id=world.patient_a,
                program_id=world.program_a,
                check_in=True,
                doses=True,
                sessions=True,
                email=False,
            )
        )
    csrf = sign_in(client, world.email("counselor"), world.passwords["counselor"])
    with sessions() as db:
        qid = db.scalar(select(QuestionRow.id).where(QuestionRow.patient_id == world.patient_a))
    client.post(f"/questions/{qid}/reply", data={"csrf_token": csrf, "reply": "Another reply."})
    assert send_notices(sessions, later(), mailer, SITE) == 0
    assert smtp.inbox.mails == []


def test_the_scheduler_sends_the_notice_with_the_smtp_settings_once(
    client: TestClient,
    sessions: sessionmaker[Session],
    world: World,
    smtp: Smtp,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ask_and_get_a_reply(client, sessions, world)
    job = next(j for j in DOMAIN.jobs if j.name == reply_notices.JOB)
    monkeypatch.delenv("TANDEM_SMTP_HOST", raising=False)
    get_settings.cache_clear()
    try:
        assert reply_notices.send_due(sessions, later()) == 0  # no SMTP, no e-mail
        monkeypatch.setenv("TANDEM_SMTP_HOST", smtp.host)
        monkeypatch.setenv("TANDEM_SMTP_PORT", str(smtp.port))
        monkeypatch.setenv("TANDEM_SMTP_FROM", "replies@tandem.test")
        monkeypatch.setenv("TANDEM_SMTP_STARTTLS", "false")
        monkeypatch.setenv("TANDEM_PUBLIC_URL", SITE + "/")
        get_settings.cache_clear()
        when = later()
        for me in ("worker-1", "worker-2"):  # two processes' schedulers at the same moment
            scheduler.run_due(sessions, [job], when, me)
        scheduler.run_due(sessions, [job], when + job.every, "worker-2")
    finally:
        get_settings.cache_clear()
    [(to, message)] = smtp.inbox.mails
    assert to == world.email("patient")
    assert f"{SITE}/patients/{world.patient_a}/questions#question-" in text_of(message)
