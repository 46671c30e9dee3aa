"""Changing someone's credentials or reach ends their sessions and API tokens; sessions have an
absolute lifetime; an active person is never signed out for idleness. SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from tandem.settings import Settings
from tandem.storage.db import utcnow
from tandem.storage.models import User, WebSession
from tests.conftest import World, make_token, sign_in


def second_browser(client: TestClient) -> TestClient:
    return TestClient(client.app, base_url="https://testserver", follow_redirects=False)


def nurse_id(sessions, world: World) -> int:  # type: ignore[no-untyped-def]
    with sessions() as db:
        return db.scalar(select(User.id).where(User.email == world.email("nurse")))  # type: ignore[no-any-return]


NURSE_FORM = {"display_name": "Nurse", "role": "nurse", "active": "on"}


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"password": "a-brand-new-password"}, "password reset"),
        ({"role": "counselor"}, "role change"),
        ({"active": ""}, "deactivation"),
        ({"programs": []}, "program change"),
    ],
)
def test_a_change_ends_the_persons_sessions_and_tokens(
    client, sessions, world: World, change: dict[str, object], why: str
) -> None:
    nurse = second_browser(client)
    sign_in(nurse, world.email("nurse"), world.passwords["nurse"])
    token = make_token(sessions, world.email("nurse"), "user/Patient.rs")
    headers = {"Authorization": f"Bearer {token}"}
    assert nurse.get("/patients").status_code == 200
    assert client.get(f"/fhir/Patient/{world.patient_a}", headers=headers).status_code == 200

    csrf = sign_in(client, world.email("admin"), world.passwords["admin"])
    form = {**NURSE_FORM, "programs": str(world.program_a), "csrf_token": csrf, **change}
    saved = client.post(f"/admin/users/{nurse_id(sessions, world)}", data=form)
    assert saved.status_code == 303, saved.text

    assert nurse.get("/patients").status_code == 303, why
    assert client.get(f"/fhir/Patient/{world.patient_a}", headers=headers).status_code == 401, why
    assert client.get("/admin/users").status_code == 200  # the admin's own session goes on


def test_reactivating_a_user_does_not_revive_old_sessions(client, sessions, world: World) -> None:
    nurse = second_browser(client)
    sign_in(nurse, world.email("nurse"), world.passwords["nurse"])
    csrf = sign_in(client, world.email("admin"), world.passwords["admin"])
    url = f"/admin/users/{nurse_id(sessions, world)}"
    base = {**NURSE_FORM, "programs": str(world.program_a), "csrf_token": csrf}
    assert client.post(url, data={**base, "active": ""}).status_code == 303
    assert client.post(url, data=base).status_code == 303
    assert nurse.get("/patients").status_code == 303
    sign_in(nurse, world.email("nurse"), world.passwords["nurse"])  # signing in again works


def test_resetting_ones_own_password_keeps_only_this_session(
    client, sessions, world: World
) -> None:
    other = second_browser(client)
    sign_in(other, world.email("admin"), world.passwords["admin"])
    csrf = sign_in(client, world.email("admin"), world.passwords["admin"])
    with sessions() as db:
        admin_id = db.scalar(select(User.id).where(User.email == world.email("admin")))
    form = {
        "csrf_token": csrf,
        "display_name": "Admin",
        "role": "admin",
        "active": "on",
        "programs": str(world.program_a),
        "password": "my-own-new-password",
    }
    assert client.post(f"/admin/users/{admin_id}", data=form).status_code == 303
    assert client.get("/admin/users").status_code == 200
    assert other.get("/admin/users").status_code == 303


def test_a_session_ends_after_its_absolute_lifetime(client, sessions, world: World) -> None:
    sign_in(client, world.email("nurse"), world.passwords["nurse"])
    with sessions() as db:
        db.execute(update(WebSession).values(created_at=utcnow() - timedelta(hours=12, minutes=1)))
        db.commit()
    response = client.get("/patients")  # active all along: last seen just now
    assert response.status_code == 303 and "/login" in response.headers["location"]
    assert "Please sign in again" in client.get(response.headers["location"]).text
    assert client.get("/patients").status_code == 303


def test_the_absolute_lifetime_is_a_setting() -> None:
    assert Settings().session_absolute_hours == 12
    assert Settings(session_absolute_hours=2).session_absolute_hours == 2


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, session_idle_minutes=1, login_max_failures=3)


def test_an_active_person_is_never_signed_out_by_a_one_minute_idle_limit(
    client, sessions, world: World
) -> None:
    sign_in(client, world.email("nurse"), world.passwords["nurse"])
    # Each step: the person last did something 40 s ago (within the minute), and acts again.
    for _ in range(3):
        with sessions() as db:
            web_session = db.scalars(select(WebSession)).one()
            web_session.last_seen_at -= timedelta(seconds=40)
            db.commit()
        assert client.get("/patients").status_code == 200
