"""Shared set-up for withdrawal storage, API and page tests: an open detox episode, answers."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tandem.access.audit import Origin
from tandem.access.credentials import actor_for
from tandem.access.guard import Access
from tandem.instruments.engine import get_instrument
from tandem.patients.episodes import episode_changed
from tandem.storage.db import session_scope, utcnow
from tandem.storage.models import Episode, User
from tests.conftest import World

CIWA_ITEMS = (
    "nausea_vomiting",
    "tremor",
    "paroxysmal_sweats",
    "anxiety",
    "agitation",
    "tactile_disturbances",
    "auditory_disturbances",
    "visual_disturbances",
    "headache",
    "orientation",
)


def admit_to_detox(
    sessions: sessionmaker[Session],
    world: World,
    patient_id: str,
    hours_ago: float = 24,
    at: datetime | None = None,
) -> int:
    with session_scope(sessions) as db:
        at = at or utcnow() - timedelta(hours=hours_ago)
        episode = Episode(
            patient_id=patient_id,
            program_id=world.program_a,
            unit_id=world.unit_a_detox,
            phase="detox",
            admitted_at=at,
            phase_started_at=at,
        )
        db.add(episode)
        episode_changed(db, episode)
        return episode.id


def ciwa_answers(total: int) -> dict[str, int]:
    """CIWA-Ar answers adding up to `total` (0-67), filled item by item."""
    answers: dict[str, int] = {}
    left = total
    for item in get_instrument("ciwa_ar").items:
        value = min(left, item.max_value)
        answers[item.id] = value
        left -= value
    assert left == 0
    return answers


def cows_answers(**given: int) -> dict[str, int]:
    answers = {item.id: 0 for item in get_instrument("cows").items}
    answers.update(given)
    return answers


def questionnaire_response(
    instrument_id: str, patient_id: str, answers: dict[str, Any], authored: datetime | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": f"Questionnaire/{instrument_id.replace('_', '-')}",
        "status": "completed",
        "subject": {"reference": f"Patient/{patient_id}"},
        "item": [
            {"linkId": k, "answer": [{"valueCoding": {"code": str(v)}}]} for k, v in answers.items()
        ],
    }
    if authored is not None:
        body["authored"] = authored.isoformat()
    return body


def access_for(
    sessions: sessionmaker[Session], db: Session, world: World, role: str = "nurse"
) -> Access:
    user = db.scalar(select(User).where(User.email == world.email(role)))
    assert user is not None
    return Access(actor_for(user), Origin(channel="web"), db, sessions)
