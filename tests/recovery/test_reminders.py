"""Reminders (SQLite and PostgreSQL): due check-in, dose and session reminders listed on the
patient's Today page and e-mailed once each, to a real SMTP server the test starts (aiosmtpd),
even when several claimers (threads with engines of their own, separate processes) send at the
same moment; reminders a patient turned off are neither shown nor sent; e-mails say nothing
clinical."""

from __future__ import annotations

import multiprocessing
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from email import message_from_string
from email.message import Message
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session, sessionmaker

from tandem import scheduler
from tandem.access import accounts
from tandem.recovery import reminders_service
from tandem.recovery.domain import DOMAIN
from tandem.recovery.portal_storage import ReminderPreferenceRow, ReminderSentRow
from tandem.recovery.reminders_mail import SmtpConfig
from tandem.recovery.reminders_service import send_reminders, smtp_mailer
from tandem.recovery.storage import CarePlanRow
from tandem.settings import get_settings
from tandem.storage.db import make_engine, make_sessionmaker, session_scope
from tandem.storage.models import Patient
from tests.conftest import World, sign_in
from tests.recovery.portal_helpers import (
    NY,
    book_session,
    count,
    freeze,
    give_care_plan,
    give_plan,
)
from tests.recovery.reminders_claimer import send_in_a_process

# 19:30 in New York: past the program's 18:00 check-in time, the evening (19:00) dose due, and a
# group session tomorrow at 10:00 within the 24 hours before it.
NOW = datetime(2026, 3, 4, 19, 30, tzinfo=NY)
TOMORROW_10 = datetime(2026, 3, 5, 10, 0, tzinfo=NY)


@dataclass
class Inbox:
    """What the SMTP server received: (recipient, message)."""

    mails: list[tuple[str, Message]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]  # noqa: N802
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                self.mails.append((rcpt, message_from_string(envelope.content.decode())))
        return "250 OK"

    def to(self, address: str) -> list[Message]:
        return [m for rcpt, m in self.mails if rcpt == address]


