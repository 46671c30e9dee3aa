"""A reminder sender in a process of its own, as each `tandem serve` worker's scheduler is."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from tandem.recovery.reminders_mail import SmtpConfig
from tandem.recovery.reminders_service import send_reminders, smtp_mailer
from tandem.storage.db import make_engine, make_sessionmaker


def send_in_a_process(
    url: str, now: datetime, me: str, host: str, port: int, go: Any, results: Any
) -> None:
    engine = make_engine(url)
    try:
        sessions = make_sessionmaker(engine)
        with sessions() as db:
            db.execute(select(1))  # connected before the start signal
        results.put(("ready", me))
        go.wait(60)
        mailer = smtp_mailer(SmtpConfig(host, port, "reminders@tandem.test", starttls=False))
        results.put(("sent", send_reminders(sessions, now, mailer, me)))
    finally:
        engine.dispose()
