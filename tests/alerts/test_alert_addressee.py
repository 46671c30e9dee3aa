"""A PHQ-9 item 9 answer is addressed to the patient's counselor as well as the prescriber on duty,
on SQLite and PostgreSQL: the counselor of the patient's care plan sees the alert marked for them
and counted beside Alerts in their menu; another counselor of the program does not; a patient
with no care plan (or none in force) alerts the prescriber only; acknowledging stays the
prescriber's, and then the count goes."""

from __future__ import annotations

import re
from datetime import date

from sqlalchemy import select

from tandem.access import accounts
from tandem.alerts.models import Alert
from tandem.recovery.storage import CarePlanRow
from tandem.storage.db import session_scope
from tandem.storage.models import User
from tests.conftest import World, csrf_from, make_token, sign_in
from tests.recovery.test_scales_api import auth, phq9, response_body

OTHER_COUNSELOR = "other.counselor@test.tandem.test"
OTHER_PASSWORD = "pw-other-counselor-0123456789"


def setup_care_team(sessions, world: World, retention: str = "active") -> int:  # type: ignore[no-untyped-def]
    """Patient A's care plan with the world's counselor on it, and a second counselor."""
    with session_scope(sessions) as db:
        counselor = db.scalar(select(User.id).where(User.email == world.email("counselor")))
        accounts.create_user(
            db, OTHER_COUNSELOR, "Sam Other", "counselor", OTHER_PASSWORD, [world.program_a]
        )
        db.add(
            CarePlanRow(
                patient_id=world.patient_a,
                program_id=world.program_a,
                substances=["alcohol"],
                counselor_id=counselor,
                started_on=date(2026, 1, 5),
                retention=retention,
            )
        )
    assert counselor is not None
    return int(counselor)


def answer_phq9(client, sessions, world: World, item9: int = 2) -> Alert:  # type: ignore[no-untyped-def]
    token = make_token(sessions, world.email("patient"), "patient/*.cruds")
    created = client.post(
        "/fhir/QuestionnaireResponse",
        json=response_body("phq9", world.patient_a, phq9(item9=item9)),
        headers=auth(token),
    )
    assert created.status_code == 201, created.text
    with sessions() as db:
        return db.scalars(select(Alert)).one()


def menu_count(page: str) -> str | None:
    found = re.search(r'href="/alerts"[^>]*>Alerts <span class="badge[^"]*">(\d+)', page)
    return found.group(1) if found else None


def test_the_patients_counselor_is_an_addressee_and_sees_it_for_them(
    client, sessions, world: World
) -> None:
    counselor_id = setup_care_team(sessions, world)
    alert = answer_phq9(client, sessions, world)
    assert alert.for_role == "prescriber" and alert.for_user_id == counselor_id

    sign_in(client, world.email("counselor"), world.passwords["counselor"])
    home = client.get("/patients").text
    assert menu_count(home) == "1"
    page = client.get("/alerts").text
    assert "for you</span>" in page and "<strong>1</strong> for you" in page
    assert "For the prescriber on duty and Counselor" in page
    assert "/acknowledge" not in page  # read only for a counselor

    # Another counselor of the program reads the alert but it is not addressed to them.
    sign_in(client, OTHER_COUNSELOR, OTHER_PASSWORD)
    assert menu_count(client.get("/patients").text) is None
    other = client.get("/alerts").text
    assert f'id="alert-{alert.id}"' in other and "for you</span>" not in other

    # The prescriber acknowledges it; the counselor's count goes.
    sign_in(client, world.email("prescriber"), world.passwords["prescriber"])
    page = client.get("/alerts")
    assert "For the prescriber on duty and Counselor" in page.text
    done = client.post(
        f"/alerts/{alert.id}/acknowledge",
        data={"csrf_token": csrf_from(page.text), "note": "called the patient, safety plan made"},
    )
    assert done.status_code == 303
    sign_in(client, world.email("counselor"), world.passwords["counselor"])
    assert menu_count(client.get("/patients").text) is None


def test_without_a_care_plan_in_force_the_prescriber_alone_is_alerted(
    client, sessions, world: World
) -> None:
    setup_care_team(sessions, world, retention="dropped_out")
    alert = answer_phq9(client, sessions, world)
    assert alert.for_role == "prescriber" and alert.for_user_id is None
    sign_in(client, world.email("counselor"), world.passwords["counselor"])
    assert menu_count(client.get("/patients").text) is None
    page = client.get("/alerts").text
    assert "For the prescriber on duty</p>" in page and "for you</span>" not in page