@dataclass
class Smtp:
    host: str
    port: int
    inbox: Inbox

    @property
    def config(self) -> SmtpConfig:
        return SmtpConfig(self.host, self.port, "reminders@tandem.test", starttls=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[Smtp]:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    try:
        yield Smtp(controller.hostname, controller.port, inbox)
    finally:
        controller.stop()


@pytest.fixture
def due(sessions: sessionmaker[Session], world: World) -> World:
    """Patient A, in treatment (a care plan): no check-in today, the 19:00 dose unrecorded, a
    session tomorrow 10:00. Patient A2 the same, but with check-in and session reminders turned
    off."""
    for patient in (world.patient_a, world.patient_a2):
        give_plan(sessions, world, patient)
        give_care_plan(sessions, patient, world.program_a, ["alcohol"])
        book_session(sessions, patient, world.program_a, TOMORROW_10)
    with session_scope(sessions) as db:
        db.add(
            ReminderPreferenceRow(
                patient_id=world.patient_a2,
                program_id=world.program_a,
                check_in=False,
                doses=True,
                sessions=False,
                email=True,
            )
        )
    return world


def _check_nothing_clinical(message: Message) -> None:
    body = message.get_payload()
    assert isinstance(body, str)
    text = (message["Subject"] + body).lower()
    assert "time for your check-in" in text
    for clinical in ("baclofen", "mg", "dose", "group", "session", "alpha", "detox", "rivera"):
        assert clinical not in text, clinical


def test_due_reminders_are_emailed_once_to_a_real_smtp_server(
    sessions: sessionmaker[Session], due: World, smtp: Smtp
) -> None:
    mailer = smtp_mailer(smtp.config)
    assert send_reminders(sessions, NOW, mailer, "a") == 4
    a, a2 = due.email("patient"), due.email("patient2")
    assert len(smtp.inbox.to(a)) == 3  # check-in, the 19:00 dose, tomorrow's session
    assert len(smtp.inbox.to(a2)) == 1  # the dose only: A2 turned the others off
    for _, message in smtp.inbox.mails:
        _check_nothing_clinical(message)
    with sessions() as db:
        kinds = {(r.patient_id, r.kind, r.status) for r in db.scalars(select(ReminderSentRow))}
    assert kinds == {
        (due.patient_a, "check_in", "sent"),
        (due.patient_a, "dose", "sent"),
        (due.patient_a, "session", "sent"),
        (due.patient_a2, "dose", "sent"),
    }
    # Still due five and ten minutes later: nothing is sent twice.
    assert send_reminders(sessions, NOW + timedelta(minutes=5), mailer, "b") == 0
    assert send_reminders(sessions, NOW + timedelta(minutes=10), mailer, "a") == 0
    assert len(smtp.inbox.mails) == 4


def test_racing_claimers_with_engines_of_their_own_send_each_reminder_once(
    database_url: str, sessions: sessionmaker[Session], due: World, smtp: Smtp
) -> None:
    engines = [make_engine(database_url) for _ in range(3)]
    gate = threading.Barrier(len(engines))
    sent: list[int] = []
    errors: list[BaseException] = []

    def claim(index: int) -> None:
        try:
            gate.wait(10)
            mailer = smtp_mailer(smtp.config)
            sent.append(
                send_reminders(make_sessionmaker(engines[index]), NOW, mailer, f"claimer-{index}")
            )
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
    assert sum(sent) == 4, sent
    assert len(smtp.inbox.mails) == 4
    assert count(sessions, ReminderSentRow) == 4


def test_racing_processes_send_each_reminder_once(
    database_url: str, sessions: sessionmaker[Session], due: World, smtp: Smtp
) -> None:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["tests.recovery.reminders_claimer"])
    go, results = context.Event(), context.Queue()
    processes = [
        context.Process(
            target=send_in_a_process,
            args=(database_url, NOW, f"process-{i}", smtp.host, smtp.port, go, results),
        )
        for i in range(2)
    ]
    for process in processes:
        process.start()
    try:
        assert sorted(results.get(timeout=120) for _ in processes) == [
            ("ready", "process-0"),
            ("ready", "process-1"),
        ]
        go.set()
        sent = [results.get(timeout=120) for _ in processes]
    finally:
        for process in processes:
            process.join(60)
    assert sum(n for _, n in sent) == 4, sent
    assert len(smtp.inbox.mails) == 4
    with sessions() as db:
        claimed_by = set(db.scalars(select(ReminderSentRow.claimed_by)))
    assert claimed_by <= {"process-0", "process-1"}


