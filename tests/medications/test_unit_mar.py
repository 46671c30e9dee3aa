"""The unit's medication administration record, through the browser's HTTP on SQLite and
PostgreSQL: the shift's doses across the nurse's programs (none from another program), by due
time, overdue doses marked; a dose given, held or refused from its row, each audited; a reason
required for held and refused; a counselor sees the list without buttons and is refused (403)
before anything they post is read."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from tandem.medications.storage import (
    AdministrationDueRow,
    MedicationAdministrationRow,
)
from tandem.storage.models import AuditEntry, AuditEntryPatient
from tests.conftest import World, csrf_from, sign_in
from tests.medications.conftest import NOW, access_for

# NOW is 21:00 on Wednesday 4 March 2026 in New York (program alpha): the night shift began at
# 19:00, so a three-times-daily plan's evening dose (19:00) is due in it and overdue.
EVENING = NOW.replace(hour=19)


@pytest.fixture
def mar_clock(frozen_clock: datetime, monkeypatch: pytest.MonkeyPatch) -> datetime:
    for module in ("tandem.medications.unit_mar", "tandem.medications.unit_pages"):
        monkeypatch.setattr(f"{module}.utcnow", lambda: NOW.astimezone(UTC))
    return NOW


@pytest.fixture
def plans(sessions, world: World, mar_clock) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Baclofen three times daily for both alpha patients (from yesterday), and one for the
    patient in program bravo; alpha's shifts set as a program setting."""
    from tandem.medications.plans import create_titration
    from tandem.medications.unit_mar import set_program_shifts

    made = {}
    with sessions() as db:
        set_program_shifts(db, world.program_a, "07:00 19:00", "program setting")
        # Bravo is in Paris, where it is already 5 March: its plan started yesterday there.
        for name, email, patient, start in (
            ("a", "prescriber", world.patient_a, NOW.date() - timedelta(days=1)),
            ("a2", "prescriber", world.patient_a2, NOW.date() - timedelta(days=1)),
            ("b", "prescriber_b", world.patient_b, NOW.date()),
        ):
            row = create_titration(
                access_for(db, sessions, world.email(email)),
                patient,
                "baclofen",
                start="5mg-tid",
                step_mg=5,
                every_days=3,
                target="10mg-tid",
                start_date=start,
                now=NOW - timedelta(days=2),  # written before its first dose
            )
            made[name] = row.id
        db.commit()
    return made


def rows(html: str) -> list[str]:
    return re.findall(r'<tr id="(dose-\d+-\d+)" class="([^"]*)"', html)


def key(plan_id: int, due: datetime) -> str:
    return f"dose-{plan_id}-{int(due.timestamp())}"


def post(
    client,
    csrf: str,
    plan_id: int,
    patient_id: str,
    outcome: str,
    reason: str = "",
    due: datetime = EVENING,
    **headers: str,
):  # type: ignore[no-untyped-def]
    return client.post(
        "/unit/medications/doses",
        data={
            "csrf_token": csrf,
            "shift": "current",
            "patient_id": patient_id,
            "plan_id": str(plan_id),
            "due_at": due.isoformat(),
            "outcome": outcome,
            "reason": reason,
        },
        headers=headers,
    )


def test_the_shift_lists_the_units_doses_by_due_time_overdue_marked_and_audited(
    client, sessions, world: World, plans
) -> None:  # type: ignore[no-untyped-def]
    sign_in(client, world.email("nurse"), world.passwords["nurse"])
    home = client.get("/patients")
    assert 'href="/unit/medications"' in home.text  # in the navigation
    page = client.get("/unit/medications")
    assert page.status_code == 200
    text = page.text
    listed = rows(text)
    # The night shift: each alpha patient's 19:00 dose, overdue (due, nothing recorded).
    # Same due time: by name (OKAFOR before RIVERA).
    assert [k for k, _ in listed] == [key(plans["a2"], EVENING), key(plans["a"], EVENING)]
    assert all("is-overdue" in cls for _, cls in listed)
    assert "Overdue" in text and "RIVERA, Ana" in text and "OKAFOR, Kofi" in text
    assert "NOVAK" not in text and str(plans["b"]) not in re.findall(r"plans/(\d+)", text)
    assert "shifts start 07:00 19:00, program setting" in text
    assert text.count('class="mar-form"') == 2
    # Audited: a search of the plans naming both patients shown, and nobody else.
    with sessions() as db:
        entry = db.scalar(
            select(AuditEntry)
            .where(
                AuditEntry.resource_type == "MedicationRequest",
                AuditEntry.query == "unit medication record, shift=current",
            )
            .order_by(AuditEntry.id.desc())
        )
        assert entry is not None
        shown = set(
            db.scalars(
                select(AuditEntryPatient.patient_id).where(
                    AuditEntryPatient.audit_entry_id == entry.id
                )
            )
        )
    assert shown == {world.patient_a, world.patient_a2}

    # The day shift before: 08:00 and 13:00 for each, earliest first, overdue; too long ago
    # to record as given now (the chart takes the time given).
    earlier = client.get("/unit/medications", params={"shift": "previous"}).text
    due = [NOW.replace(hour=8), NOW.replace(hour=13)]
    listed = [k for k, _ in rows(earlier)]
    assert len(listed) == 4
    assert [k.rsplit("-", 1)[1] for k in listed] == [
        str(int(d.timestamp())) for d in due for _ in (1, 2)
    ]
    assert "counts as missed" in earlier  # 08:00 is more than 12 hours without a record
    assert "record on the chart" in earlier
    # The next day shift: planned, not overdue, nothing to press yet.
    later = client.get("/unit/medications", params={"shift": "next"}).text
    assert len(rows(later)) == 4 and not any("is-overdue" in c for _, c in rows(later))
    assert 'class="mar-form"' not in later
    assert client.get("/unit/medications", params={"shift": "tomorrow"}).status_code == 422


