"""Issue 9 item 2: baclofen must never stop abruptly. A taper shorter than the monograph's
minimum (7 days: "about 1-2 weeks", Canadian label), one whose final drop is bigger than a
step (or that never steps down), or one that ever raises the dose is refused with the reason:
in the pure core, the CLI, the page and the API alike."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import select

from tandem.medications.dose_plan import ScheduledDose, StepSpec, plan_from_steps, taper
from tandem.medications.errors import PlanRefused
from tandem.medications.fhir_mapping import to_medication_request
from tandem.medications.storage import DosePlanRow
from tandem.storage.db import utcnow
from tests.conftest import World, make_token, sign_in
from tests.medications.test_api_medications import auth
from tests.medications.test_cli import run

D0 = date(2027, 1, 4)


def _today() -> date:
    from zoneinfo import ZoneInfo

    return utcnow().astimezone(ZoneInfo("America/New_York")).date()


@pytest.mark.parametrize(
    ("over_days", "unit_mg", "field", "words"),
    [
        (1, None, "over_days", "at least 7 days"),
        (6, None, "over_days", "at least 7 days"),
        (14, 100.0, "unit_mg", "a drop bigger than one step"),
        (14, 60.0, "unit_mg", "a drop bigger than one step"),
        (14, 7.0, "unit_mg", "never raises the dose"),
    ],
)
def test_unsafe_baclofen_tapers_are_refused(
    over_days: int, unit_mg: float | None, field: str, words: str
) -> None:
    with pytest.raises(PlanRefused) as refused:
        taper("baclofen", "20mg-tid", over_days, D0, unit_mg=unit_mg)
    assert refused.value.field == field and words in refused.value.message


@pytest.mark.parametrize(("over_days", "unit_mg"), [(7, None), (8, None), (14, None), (14, 10.0)])
def test_a_taper_steps_down_every_time_and_ends_from_one_step(
    over_days: int, unit_mg: float | None
) -> None:
    plan = taper("baclofen", "20mg-tid", over_days, D0, unit_mg=unit_mg)
    totals = [60.0] + [d.total_mg for d in plan.days]
    drops = [a - b for a, b in zip(totals, totals[1:], strict=False)]
    assert all(d >= 0 for d in drops)
    assert max(max(d.mg for d in day.doses) for day in plan.days) <= 20
    assert totals[-1] <= max(drops)
    assert len(plan.days) == over_days


def tid(mg: float) -> tuple[ScheduledDose, ...]:
    return tuple(ScheduledDose(s, mg) for s in ("morning", "midday", "evening"))


def test_a_taper_written_as_steps_meets_the_same_rules() -> None:
    def step(day: int, length: int, doses: tuple[ScheduledDose, ...]) -> StepSpec:
        start = D0 + timedelta(days=day)
        return StepSpec(start, start + timedelta(days=length - 1), doses, f"dosage[{day}]")

    with pytest.raises(PlanRefused, match="at least 7 days"):
        plan_from_steps("baclofen", [step(0, 1, tid(10)), step(1, 1, tid(5 / 3))])
    raises_one_dose = (ScheduledDose("morning", 25), ScheduledDose("evening", 25))
    with pytest.raises(PlanRefused, match="never raises the dose") as refused:
        plan_from_steps(
            "baclofen",
            [
                step(0, 4, tid(20)),
                step(4, 4, raises_one_dose),
                step(8, 4, (ScheduledDose("morning", 5),)),
            ],
        )
    assert refused.value.field == "dosage[4]"
    fine = plan_from_steps(
        "baclofen",
        [step(0, 4, tid(10)), step(4, 4, tid(5)), step(8, 4, (ScheduledDose("morning", 5),))],
    )
    assert fine.kind == "taper"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--over", "1d"], "--over: a Baclofen taper runs at least 7 days"),
        (["--over", "2w", "--unit", "100mg"], "--unit: the taper stops from 60 mg/day"),
        (["--over", "2w", "--unit", "7mg"], "--unit: a taper never raises the dose"),
    ],
)
def test_the_cli_refuses_unsafe_tapers_with_the_reason(args: list[str], words: str) -> None:
    code, out, err = run("taper", "baclofen", "--from", "20mg-tid", *args)
    assert code == 2 and words in err and "Traceback" not in out + err


def test_the_page_refuses_a_taper_shorter_than_the_minimum(client, sessions, world: World) -> None:
    csrf = sign_in(client, world.email("prescriber"), world.passwords["prescriber"])
    short = client.post(
        f"/patients/{world.patient_a}/medications/plans",
        data={
            "csrf_token": csrf,
            "kind": "taper",
            "medication": "baclofen",
            "from_mg": "20",
            "from_freq": "tid",
            "over_days": "3",
            "start_date": _today().isoformat(),
        },
    )
    assert short.status_code == 422 and "at least 7 days" in short.text
    with sessions() as db:
        assert db.scalars(select(DosePlanRow)).all() == []


def test_the_api_refuses_a_taper_shorter_than_the_minimum(client, sessions, world: World) -> None:
    token = make_token(sessions, world.email("prescriber"), "user/*.cruds")
    body = to_medication_request(
        taper("baclofen", "20mg-tid", 14, _today() + timedelta(days=2)),
        f"Patient/{world.patient_a}",
        status="active",
        intent="order",
    )
    body.pop("note")
    body["dosageInstruction"] = body["dosageInstruction"][-3:]
    refused = client.post("/fhir/MedicationRequest", json=body, headers=auth(token))
    assert refused.status_code == 422, refused.text
    assert refused.json()["resourceType"] == "OperationOutcome"
    assert "at least 7 days" in refused.text
    with sessions() as db:
        assert db.scalars(select(DosePlanRow)).all() == []