def test_the_scheduler_runs_the_domains_job_with_the_smtp_settings(
    sessions: sessionmaker[Session], due: World, smtp: Smtp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TANDEM_SMTP_HOST", smtp.host)
    monkeypatch.setenv("TANDEM_SMTP_PORT", str(smtp.port))
    monkeypatch.setenv("TANDEM_SMTP_FROM", "reminders@tandem.test")
    monkeypatch.setenv("TANDEM_SMTP_STARTTLS", "false")
    get_settings.cache_clear()
    try:
        job = next(j for j in DOMAIN.jobs if j.name == reminders_service.JOB)
        for me in ("worker-1", "worker-2"):  # two processes' schedulers at the same moment
            scheduler.run_due(sessions, [job], NOW, me)
        with sessions() as db:
            assert scheduler.last_run(db, job.name).ok
        assert len(smtp.inbox.mails) == 4
        # The next run, five minutes on, finds the same reminders due and sends none again.
        scheduler.run_due(sessions, [job], NOW + job.every, "worker-2")
        assert len(smtp.inbox.mails) == 4
    finally:
        get_settings.cache_clear()


def _patients_in_treatment(
    sessions: sessionmaker[Session], world: World, first: int, n: int
) -> None:
    """`n` more patients of program A with a portal account and a care plan in force."""
    with session_scope(sessions) as db:
        for i in range(first, first + n):
            patient = Patient(
                program_id=world.program_a,
                family=f"Many{i}",
                given="Pat",
                family_lower=f"many{i}",
                given_lower="pat",
                gender="unknown",
            )
            db.add(patient)
            db.flush()
            accounts.create_user(
                db,
                f"many{i}@test.tandem.test",
                f"Pat {i}",
                "patient",
                f"pw-many-{i}-0123456789",
                [world.program_a],
                patient.id,
            )
            db.add(
                CarePlanRow(
                    patient_id=patient.id,
                    program_id=world.program_a,
                    substances=["alcohol"],
                    started_on=date(2026, 2, 1),
                    retention="active",
                )
            )


def _statements_of_a_run(
    engine: Engine, sessions: sessionmaker[Session], now: datetime, mailer: Any
) -> tuple[int, int]:
    statements: list[str] = []

    def seen(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    try:
        sent = send_reminders(sessions, now, mailer, "sweeper")
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    return sent, len(statements)


def test_a_run_reads_only_the_patients_with_something_due(
    engine: Engine, sessions: sessionmaker[Session], world: World, smtp: Smtp
) -> None:
    """Set-based: a patient who was already reminded (or has nothing due) costs the sweep
    nothing, so a run's statements do not grow with the number of patients."""
    mailer = smtp_mailer(smtp.config)
    _patients_in_treatment(sessions, world, 0, 8)
    assert send_reminders(sessions, NOW, mailer, "first") == 8  # each one's check-in
    quiet, few = _statements_of_a_run(engine, sessions, NOW + timedelta(minutes=5), mailer)
    _patients_in_treatment(sessions, world, 8, 16)
    assert send_reminders(sessions, NOW + timedelta(minutes=6), mailer, "first") == 16
    still_quiet, many = _statements_of_a_run(engine, sessions, NOW + timedelta(minutes=10), mailer)
    assert quiet == still_quiet == 0
    assert few == many, (few, many)  # 8 or 24 patients reminded: the same statements
    assert len(smtp.inbox.mails) == 24


def test_no_smtp_no_email(sessions: sessionmaker[Session], due: World, monkeypatch) -> None:
    monkeypatch.delenv("TANDEM_SMTP_HOST", raising=False)
    get_settings.cache_clear()
    try:
        assert reminders_service.send_due(sessions, NOW) == 0
    finally:
        get_settings.cache_clear()
    assert count(sessions, ReminderSentRow) == 0


def test_a_patient_sees_reminders_on_their_day_and_turns_them_off(
    client, sessions: sessionmaker[Session], due: World, smtp: Smtp, monkeypatch
) -> None:
    freeze(monkeypatch, NOW)
    csrf = sign_in(client, due.email("patient"), due.passwords["patient"])
    today = client.get(f"/patients/{due.patient_a}/today").text
    assert "Time for your check-in." in today
    assert "Dose due at 19:00: Baclofen 5 mg" in today
    assert "Group session tomorrow at 10:00." in today
    saved = client.post(
        f"/patients/{due.patient_a}/reminders",
        data={"csrf_token": csrf, "check_in": "on", "sessions": "on"},  # doses and e-mail off
    )
    assert saved.status_code == 303
    today = client.get(f"/patients/{due.patient_a}/today").text
    assert "Time for your check-in." in today and "Dose due at" not in today
    choices = client.get(f"/patients/{due.patient_a}/reminders").text
    assert 'name="doses">' in choices and 'name="email">' in choices  # unticked
    # E-mail off: nothing is sent to them; patient A2's dose reminder still is.
    assert send_reminders(sessions, NOW, smtp_mailer(smtp.config), "a") == 1
    assert smtp.inbox.to(due.email("patient")) == []
    # A check-in done: the check-in reminder is gone.
    client.post(
        f"/patients/{due.patient_a}/check-in",
        data={
            "csrf_token": csrf,
            "craving_alcohol": "1",
            "use_alcohol": "no",
        },
    )
    assert "Time for your check-in." not in client.get(f"/patients/{due.patient_a}/today").text