def test_a_nurse_records_given_held_and_refused_from_the_list(
    client, sessions, world: World, plans
) -> None:  # type: ignore[no-untyped-def]
    csrf = sign_in(client, world.email("nurse"), world.passwords["nurse"])
    csrf = csrf_from(client.get("/unit/medications").text)

    # Held with no reason: refused, the reason field named and marked, nothing stored.
    refused = post(client, csrf, plans["a"], world.patient_a, "held")
    assert refused.status_code == 422
    assert "Reason: say why the dose was held" in refused.text
    assert 'aria-invalid="true"' in refused.text
    with sessions() as db:
        assert db.scalar(select(func.count()).select_from(MedicationAdministrationRow)) == 0

    # Given, in one click (no reason needed): back to the list, the row says so.
    given = post(client, csrf, plans["a"], world.patient_a, "given")
    assert given.status_code == 303
    assert given.headers["location"].endswith(f"#{key(plans['a'], EVENING)}")
    listed = client.get("/unit/medications").text
    assert "given 21:00 by Nurse" in listed
    assert dict(rows(listed))[key(plans["a"], EVENING)] == ""  # no longer overdue
    assert listed.count('class="mar-form"') == 1

    # Refused by the patient, with the reason, answered in place (the script's request).
    in_place = post(
        client, csrf, plans["a2"], world.patient_a2, "refused", "nauseous", **{"X-Row": "1"}
    )
    assert in_place.status_code == 200
    assert in_place.text.strip().startswith(f'<tr id="{key(plans["a2"], EVENING)}"')
    assert "Refused by the patient: nauseous" in in_place.text

    with sessions() as db:
        admins = {
            a.patient_id: a
            for a in db.scalars(
                select(MedicationAdministrationRow).order_by(MedicationAdministrationRow.id)
            )
        }
        assert admins[world.patient_a].status == "completed"
        assert admins[world.patient_a2].status == "not-done"
        assert admins[world.patient_a2].status_reason == "Refused by the patient: nauseous"
        dues = {d.administration_id: d.due_at for d in db.scalars(select(AdministrationDueRow))}
        assert {dues[a.id] for a in admins.values()} == {EVENING.astimezone(UTC)}
        created = db.scalars(
            select(AuditEntry).where(
                AuditEntry.operation == "create",
                AuditEntry.resource_type == "MedicationAdministration",
            )
        ).all()
        assert {e.patient_id for e in created} == {world.patient_a, world.patient_a2}
        refusal = db.scalar(
            select(AuditEntry).where(
                AuditEntry.outcome != "0",
                AuditEntry.outcome_detail.contains("say why the dose was held"),
            )
        )
        assert refusal is not None

    # A dose already recorded is not recorded twice from a stale page: the row has no form.
    again = client.get("/unit/medications").text
    assert 'class="mar-form"' not in again


def test_held_with_a_reason_and_a_reason_missing_in_place(
    client, sessions, world: World, plans
) -> None:  # type: ignore[no-untyped-def]
    sign_in(client, world.email("nurse"), world.passwords["nurse"])
    csrf = csrf_from(client.get("/unit/medications").text)
    missing = post(client, csrf, plans["a"], world.patient_a, "refused", "  ", **{"X-Row": "1"})
    assert missing.status_code == 422
    assert missing.text.strip().startswith("<tr")
    assert "Reason: say why the dose was refused" in missing.text
    held = post(client, csrf, plans["a"], world.patient_a, "held", "asleep, BP 88/50")
    assert held.status_code == 303
    with sessions() as db:
        row = db.scalar(select(MedicationAdministrationRow))
        assert row.status == "not-done" and row.status_reason == "Held: asleep, BP 88/50"
    assert "Held: asleep, BP 88/50" in client.get("/unit/medications").text


