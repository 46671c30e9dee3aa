"""`tandem demo` step: questions to the demo program's counselors. A visitor's question waiting,
a visitor's call-back request with a scheduled call, a patient's question answered, and one
urgent question (a crisis signal, with its alert) at the top of the queue. Synthetic text."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from tandem.access.audit import Origin
from tandem.access.credentials import actor_for
from tandem.access.guard import Access
from tandem.counseling import questions, triage
from tandem.demo import DemoWorld

ORIGIN = Origin(channel="cli", user_agent="tandem demo")


def asked_questions(db: Session, world: DemoWorld) -> None:
    sessions = sessionmaker(bind=db.get_bind())
    program = world.program
    now = world.now
    counselor = world.users.get("counselor")
    asks = [
        (
            "Is it normal to still crave alcohol three weeks after detox? My brother is worried.",
            "",
            None,
            now - timedelta(hours=20),
        ),
        (
            "I would like to talk about starting the outpatient program.",
            "555-0100",
            "callback",
            now - timedelta(hours=6),
        ),
        ("I feel like I want to die since I relapsed.", "", None, now - timedelta(minutes=25)),
    ]
    made = []
    for text, phone, kind, at in asks:
        window = None
        if kind == "callback":
            window = triage.Window(now + timedelta(hours=18), now + timedelta(hours=20))
        ask = triage.Ask(kind or "question", text, "", phone, window)
        question, found = questions.store_question(
            db, ask, program.id, at, patient_id=None, asked_by=None, token=questions.new_token()
        )
        visitor = Access(questions.VISITOR, ORIGIN, db, sessions)
        visitor.audit("create", resource_type="Communication", resource_id=str(question.id))
        if found:
            questions.raise_crisis_alert(visitor, question, found)
        made.append(question)
    if counselor is not None:
        access = Access(actor_for(counselor), ORIGIN, db, sessions)
        questions.reply(
            access,
            made[0].id,
            "Yes, cravings can last for weeks after detox and usually ease with time. "
            "Your brother can ask his counselor about it at his next visit.",
            now - timedelta(hours=2),
        )
        questions.assign_to_me(access, made[1].id, now - timedelta(hours=1))
    db.flush()
