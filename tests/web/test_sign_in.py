"""Sign-in, sessions and CSRF through the real pages, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from tandem.storage.db import utcnow
from tandem.storage.models import AuditEntry, Patient, WebSession
from tests.conftest import World, csrf_from, sign_in


def test_sign_in_sets_a_hardened_session_cookie(client, world: World) -> None:
    page = client.get("/login")
    response = client.post(
        "/login",
        data={
            "email": world.email("nurse"),
            "password": world.passwords["nurse"],
            "csrf_token": csrf_from(page.text),
            "next": "/patients",
        },
    )
    assert response.status_code == 303 and response.headers["location"] == "/patients"
    cookie = response.headers["set-cookie"].lower()
    assert (
        "tandem_session=" in cookie
        and "httponly" in cookie
        and "secure" in cookie
        and "samesite=lax" in cookie
    )
    assert client.get("/patients").status_code == 200


def test_wrong_password_is_refused_and_audited(client, sessions, world: World) -> None:
    page = client.get("/login")
    response = client.post(
        "/login",
        data={
            "email": world.email("nurse"),
            "password": "wrong-password-1",
            "csrf_token": csrf_from(page.text),
        },
    )
    assert response.status_code == 401
    assert "do not match" in response.text
    assert client.get("/patients").status_code == 303
    with sessions() as db:
        entry = db.scalars(select(AuditEntry).where(AuditEntry.operation == "login")).one()
    assert entry.outcome == "4" and entry.actor == world.email("nurse")


def test_login_without_its_csrf_token_is_refused(client, world: World) -> None:
    client.get("/login")
    response = client.post(
        "/login", data={"email": world.email("nurse"), "password": world.passwords["nurse"]}
    )
    assert response.status_code == 403
    assert "expired" in response.text
    assert client.get("/patients").status_code == 303


def test_too_many_failures_lock_the_account_with_a_clear_message(client, world: World) -> None:
    for _ in range(3):  # the test settings allow 3 failures per 15 minutes
        page = client.get("/login")
        client.post(
            "/login",
            data={
                "email": world.email("nurse"),
                "password": "wrong-password-1",
                "csrf_token": csrf_from(page.text),
            },
        )
    page = client.get("/login")
    locked = client.post(
        "/login",
        data={
            "email": world.email("nurse"),
            "password": world.passwords["nurse"],
            "csrf_token": csrf_from(page.text),
        },
    )
    assert locked.status_code == 429
    assert "Too many failed sign-in attempts" in locked.text and "minutes" in locked.text
    assert int(locked.headers["retry-after"]) > 0
    # Another account is not locked by it.
    sign_in(client, world.email("prescriber"), world.passwords["prescriber"])


def test_a_form_post_without_the_csrf_token_changes_nothing(client, sessions, world: World) -> None:
    sign_in(client, world.email("nurse"), world.passwords["nurse"])
    response = client.post(
        f"/patients/{world.patient_a}/edit", data={"family": "Changed", "given": "Ana"}
    )
    assert response.status_code == 403
    with sessions() as db:
        assert db.get(Patient, world.patient_a).family == "Rivera"
        refused = db.scalars(select(AuditEntry).where(AuditEntry.outcome == "4")).all()
    assert any("CSRF" in e.outcome_detail for e in refused)


def test_an_idle_session_expires(client, sessions, world: World) -> None:
    sign_in(client, world.email("nurse"), world.passwords["nurse"])
    with sessions() as db:
        db.execute(update(WebSession).values(last_seen_at=utcnow() - timedelta(minutes=31)))
        db.commit()
    response = client.get("/patients")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/patients&expired=1"
    assert "period of inactivity" in client.get(response.headers["location"]).text
    assert client.get("/patients").status_code == 303  # the old cookie stays dead


def test_sign_out_ends_the_session(client, world: World) -> None:
    csrf = sign_in(client, world.email("nurse"), world.passwords["nurse"])
    cookie = client.cookies.get("tandem_session")
    response = client.post("/logout", data={"csrf_token": csrf})
    assert response.status_code == 303
    client.cookies.set("tandem_session", cookie, domain="testserver")
    assert client.get("/patients").status_code == 303


def test_guessing_across_many_accounts_from_one_address_is_locked(client, world: World) -> None:
    # 3 failures per account are allowed; 4 x 3 = 12 from one address lock that address.
    for i in range(12):
        page = client.get("/login")
        client.post(
            "/login",
            data={
                "email": f"nobody{i}@test.tandem.test",
                "password": "wrong-password-1",
                "csrf_token": csrf_from(page.text),
            },
        )
    page = client.get("/login")
    locked = client.post(
        "/login",
        data={
            "email": world.email("counselor"),
            "password": world.passwords["counselor"],
            "csrf_token": csrf_from(page.text),
        },
    )
    assert locked.status_code == 429 and "Too many failed sign-in attempts" in locked.text


def test_a_page_refreshing_itself_does_not_keep_an_idle_session_alive(
    client, sessions, world: World
) -> None:
    sign_in(client, world.email("nurse"), world.passwords["nurse"])
    with sessions() as db:
        db.execute(update(WebSession).values(last_seen_at=utcnow() - timedelta(minutes=20)))
        db.commit()
    # An automatic refresh 20 minutes into idleness reads, but does not count as activity ...
    assert client.get("/patients", headers={"X-Fragment": "1"}).status_code == 200
    with sessions() as db:
        seen = db.scalar(select(WebSession.last_seen_at))
    assert utcnow() - seen > timedelta(minutes=19)
    # ... while a person's request does.
    assert client.get("/patients").status_code == 200
    with sessions() as db:
        assert utcnow() - db.scalar(select(WebSession.last_seen_at)) < timedelta(minutes=1)
