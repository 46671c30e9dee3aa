"""The decision aid beside detox, on SQLite and PostgreSQL: a patient in detox for opioids is
shown the opioid withdrawal options first; a 'no medication' choice is shown beside the
withdrawal protocol's suggestion (kept there for safety) instead of a bare prompt."""

from __future__ import annotations

from datetime import timedelta

from tandem.clock import program_today
from tandem.storage.db import session_scope, utcnow
from tandem.withdrawal import assessments
from tandem.withdrawal.checks import ContextInput
from tandem.withdrawal.context import record_context
from tests.conftest import World, sign_in
from tests.withdrawal.helpers import access_for, admit_to_detox, ciwa_answers


def _detox(sessions, world: World, substance: str, ciwa: int | None = None) -> None:  # type: ignore[no-untyped-def]
    admit_to_detox(sessions, world, world.patient_a)
    with session_scope(sessions) as db:
        nurse = access_for(sessions, db, world)
        record_context(nurse, world.patient_a, ContextInput(substance=substance))
    if ciwa is not None:
        with session_scope(sessions) as db:
            nurse = access_for(sessions, db, world)
            assessments.save_assessment(
                nurse,
                world.patient_a,
                "ciwa_ar",
                ciwa_answers(ciwa),
                utcnow() - timedelta(minutes=5),
            )


def test_detox_for_opioids_opens_on_the_opioid_withdrawal_options(
    client, world: World, sessions
) -> None:
    _detox(sessions, world, "opioid")
    sign_in(client, world.email("counselor"), world.passwords["counselor"])
    page = client.get(f"/patients/{world.patient_a}/options").text
    assert "Treatment options: Opioids" in page and "getting through withdrawal" in page
    assert "Lofexidine" in page and "Acamprosate" not in page


def test_no_medication_is_shown_beside_the_withdrawal_protocol_suggestion(
    client, world: World, sessions
) -> None:
    _detox(sessions, world, "alcohol", ciwa=12)
    csrf = sign_in(client, world.email("counselor"), world.passwords["counselor"])
    before = client.get(f"/patients/{world.patient_a}/withdrawal").text
    assert "The protocol suggests for a total of 12" in before
    assert "The patient chose no medication" not in before
    saved = client.post(
        f"/patients/{world.patient_a}/options/decisions",
        data={
            "csrf_token": csrf,
            "substance": "alcohol",
            "phase": "withdrawal",
            "choice": "no_medication",
            # The program's day (alpha is in New York), not UTC's: the two differ at night.
            "discussed_on": program_today("America/New_York", utcnow()).isoformat(),
            "discussed_by": "Casey Counselor",
        },
    )
    assert saved.status_code == 303, saved.text[:300]
    after = client.get(f"/patients/{world.patient_a}/withdrawal").text
    assert "The patient chose no medication" in after
    assert "discuss it with the patient before giving anything" in after
