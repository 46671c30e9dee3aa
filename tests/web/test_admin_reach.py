"""Administrators manage only their own programs, on SQLite and PostgreSQL.

The world's administrator belongs to program Alpha; Bravo has its own nurse, prescriber and
patient. Cross-program administration is a separate role, granted only with
`tandem user grant-system-admin`, and every grant, revocation and membership change is audited.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import func, select

from tandem.access import audit
from tandem.access.policy import Actor, Role
from tandem.storage.db import session_scope
from tandem.storage.models import AuditEntry, Membership, User
from tests.cli_runner import run_tandem
from tests.conftest import World, make_token, sign_in

TANDEM = str(Path(sys.executable).with_name("tandem"))


def tandem(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_tandem(database_url, *args)


def user_id(sessions, email: str) -> int:  # type: ignore[no-untyped-def]
    with sessions() as db:
        found = db.scalar(select(User.id).where(User.email == email))
    assert found is not None
    return found


def bravo_reading(sessions, world: World) -> int:  # type: ignore[no-untyped-def]
    """An audit entry of Bravo's nurse reading Bravo's patient."""
    nurse_b = user_id(sessions, world.email("nurse_b"))
    actor = Actor(nurse_b, world.email("nurse_b"), Role.NURSE, frozenset({world.program_b}))
    with session_scope(sessions) as db:
        item = audit.record(
            db,
            actor,
            "read",
            audit.Origin("10.9.9.9"),
            resource_type="Patient",
            resource_id=world.patient_b,
            patient_id=world.patient_b,
        )
        db.flush()
        return item.id


def test_an_admin_reads_only_the_audit_trail_of_their_programs(
    client, sessions, world: World
) -> None:
    entry_b = bravo_reading(sessions, world)
    sign_in(client, world.email("admin"), world.passwords["admin"])
    page = client.get("/admin/audit").text
    assert world.email("nurse_b") not in page and "10.9.9.9" not in page
    assert world.email("admin") in page  # their own sign-in is within reach
    filtered = client.get(f"/admin/audit?patient={world.patient_b}").text
    assert world.email("nurse_b") not in filtered and "10.9.9.9" not in filtered

    token = make_token(sessions, world.email("admin"), "user/AuditEvent.rs")
    headers = {"Authorization": f"Bearer {token}"}
    bundle = client.get("/fhir/AuditEvent?_count=100", headers=headers).json()
    ids = {e["resource"]["id"] for e in bundle.get("entry", [])}
    assert ids and str(entry_b) not in ids
    assert client.get(f"/fhir/AuditEvent/{entry_b}", headers=headers).status_code == 404
    # A search for a patient of another program is refused and audited, as on every resource.
    with sessions() as db:
        refusals_before = db.scalar(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.outcome != "0")
        )
    refused = client.get(f"/fhir/AuditEvent?patient={world.patient_b}", headers=headers)
    assert refused.status_code == 403
    assert refused.json()["resourceType"] == "OperationOutcome"
    with sessions() as db:
        refusals_after = db.scalar(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.outcome != "0")
        )
    assert refusals_after == refusals_before + 1
    own = client.get(f"/fhir/AuditEvent?patient={world.patient_a}", headers=headers)
    assert own.status_code == 200


def test_an_admin_lists_and_opens_only_users_of_their_programs(
    client, sessions, world: World
) -> None:
    sign_in(client, world.email("admin"), world.passwords["admin"])
    page = client.get("/admin/users").text
    assert world.email("nurse") in page
    assert world.email("nurse_b") not in page and world.email("prescriber_b") not in page
    assert (
        client.get(f"/admin/users/{user_id(sessions, world.email('nurse_b'))}").status_code == 404
    )


def test_an_admin_cannot_add_themselves_to_another_program(client, sessions, world: World) -> None:
    csrf = sign_in(client, world.email("admin"), world.passwords["admin"])
    admin_id = user_id(sessions, world.email("admin"))
    response = client.post(
        f"/admin/users/{admin_id}",
        data={
            "csrf_token": csrf,
            "display_name": "Admin",
            "role": "admin",
            "active": "on",
            "programs": [str(world.program_a), str(world.program_b)],
        },
    )
    assert response.status_code == 422 and "programs" in response.text
    with sessions() as db:
        programs = set(
            db.scalars(select(Membership.program_id).where(Membership.user_id == admin_id))
        )
    assert programs == {world.program_a}
    assert client.get(f"/patients/{world.patient_b}").status_code in (403, 404)


def test_an_admin_cannot_change_a_user_of_another_program(client, sessions, world: World) -> None:
    csrf = sign_in(client, world.email("admin"), world.passwords["admin"])
    nurse_b = user_id(sessions, world.email("nurse_b"))
    response = client.post(
        f"/admin/users/{nurse_b}",
        data={
            "csrf_token": csrf,
            "display_name": "Taken Over",
            "role": "nurse",
            "active": "on",
            "password": "taken-over-password",
            "programs": str(world.program_a),
        },
    )
    assert response.status_code == 404
    with sessions() as db:
        user = db.get(User, nurse_b)
        assert user.display_name == "Nurse B" and user.program_ids == {world.program_b}


def test_forms_offer_only_the_admins_programs_and_refuse_others(
    client, sessions, world: World
) -> None:
    csrf = sign_in(client, world.email("admin"), world.passwords["admin"])
    form = client.get("/admin/users/new").text
    assert "Alpha Detox" in form and "Bravo Outpatient" not in form
    assert "Bravo Outpatient" not in client.get("/admin/programs").text
    made = client.post(
        "/admin/users/new",
        data={
            "csrf_token": csrf,
            "email": "spy@test.tandem.test",
            "display_name": "Spy",
            "role": "admin",
            "password": "long-enough-pw",
            "programs": str(world.program_b),
            "active": "on",
        },
    )
    assert made.status_code == 422 and "programs" in made.text
    # A patient account for Bravo's patient, found by MRN: that patient is out of reach.
    patient = client.post(
        "/admin/users/new",
        data={
            "csrf_token": csrf,
            "email": "pb@test.tandem.test",
            "display_name": "PB",
            "role": "patient",
            "password": "long-enough-pw",
            "patient_mrn": "BRA-1",
            "active": "on",
        },
    )
    assert patient.status_code == 422 and "no patient has MRN BRA-1" in patient.text
    unit = client.post(
        f"/admin/programs/{world.program_b}/units",
        data={"csrf_token": csrf, "unit_code": "sneak", "unit_name": "Sneak", "kind": "detox"},
    )
    assert unit.status_code in (403, 404)
    with sessions() as db:
        assert db.scalar(select(User.id).where(User.email == "spy@test.tandem.test")) is None


def test_membership_changes_are_audited_with_what_changed(client, sessions, world: World) -> None:
    csrf = sign_in(client, world.email("admin"), world.passwords["admin"])
    nurse = user_id(sessions, world.email("nurse"))
    response = client.post(
        f"/admin/users/{nurse}",
        data={
            "csrf_token": csrf,
            "display_name": "Nurse",
            "role": "counselor",
            "active": "on",
            "programs": str(world.program_a),
        },
    )
    assert response.status_code == 303
    with sessions() as db:
        entry = db.scalars(
            select(AuditEntry).where(
                AuditEntry.resource_type == "User", AuditEntry.resource_id == str(nurse)
            )
        ).one()
    assert "role nurse -> counselor" in entry.outcome_detail


def test_a_system_admin_is_granted_only_by_the_cli_and_every_grant_is_audited(
    client, sessions, world: World, database_url: str
) -> None:
    admin = world.email("admin")
    granted = tandem(database_url, "user", "grant-system-admin", admin)
    assert granted.returncode == 0, granted.stderr
    with sessions() as db:
        assert db.scalar(select(User.system_admin).where(User.email == admin)) is True
    csrf = sign_in(client, admin, world.passwords["admin"])
    assert world.email("nurse_b") in client.get("/admin/users").text
    assert "Bravo Outpatient" in client.get("/admin/users/new").text
    nurse_b = user_id(sessions, world.email("nurse_b"))
    moved = client.post(
        f"/admin/users/{nurse_b}",
        data={
            "csrf_token": csrf,
            "display_name": "Nurse B",
            "role": "nurse",
            "active": "on",
            "programs": [str(world.program_a), str(world.program_b)],
        },
    )
    assert moved.status_code == 303
    # The web form cannot grant the role: the field is ignored, not offered.
    nurse = user_id(sessions, world.email("nurse"))
    client.post(
        f"/admin/users/{nurse}",
        data={
            "csrf_token": csrf,
            "display_name": "Nurse",
            "role": "nurse",
            "active": "on",
            "programs": str(world.program_a),
            "system_admin": "on",
        },
    )
    revoked = tandem(database_url, "user", "revoke-system-admin", admin)
    assert revoked.returncode == 0, revoked.stderr
    unknown = tandem(database_url, "user", "grant-system-admin", "nobody@test.tandem.test")
    assert unknown.returncode == 2 and "nobody@test.tandem.test" in unknown.stderr
    with sessions() as db:
        assert db.scalar(select(User.system_admin).where(User.id == nurse)) is False
        assert db.scalar(select(User.system_admin).where(User.email == admin)) is False
        details = [
            e.outcome_detail
            for e in db.scalars(
                select(AuditEntry).where(AuditEntry.channel == "cli").order_by(AuditEntry.id)
            )
        ]
    assert details == ["system administrator granted", "system administrator revoked"]


def test_a_user_shared_with_another_program_is_listed_but_not_managed(
    client, sessions, world: World
) -> None:
    from tandem.access import accounts

    with session_scope(sessions) as db:
        shared = accounts.create_user(
            db,
            "shared@test.tandem.test",
            "Shared Nurse",
            "nurse",
            "shared-password-0123",
            [world.program_a, world.program_b],
        )
        shared_id = shared.id
    csrf = sign_in(client, world.email("admin"), world.passwords["admin"])
    page = client.get("/admin/users").text
    assert "Shared Nurse" in page and f'href="/admin/users/{shared_id}"' not in page
    assert "Bravo Outpatient" not in page and "(and 1 other)" in page
    assert client.get(f"/admin/users/{shared_id}").status_code == 404
    removed = client.post(
        f"/admin/users/{shared_id}",
        data={
            "csrf_token": csrf,
            "display_name": "Shared Nurse",
            "role": "nurse",
            "active": "",
            "programs": str(world.program_a),
        },
    )
    assert removed.status_code == 404
    with sessions() as db:
        user = db.get(User, shared_id)
        assert user.active and user.program_ids == {world.program_a, world.program_b}
