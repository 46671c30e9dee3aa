"""Patient pages and administration through the browser's HTTP (SQLite; their storage and API run on
both engines)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from tandem.storage.models import AuditEntry, Episode, Patient, Program, User
from tests.cli_runner import run_tandem as tandem
from tests.conftest import World, sign_in

pytestmark = pytest.mark.one_engine  # a page test: see tests/conftest.py


def test_patient_list_searches_within_the_nurses_programs(client, world: World) -> None:
    sign_in(client, world.email("nurse"), world.passwords["nurse"])
    listing = client.get("/patients").text
    assert "RIVERA, Ana" in listing and "OKAFOR, Kofi" in listing and "NOVAK" not in listing
    found = client.get("/patients", params={"q": "oka"}).text
    assert "OKAFOR, Kofi" in found and "RIVERA" not in found
    by_mrn = client.get("/patients", params={"q": "ALP-1"}).text
    assert "RIVERA, Ana" in by_mrn and "OKAFOR" not in by_mrn


def test_chart_shows_demographics_and_refuses_other_programs(client, world: World) -> None:
    sign_in(client, world.email("nurse"), world.passwords["nurse"])
    chart = client.get(f"/patients/{world.patient_a}")
    assert chart.status_code == 200 and "RIVERA, Ana" in chart.text and "ALP-1" in chart.text
    refused = client.get(f"/patients/{world.patient_b}")
    assert refused.status_code == 403 and "NOVAK" not in refused.text


def test_registering_a_patient_with_a_bad_field_names_it_and_stores_nothing(
    client, sessions, world: World
) -> None:
    csrf = sign_in(client, world.email("nurse"), world.passwords["nurse"])
    with sessions() as db:
        before = db.scalar(select(func.count()).select_from(Patient))
    bad = client.post(
        "/patients/new",
        data={
            "csrf_token": csrf,
            "program_id": str(world.program_a),
            "family": "Lopez",
            "given": "Rosa",
            "birth_date": "2999-01-01",
        },
    )
    assert bad.status_code == 422
    assert (
        'id="birth_date"' in bad.text and 'aria-invalid="true"' in bad.text and "future" in bad.text
    )
    with sessions() as db:
        assert db.scalar(select(func.count()).select_from(Patient)) == before
    good = client.post(
        "/patients/new",
        data={
            "csrf_token": csrf,
            "program_id": str(world.program_a),
            "family": "Lopez",
            "given": "Rosa",
            "birth_date": "1985-02-03",
        },
    )
    assert good.status_code == 303
    chart = client.get(good.headers["location"])
    assert "LOPEZ, Rosa" in chart.text and "Created." in chart.text


def test_admit_change_phase_and_discharge(client, sessions, world: World) -> None:
    csrf = sign_in(client, world.email("nurse"), world.passwords["nurse"])
    base = f"/patients/{world.patient_a}"
    admitted = client.post(
        f"{base}/episodes",
        data={
            "csrf_token": csrf,
            "unit_id": str(world.unit_a_detox),
            "phase": "detox",
            "admitted_at": "2026-01-05T08:30",
        },
    )
    assert admitted.status_code == 303
    with sessions() as db:
        episode = db.scalars(select(Episode).where(Episode.patient_id == world.patient_a)).one()
    # 08:30 in New York in January is 13:30 UTC.
    assert episode.admitted_at.hour == 13 and episode.phase == "detox"
    again = client.post(
        f"{base}/episodes",
        data={
            "csrf_token": csrf,
            "unit_id": str(world.unit_a_detox),
            "phase": "detox",
            "admitted_at": "2026-01-06T08:30",
        },
    )
    assert again.status_code == 422 and "already has an open episode" in again.text
    moved = client.post(
        f"{base}/episodes/{episode.id}/phase", data={"csrf_token": csrf, "phase": "rehab"}
    )
    assert moved.status_code == 303
    early = client.post(
        f"{base}/episodes/{episode.id}/discharge",
        data={"csrf_token": csrf, "reason": "completed", "discharged_at": "2025-12-31T09:00"},
    )
    assert early.status_code == 422 and "before admission" in early.text
    done = client.post(
        f"{base}/episodes/{episode.id}/discharge",
        data={"csrf_token": csrf, "reason": "completed", "discharged_at": "2026-02-01T09:00"},
    )
    assert done.status_code == 303
    with sessions() as db:
        episode = db.get(Episode, episode.id)
    assert episode.phase == "rehab" and episode.discharge_reason == "completed"
    assert "Completed treatment" in client.get(base).text


def test_admin_adds_a_user_who_can_sign_in(client, sessions, world: World) -> None:
    csrf = sign_in(client, world.email("admin"), world.passwords["admin"])
    assert "Audit trail" in client.get("/admin/users").text
    bad = client.post(
        "/admin/users/new",
        data={
            "csrf_token": csrf,
            "email": "new@test.tandem.test",
            "display_name": "New Nurse",
            "role": "nurse",
            "password": "short",
            "programs": str(world.program_a),
            "active": "on",
        },
    )
    assert bad.status_code == 422 and "password" in bad.text
    made = client.post(
        "/admin/users/new",
        data={
            "csrf_token": csrf,
            "email": "new@test.tandem.test",
            "display_name": "New Nurse",
            "role": "nurse",
            "password": "long-enough-pw",
            "programs": str(world.program_a),
            "active": "on",
        },
    )
    assert made.status_code == 303
    client.cookies.clear()
    sign_in(client, "new@test.tandem.test", "long-enough-pw")
    assert "RIVERA, Ana" in client.get("/patients").text


def test_the_last_admin_cannot_demote_themselves(client, sessions, world: World) -> None:
    csrf = sign_in(client, world.email("admin"), world.passwords["admin"])
    with sessions() as db:
        admin_id = db.scalar(select(User.id).where(User.email == world.email("admin")))
    response = client.post(
        f"/admin/users/{admin_id}",
        data={
            "csrf_token": csrf,
            "display_name": "Admin",
            "role": "nurse",
            "active": "on",
            "programs": str(world.program_a),
        },
    )
    assert response.status_code == 422 and "administrator" in response.text
    with sessions() as db:
        assert db.get(User, admin_id).role == "admin"


def test_non_admins_cannot_open_admin_pages(client, world: World) -> None:
    sign_in(client, world.email("prescriber"), world.passwords["prescriber"])
    for path in ("/admin/users", "/admin/programs", "/admin/roles", "/admin/audit"):
        assert client.get(path).status_code == 403


def test_only_a_system_admin_adds_a_program(
    client, sessions, world: World, database_url: str
) -> None:
    csrf = sign_in(client, world.email("admin"), world.passwords["admin"])
    assert "Add a program" not in client.get("/admin/programs").text
    data = {"csrf_token": csrf, "code": "charlie", "name": "Charlie", "time_zone": "UTC"}
    assert client.post("/admin/programs", data=data).status_code == 403
    with sessions() as db:
        assert db.scalar(select(Program).where(Program.code == "charlie")) is None
        refusal = db.scalar(
            select(AuditEntry)
            .where(AuditEntry.resource_type == "Organization", AuditEntry.outcome != "0")
            .order_by(AuditEntry.id.desc())
        )
    assert refusal is not None and "system administrator" in refusal.outcome_detail
    granted = tandem(database_url, "user", "grant-system-admin", world.email("admin"))
    assert granted.returncode == 0, granted.stderr
    assert "Add a program" in client.get("/admin/programs").text
    assert client.post("/admin/programs", data=data).status_code == 303


def test_admin_creates_a_program_with_a_unit(client, world: World, database_url: str) -> None:
    assert tandem(database_url, "user", "grant-system-admin", world.email("admin")).returncode == 0
    csrf = sign_in(client, world.email("admin"), world.passwords["admin"])
    bad = client.post(
        "/admin/programs",
        data={
            "csrf_token": csrf,
            "code": "charlie",
            "name": "Charlie",
            "time_zone": "Mars/Olympus",
        },
    )
    assert bad.status_code == 422 and "time zone" in bad.text
    ok = client.post(
        "/admin/programs",
        data={
            "csrf_token": csrf,
            "code": "charlie",
            "name": "Charlie",
            "time_zone": "America/Denver",
        },
    )
    assert ok.status_code == 303
    page = client.get("/admin/programs").text
    assert "Charlie" in page and "America/Denver" in page