def test_a_counselor_sees_the_list_without_buttons_and_is_refused_before_validation(
    client, sessions, world: World, plans
) -> None:  # type: ignore[no-untyped-def]
    csrf = sign_in(client, world.email("counselor"), world.passwords["counselor"])
    page = client.get("/unit/medications")
    assert page.status_code == 200 and len(rows(page.text)) == 2
    assert 'class="mar-form"' not in page.text and "record on the chart" not in page.text
    # An empty post (no patient, no dose, no reason): 403, not a form error; audited.
    refused = client.post("/unit/medications/doses", data={"csrf_token": csrf, "outcome": "held"})
    assert refused.status_code == 403
    named = post(client, csrf, plans["a"], world.patient_a, "held")  # held without a reason
    assert named.status_code == 403
    with sessions() as db:
        assert db.scalar(select(func.count()).select_from(MedicationAdministrationRow)) == 0
        refusals = db.scalars(
            select(AuditEntry.outcome_detail).where(
                AuditEntry.resource_type == "MedicationAdministration", AuditEntry.outcome != "0"
            )
        ).all()
    assert len(refusals) == 2 and all("counselor" in d for d in refusals)


def test_a_nurse_of_another_program_neither_sees_nor_records_these_doses(
    client, sessions, world: World, plans
) -> None:  # type: ignore[no-untyped-def]
    csrf = sign_in(client, world.email("nurse_b"), world.passwords["nurse_b"])
    page = client.get("/unit/medications").text
    assert "RIVERA" not in page and "OKAFOR" not in page
    assert "Bravo Outpatient" in page and "Tandem default" in page  # bravo set no shifts
    assert "NOVAK, Ivan" in page  # 19:00 in Paris, in bravo's night shift
    answer = post(client, csrf, plans["a"], world.patient_a, "given")
    assert answer.status_code == 403
    with sessions() as db:
        assert db.scalar(select(func.count()).select_from(MedicationAdministrationRow)) == 0


def test_doses_due_before_the_plan_was_written_are_not_listed_as_overdue(
    client, sessions, world: World, mar_clock
) -> None:  # type: ignore[no-untyped-def]
    """A plan written at 21:00 to start today holds that morning's and evening's doses, which
    nobody was asked to give: the round does not mark them overdue."""
    from tandem.medications.plans import create_titration
    from tandem.medications.unit_mar import set_program_shifts

    with sessions() as db:
        set_program_shifts(db, world.program_a, "07:00 19:00", "program setting")
        written = create_titration(
            access_for(db, sessions, world.email("prescriber")),
            world.patient_a,
            "baclofen",
            start="5mg-tid",
            step_mg=5,
            every_days=3,
            target="10mg-tid",
            start_date=NOW.date(),
            now=NOW,
        )
        db.commit()
    sign_in(client, world.email("nurse"), world.passwords["nurse"])
    for shift in ("current", "previous"):
        listed = [k for k, _ in rows(client.get("/unit/medications", params={"shift": shift}).text)]
        assert not [k for k in listed if k.startswith(f"dose-{written.id}-")], shift
    # Tomorrow's day shift lists its doses as planned.
    later = [k for k, _ in rows(client.get("/unit/medications", params={"shift": "next"}).text)]
    assert len([k for k in later if k.startswith(f"dose-{written.id}-")]) == 2


def test_the_list_shows_what_was_recorded_since_it_was_last_shown(
    client, sessions, world: World, plans
) -> None:  # type: ignore[no-untyped-def]
    """Each plan's doses in a shift are kept per process; what was recorded against them never
    is: a report written elsewhere, then replaced, then a dose given from the chart, each shows
    on the next view of the list."""
    from tandem.medications.doses import record_administration
    from tandem.medications.storage import MedicationStatementRow

    sign_in(client, world.email("nurse"), world.passwords["nurse"])
    first = client.get("/unit/medications").text
    assert all("is-overdue" in cls for _, cls in rows(first)) and len(rows(first)) == 2
    with sessions() as db:
        nurse = access_for(db, sessions, world.email("nurse"))
        db.add(
            MedicationStatementRow(
                patient_id=world.patient_a2, program_id=world.program_a,
                dose_plan_id=plans["a2"], medication_id="baclofen", due_at=EVENING,
                time_slot="evening", dose_mg=5, taken=True, reason="",
                reported_at=NOW, recorded_by=nurse.actor.user_id,
            )
        )  # fmt: skip
        db.commit()
    listed = client.get("/unit/medications").text
    assert dict(rows(listed))[key(plans["a2"], EVENING)] == ""  # no longer overdue
    assert "reported taken by the patient" in listed
    with sessions() as db:
        report = db.scalar(select(MedicationStatementRow))
        report.taken = False
        db.commit()
    listed = client.get("/unit/medications").text
    assert "reported missed by the patient" in listed
    assert "reported taken" not in listed
    with sessions() as db:
        record_administration(
            access_for(db, sessions, world.email("nurse")), world.patient_a, plans["a"],
            due_at=EVENING, given=True, administered_at=NOW - timedelta(minutes=30),
            reason="", note="", now=NOW,
        )  # fmt: skip
        db.commit()
    listed = client.get("/unit/medications").text
    assert "given 20:30 by Nurse" in listed
    assert dict(rows(listed))[key(plans["a"], EVENING)] == ""
    assert 'class="mar-form"' not in listed
