"""Medication pages through the browser's HTTP, on SQLite and PostgreSQL: the library, facts,
screening, titration and taper forms (with refusals naming the field), the calendar, doses
given and taken, side effects, and the missed-dose alert."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from tandem.alerts.models import Alert
from tandem.medications.storage import (
    DosePlanRow,
    MedicationAdministrationRow,
    MedicationFactsRow,
    MedicationStatementRow,
    SideEffectRow,
)
from tandem.storage.models import AuditEntry, Patient
from tests.conftest import World, sign_in
from tests.medications.conftest import NOW, NY

pytestmark = [
    pytest.mark.usefixtures("frozen_clock"),
    pytest.mark.one_engine,  # a page test: see tests/conftest.py
]


def utcnow() -> datetime:
    return NOW.astimezone(UTC)


def count(sessions, model) -> int:  # type: ignore[no-untyped-def]
    with sessions() as db:
        return db.scalar(select(func.count()).select_from(model))


def set_birth_date(sessions, patient_id: str, year: int = 1970) -> None:  # type: ignore[no-untyped-def]
    from datetime import date

    with sessions() as db:
        db.get(Patient, patient_id).birth_date = date(year, 1, 15)
        db.commit()


def facts_form(csrf: str, **extra: str) -> dict[str, str]:
    today = utcnow().astimezone(NY).date().isoformat()
    data = {
        "csrf_token": csrf,
        "weight_kg": "60",
        "weighed_on": today,
        "weight_basis": "actual",
        "creatinine": "3.0",
        "creatinine_unit": "mg_dl",
        "creatinine_on": today,
        "seizure_history": "yes",
        "taking_recorded": "yes",
    }
    data.update(extra)
    return data


def test_library_lists_searches_and_shows_evidence_with_citations(client, world: World) -> None:
    sign_in(client, world.email("counselor"), world.passwords["counselor"])
    listing = client.get("/medications")
    assert listing.status_code == 200
    assert (
        "Baclofen" in listing.text
        and "Naltrexone" in listing.text
        and "Medication library" in listing.text
    )
    found = client.get("/medications", params={"q": "campral"}).text
    assert "Acamprosate" in found and "Baclofen" not in found
    by_use = client.get("/medications", params={"q": "cocaine"}).text
    assert "Baclofen" in by_use and "Naltrexone" not in by_use
    page = client.get("/medications/baclofen")
    assert page.status_code == 200
    text = page.text
    # The evidence table: each study with its design, size, result and a citation link.
    assert (
        "Addolorato 2007 (Lancet)" in text
        and "71% (30/42)" in text
        and "doi:10.1016/S0140-6736(07)61814-5" in text
    )
    assert "Akhondzadeh 2000" in text and "clonidine" in text
    assert re.search(r'href="#src-addolorato_2007"', text)
    assert 'id="src-addolorato_2007"' in text
    # Unverified facts are visibly marked, with what is unconfirmed.
    assert text.count("Unverified") >= 5 and "Effect estimates unconfirmed" in text
    assert "Must be tapered." in text and "80 mg/day" in text
    assert client.get("/medications/aspirin").status_code == 404


def test_screening_from_stored_facts_shows_clearance_with_formula_and_findings(
    client, sessions, world: World
) -> None:
    set_birth_date(sessions, world.patient_a2, utcnow().year - 70)
    csrf = sign_in(client, world.email("prescriber"), world.passwords["prescriber"])
    base = f"/patients/{world.patient_a2}/medications"
    empty = client.get(base, params={"screen": "baclofen"})
    assert empty.status_code == 200 and "creatinine not recorded" in empty.text
    saved = client.post(
        f"{base}/facts", data=facts_form(csrf, taking=["opioids", "benzodiazepines"])
    )
    assert saved.status_code == 303, saved.text
    page = client.get(base, params={"screen": "baclofen"}).text
    # Man of 70 (born mid-January, so 69 or 70 today), 60 kg, creatinine 3.0 mg/dL.
    assert re.search(r"<strong>(19\.4|19\.7) mL/min</strong>", page)
    assert "Cockcroft-Gault" in page and "actual weight" in page and "CKD-EPI 2021" in page
    for reason in (
        "Creatinine clearance below 30 mL/min",
        "Takes opioids",
        "Takes benzodiazepines",
        "History of seizures",
    ):
        assert reason in page
    assert "Major caution" in page and "J Clin Pharmacol 2014" in page
    naltrexone = client.get(base, params={"screen": "naltrexone"}).text
    assert "Contraindicated" in naltrexone and "naltrexone is contraindicated" in naltrexone


def test_impossible_facts_are_refused_naming_the_field(client, sessions, world: World) -> None:
    csrf = sign_in(client, world.email("nurse"), world.passwords["nurse"])
    before = count(sessions, MedicationFactsRow)
    bad = client.post(
        f"/patients/{world.patient_a}/medications/facts", data=facts_form(csrf, creatinine="-1")
    )
    assert bad.status_code == 422
    assert (
        'id="creatinine"' in bad.text
        and 'aria-invalid="true"' in bad.text
        and "more than zero" in bad.text
    )
    # Said once, beside the field; the box at the top points to it.
    assert bad.text.count("more than zero") == 1
    assert '<a href="#creatinine">' in bad.text
    future = (utcnow() + timedelta(days=3)).date().isoformat()
    bad_date = client.post(
        f"/patients/{world.patient_a}/medications/facts",
        data=facts_form(csrf, creatinine_on=future),
    )
    assert bad_date.status_code == 422 and "future" in bad_date.text
    assert count(sessions, MedicationFactsRow) == before


def _titration(csrf: str, **extra: str) -> dict[str, str]:
    data = {
        "csrf_token": csrf,
        "kind": "titration",
        "medication": "baclofen",
        "start_mg": "5",
        "start_freq": "tid",
        "step_mg": "5",
        "every_days": "3",
        "target_mg": "20",
        "target_freq": "tid",
        "start_date": utcnow().astimezone(NY).date().isoformat(),
    }
    data.update(extra)
    return data


def test_titration_form_respects_kidneys_and_shows_the_calendar(
    client, sessions, world: World
) -> None:
    set_birth_date(sessions, world.patient_a2, utcnow().year - 70)
    csrf = sign_in(client, world.email("prescriber"), world.passwords["prescriber"])
    base = f"/patients/{world.patient_a2}/medications"
    assert client.post(f"{base}/facts", data=facts_form(csrf)).status_code == 303
    form = client.get(f"{base}/plans/new", params={"kind": "titration", "medication": "baclofen"})
    assert form.status_code == 200 and "26.7 mg/day" in form.text
    # For tandem.js's live mg/day as the prescriber types: the ceiling and doses a day.
    assert re.search(r'data-live-ceiling data-ceiling-mg-day="26\.\d+"', form.text)
    assert 'id="live-mg-day"' in form.text and "&#34;tid&#34;: 3" in form.text
    # CrCl below 30: the ceiling is 80 × 1/3 = 26.7 mg/day; 20 mg TID (60 mg/day) is refused.
    refused = client.post(f"{base}/plans", data=_titration(csrf))
    assert refused.status_code == 422
    assert 'id="target_mg"' in refused.text and re.search(
        r'id="target_mg"[^>]*aria-invalid="true"', refused.text
    )
    assert "26.7 mg/day ceiling" in refused.text and "J Clin Pharmacol 2014" in refused.text
    # The refusal is said once, under the field, and the alert above points to it.
    reason = re.search(r'id="target_mg-error">([^<]+)<', refused.text)
    assert reason and refused.text.count(reason.group(1)) == 1, reason
    assert re.search(
        r'role="alert" id="form-error">\s*<p><strong>Refused:</strong> check the '
        r'<a href="#target_mg">target dose</a>',
        refused.text,
    )
    assert count(sessions, DosePlanRow) == 0
    zero_step = client.post(f"{base}/plans", data=_titration(csrf, step_mg="0"))
    assert zero_step.status_code == 422 and "more than zero" in zero_step.text
    # Issue 9 item 3: the start (5 mg TID) and the step are reduced by 2/3 as well.
    full_start = client.post(
        f"{base}/plans", data=_titration(csrf, target_mg="5", target_freq="qid", step_mg="5")
    )
    assert full_start.status_code == 422
    assert re.search(r'id="start_mg"[^>]*aria-invalid="true"', full_start.text)
    assert "at most 1.67 mg per dose" in full_start.text
    created = client.post(
        f"{base}/plans",
        data=_titration(csrf, start_mg="1.67", target_mg="5", target_freq="qid", step_mg="1.67"),
    )
    assert created.status_code == 303, created.text
    plan_page = client.get(created.headers["location"])
    assert plan_page.status_code == 200
    assert "start, step and target reduced by 2/3" in plan_page.text
    assert 'class="calendar"' in plan_page.text and 'aria-current="date"' in plan_page.text
    assert "Total 15 mg" in plan_page.text and "Total 20 mg" in plan_page.text
    assert "CrCl" in plan_page.text and "Cockcroft-Gault" in plan_page.text
    tab = client.get(base).text
    assert "Baclofen calendar" in tab and "Total 15 mg" in tab
    with sessions() as db:
        row = db.scalars(select(DosePlanRow)).one()
        assert row.kind == "titration" and row.crcl_ml_min is not None and row.ceiling_mg_day < 27


def test_taper_replaces_the_plan_and_stopping_at_once_is_refused(
    client, sessions, world: World
) -> None:
    csrf = sign_in(client, world.email("prescriber"), world.passwords["prescriber"])
    base = f"/patients/{world.patient_a}/medications"
    created = client.post(f"{base}/plans", data=_titration(csrf))
    assert created.status_code == 303
    plan_id = int(created.headers["location"].split("/")[-1].split("?")[0])
    stop = client.post(
        f"{base}/plans/{plan_id}/stop",
        data={
            "csrf_token": csrf,
            "stop_on": (utcnow().astimezone(NY).date() + timedelta(days=2)).isoformat(),
            "reason": "not helping",
        },
    )
    assert (
        stop.status_code == 422
        and "must not be stopped at once" in stop.text
        and "Start a taper" in stop.text
    )
    at_once = client.post(
        f"{base}/plans",
        data={
            "csrf_token": csrf,
            "kind": "taper",
            "medication": "baclofen",
            "from_mg": "20",
            "from_freq": "tid",
            "over_days": "0",
            "start_date": utcnow().astimezone(NY).date().isoformat(),
        },
    )
    assert at_once.status_code == 422 and "must not be stopped at once" in at_once.text
    assert re.search(r'id="over_days"[^>]*aria-invalid="true"', at_once.text)
    start = (utcnow().astimezone(NY).date() + timedelta(days=5)).isoformat()
    form = client.get(f"{base}/plans/new", params={"kind": "taper", "medication": "baclofen"}).text
    assert 'value="14"' in form
    taper = client.post(
        f"{base}/plans",
        data={
            "csrf_token": csrf,
            "kind": "taper",
            "medication": "baclofen",
            "from_mg": "15",
            "from_freq": "tid",
            "over_days": "14",
            "start_date": start,
        },
    )
    assert taper.status_code == 303, taper.text
    with sessions() as db:
        rows = {r.kind: r for r in db.scalars(select(DosePlanRow))}
        assert (
            rows["titration"].status == "stopped" and rows["titration"].ends_on.isoformat() == start
        )
        assert (
            rows["taper"].replaces_id == rows["titration"].id and rows["taper"].ends_on is not None
        )
    page = client.get(taper.headers["location"]).text
    assert "Taper to stop" in page.lower().title() or "taper" in page


def test_doses_given_and_taken_give_adherence_and_a_missed_run_alerts(
    client, sessions, world: World
) -> None:
    csrf = sign_in(client, world.email("prescriber"), world.passwords["prescriber"])
    base = f"/patients/{world.patient_a}/medications"
    yesterday = (utcnow().astimezone(NY).date() - timedelta(days=1)).isoformat()
    created = client.post(f"{base}/plans", data=_titration(csrf, start_date=yesterday))
    assert created.status_code == 303
    plan_id = int(created.headers["location"].split("/")[-1].split("?")[0])
    page = client.get(f"{base}/plans/{plan_id}").text
    dues = sorted(re.findall(r'<option value="([0-9T:\-+]+)"', page))
    assert len(dues) == 6  # yesterday's and today's three doses, all due by 21:00
    given = client.post(
        f"{base}/plans/{plan_id}/doses",
        data={
            "csrf_token": csrf,
            "due_at": dues[0],
            "outcome": "given",
            "administered_at": dues[0][:16],
        },
    )
    assert given.status_code == 303, given.text
    no_reason = client.post(
        f"{base}/plans/{plan_id}/doses",
        data={"csrf_token": csrf, "due_at": dues[1], "outcome": "not_given", "reason": ""},
    )
    assert no_reason.status_code == 422 and "say why" in no_reason.text
    for due in dues[1:4]:
        missed = client.post(
            f"{base}/plans/{plan_id}/doses",
            data={"csrf_token": csrf, "due_at": due, "outcome": "missed", "reason": "forgot"},
        )
        assert missed.status_code == 303
    with sessions() as db:
        admin = db.scalars(select(MedicationAdministrationRow)).one()
        assert (
            admin.dose_plan_id == plan_id
            and admin.status == "completed"
            and float(admin.dose_value) == 5
        )
        assert db.scalar(select(func.count()).select_from(MedicationStatementRow)) == 3
        alerts = list(db.scalars(select(Alert).where(Alert.kind == "missed_doses")))
        assert (
            len(alerts) == 1
            and alerts[0].for_role == "prescriber"
            and alerts[0].related_id == str(plan_id)
        )
        assert "unverified" in alerts[0].detail
    # A fourth missed dose is the same run: no second alert.
    client.post(
        f"{base}/plans/{plan_id}/doses",
        data={"csrf_token": csrf, "due_at": dues[4], "outcome": "missed"},
    )
    with sessions() as db:
        assert db.scalar(select(func.count()).select_from(Alert)) == 1
    plan_page = client.get(f"{base}/plans/{plan_id}").text
    assert "✓ given" in plan_page and "✗ missed" in plan_page and "Adherence" in plan_page
    tab = client.get(base).text
    assert "doses in a row missed or not recorded" in tab


def test_side_effects_recorded_with_severity(client, sessions, world: World) -> None:
    csrf = sign_in(client, world.email("nurse"), world.passwords["nurse"])
    base = f"/patients/{world.patient_a}/medications"
    ok = client.post(
        f"{base}/side-effects",
        data={
            "csrf_token": csrf,
            "medication": "baclofen",
            "effect": "drowsiness",
            "severity": "moderate",
        },
    )
    assert ok.status_code == 303
    bad = client.post(
        f"{base}/side-effects",
        data={
            "csrf_token": csrf,
            "medication": "baclofen",
            "effect": "other",
            "severity": "mild",
            "detail": "",
        },
    )
    assert bad.status_code == 422 and "describe the side effect" in bad.text
    worse = client.post(
        f"{base}/side-effects",
        data={
            "csrf_token": csrf,
            "medication": "baclofen",
            "effect": "drowsiness",
            "severity": "awful",
        },
    )
    assert worse.status_code == 422
    assert count(sessions, SideEffectRow) == 1
    assert "Drowsiness" in client.get(base).text


def test_policy_on_the_pages(client, sessions, world: World) -> None:
    csrf = sign_in(client, world.email("nurse"), world.passwords["nurse"])
    assert client.get(f"/patients/{world.patient_b}/medications").status_code == 403
    refused = client.post(f"/patients/{world.patient_b}/medications/facts", data=facts_form(csrf))
    assert refused.status_code == 403
    assert count(sessions, MedicationFactsRow) == 0
    with sessions() as db:
        audited = db.scalars(select(AuditEntry).where(AuditEntry.outcome == "4")).all()
        assert any(a.patient_id == world.patient_b for a in audited)
    client.post("/logout", data={"csrf_token": csrf})
    sign_in(client, world.email("counselor"), world.passwords["counselor"])
    tab = client.get(f"/patients/{world.patient_a}/medications")
    assert (
        tab.status_code == 200
        and "New titration" not in tab.text
        and "Record or update facts" not in tab.text
    )


def test_a_late_dose_given_after_midnight_counts_for_its_planned_dose(
    client, sessions, world: World
) -> None:
    csrf = sign_in(client, world.email("prescriber"), world.passwords["prescriber"])
    base = f"/patients/{world.patient_a}/medications"
    yesterday = NOW.date() - timedelta(days=1)
    created = client.post(f"{base}/plans", data=_titration(csrf, start_date=yesterday.isoformat()))
    plan_id = int(created.headers["location"].split("/")[-1].split("?")[0])
    evening = datetime(yesterday.year, yesterday.month, yesterday.day, 19, tzinfo=NY).isoformat()
    late = client.post(
        f"{base}/plans/{plan_id}/doses",
        data={
            "csrf_token": csrf,
            "due_at": evening,
            "outcome": "given",
            "administered_at": f"{NOW.date()}T00:30",
        },
    )
    assert late.status_code == 303, late.text
    morning = datetime(yesterday.year, yesterday.month, yesterday.day, 8, tzinfo=NY).isoformat()
    far = client.post(
        f"{base}/plans/{plan_id}/doses",
        data={
            "csrf_token": csrf,
            "due_at": morning,
            "outcome": "given",
            "administered_at": f"{NOW.date()}T20:00",
        },
    )
    assert far.status_code == 422 and "more than 12 hours" in far.text
    page = client.get(f"{base}/plans/{plan_id}").text
    assert page.count("dose dose-given") == 1
    first_day = page[page.index(f"{yesterday.day} {yesterday:%b}") :]
    evening_cell = first_day[first_day.index("19:00") : first_day.index("Total")]
    assert "given" in evening_cell


def test_a_patient_sees_their_own_calendar_and_reports_only_on_themselves(
    client, sessions, world: World
) -> None:
    """A patient reads their plan and reports their own doses and side effects (as their daily
    check-in does, tests/recovery), but does not prescribe, stop a plan, or see another's."""
    from tandem.medications.plans import create_titration
    from tests.medications.conftest import access_for

    with sessions() as db:
        access = access_for(db, sessions, world.email("prescriber"))
        row = create_titration(
            access,
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
        plan_id = row.id
    csrf = sign_in(client, world.email("patient"), world.passwords["patient"])
    tab = client.get(f"/patients/{world.patient_a}/medications")
    assert tab.status_code == 200 and "Baclofen calendar" in tab.text
    assert "New titration" not in tab.text
    plan = client.get(f"/patients/{world.patient_a}/medications/plans/{plan_id}")
    assert plan.status_code == 200 and "Stop plan" not in plan.text
    assert "Given by a nurse" not in plan.text  # a patient reports taken or missed only
    reported = client.post(
        f"/patients/{world.patient_a}/medications/side-effects",
        data={
            "csrf_token": csrf,
            "medication": "baclofen",
            "effect": "drowsiness",
            "severity": "mild",
        },
    )
    assert reported.status_code == 303
    assert client.get(f"/patients/{world.patient_a2}/medications").status_code == 403
    refused = client.post(
        f"/patients/{world.patient_a2}/medications/side-effects",
        data={
            "csrf_token": csrf,
            "medication": "baclofen",
            "effect": "drowsiness",
            "severity": "mild",
        },
    )
    assert refused.status_code == 403


def test_read_only_roles_are_refused_every_write_at_once_and_nothing_is_stored(
    client, sessions, world: World
) -> None:
    import time as clock

    from tandem.medications.plans import create_titration
    from tests.medications.conftest import access_for

    with sessions() as db:
        access = access_for(db, sessions, world.email("prescriber"))
        row = create_titration(
            access,
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
        plan_id = row.id
    before = {
        m: count(sessions, m)
        for m in (
            MedicationFactsRow,
            DosePlanRow,
            MedicationStatementRow,
            MedicationAdministrationRow,
            SideEffectRow,
        )
    }
    csrf = sign_in(client, world.email("counselor"), world.passwords["counselor"])
    base = f"/patients/{world.patient_a}/medications"
    due = datetime(NOW.year, NOW.month, NOW.day, 8, tzinfo=NY).isoformat()
    posts = [
        (f"{base}/facts", facts_form(csrf)),
        (f"{base}/plans", _titration(csrf)),
        (f"{base}/plans/{plan_id}/doses", {"csrf_token": csrf, "due_at": due, "outcome": "taken"}),
        (f"{base}/plans/{plan_id}/doses", {"csrf_token": csrf, "due_at": due, "outcome": "given"}),
        (f"{base}/plans/{plan_id}/stop", {"csrf_token": csrf, "reason": "x"}),
        (
            f"{base}/side-effects",
            {
                "csrf_token": csrf,
                "medication": "baclofen",
                "effect": "drowsiness",
                "severity": "mild",
            },
        ),
    ]
    for url, data in posts:
        started = clock.monotonic()
        response = client.post(url, data=data)
        assert response.status_code == 403, (url, response.status_code)
        assert clock.monotonic() - started < 5, f"{url} waited on a lock"
    assert {m: count(sessions, m) for m in before} == before


def test_the_chart_tab_lists_record_whom_they_showed(client, sessions, world: World) -> None:
    from tandem.medications.plans import create_titration
    from tandem.storage.models import AuditEntryPatient
    from tests.medications.conftest import access_for

    with sessions() as db:
        access = access_for(db, sessions, world.email("prescriber"))
        create_titration(
            access,
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
    sign_in(client, world.email("counselor"), world.passwords["counselor"])
    assert client.get(f"/patients/{world.patient_a}/medications").status_code == 200
    with sessions() as db:
        searches = db.execute(
            select(AuditEntry.resource_type, AuditEntryPatient.patient_id)
            .join(AuditEntryPatient, AuditEntryPatient.audit_entry_id == AuditEntry.id)
            .where(AuditEntry.actor == world.email("counselor"), AuditEntry.operation == "search")
        ).all()
    shown: dict[str, set[str]] = {}
    for resource_type, patient_id in searches:
        shown.setdefault(resource_type, set()).add(patient_id)
    for resource_type in (
        "MedicationRequest",
        "MedicationAdministration",
        "MedicationStatement",
        "AdverseEvent",
        "Alert",
    ):
        assert shown.get(resource_type) == {world.patient_a}, resource_type


def test_qtc_and_liver_grade_recorded_on_the_page_drive_the_methadone_and_lofexidine_rules(
    client, sessions, world: World
) -> None:
    csrf = sign_in(client, world.email("prescriber"), world.passwords["prescriber"])
    base = f"/patients/{world.patient_a2}/medications"
    before = count(sessions, MedicationFactsRow)
    bad = client.post(f"{base}/facts", data=facts_form(csrf, qtc_ms="4800"))
    assert bad.status_code == 422 and "200-800 ms" in bad.text
    assert count(sessions, MedicationFactsRow) == before
    today = utcnow().astimezone(NY).date().isoformat()
    saved = client.post(
        f"{base}/facts",
        data=facts_form(
            csrf, qtc_ms="512", ecg_on=today, hepatic_impairment="moderate", taking=["alcohol"]
        ),
    )
    assert saved.status_code == 303, saved.text
    methadone = client.get(base, params={"screen": "methadone"}).text
    assert "QTc above 500 ms: consider stopping or reducing methadone" in methadone
    lofexidine = client.get(base, params={"screen": "lofexidine"}).text
    assert "Moderate hepatic impairment (Child-Pugh 7-9)" in lofexidine
    assert "lofexidine potentiates their CNS-depressant effects" in lofexidine
    form = client.get(f"{base}/facts").text
    assert '<option value="moderate" selected>' in form
