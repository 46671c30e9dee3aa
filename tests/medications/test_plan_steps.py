"""Pure additions for stored plans: maintenance plans, plans written step by step (as a FHIR
MedicationRequest states them), and the round trip through the stored form."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from tandem.medications.dose_plan import (
    DosePlan,
    ScheduledDose,
    StepSpec,
    maintenance,
    plan_ceiling,
    plan_from_steps,
    taper,
    titration,
)
from tandem.medications.errors import ImplausibleValue, PlanRefused
from tandem.medications.renal import assess

D0 = date(2025, 3, 1)


def tid(mg: float) -> tuple[ScheduledDose, ...]:
    return tuple(ScheduledDose(s, mg) for s in ("morning", "midday", "evening"))


def steps_of(plan: DosePlan, open_end: bool) -> list[StepSpec]:
    out = [StepSpec(s.start, s.end, s.doses) for s in plan.steps]
    if open_end:
        out[-1] = StepSpec(out[-1].start, None, out[-1].doses)
    return out


@pytest.mark.parametrize(
    "plan",
    [
        titration("baclofen", "5mg-tid", 5, 3, "20mg-qid", D0),
        titration(
            "baclofen",
            "3.33mg-tid",
            3.33,
            3,
            "15mg-tid",
            D0,
            renal=assess(age=65, sex="male", weight_kg=70, creatinine_mg_dl=1.4),
        ),
        taper("baclofen", "20mg-tid", 14, D0),
        taper("lofexidine", "0.54mg-qid", 3, D0),
        maintenance("acamprosate", "666mg-tid", D0),
    ],
)
def test_stored_form_round_trips(plan: DosePlan) -> None:
    again = DosePlan.from_dict(plan.to_dict())
    assert again == plan
    assert again.to_dict() == plan.to_dict()


def test_maintenance_holds_one_dose_and_continues() -> None:
    plan = maintenance("acamprosate", "666mg-tid", D0)
    assert plan.kind == "maintenance" and plan.continues and plan.stop_date is None
    assert len(plan.days) == 7 and all(d.total_mg == 1998 for d in plan.days)


def test_maintenance_is_bounded_like_a_titration() -> None:
    renal = assess(age=60, sex="male", weight_kg=70, creatinine_mg_dl=1.6)  # CrCl 48.6
    with pytest.raises(PlanRefused) as err:
        maintenance("acamprosate", "666mg-tid", D0, renal=renal)
    assert err.value.field == "dose" and "333" in err.value.message
    assert maintenance("acamprosate", "333mg-tid", D0, renal=renal).ceiling_mg_day == 999
    with pytest.raises(PlanRefused) as no_max:
        maintenance("naltrexone", "50mg-daily", D0)
    assert no_max.value.field == "protocol_max_mg_day"
    assert maintenance("naltrexone", "50mg-daily", D0, protocol_max_mg_day=50).ceiling_mg_day == 50
    severe = assess(age=70, sex="male", weight_kg=60, creatinine_mg_dl=3.0)
    with pytest.raises(PlanRefused) as contraindicated:
        maintenance("acamprosate", "333mg-tid", D0, renal=severe)
    assert contraindicated.value.field == "renal"


def test_titration_written_as_steps_is_the_same_calendar() -> None:
    label = titration("baclofen", "5mg-tid", 5, 3, "20mg-tid", D0, hold_days=1)
    plan = plan_from_steps("baclofen", steps_of(label, open_end=True))
    assert plan.kind == "titration" and plan.continues
    assert [d.to_dict() for d in plan.days] == [d.to_dict() for d in label.days]
    assert plan.ceiling_mg_day == 80


def test_taper_written_as_steps_keeps_unequal_days() -> None:
    label = taper("baclofen", "20mg-tid", 14, D0)
    plan = plan_from_steps("baclofen", steps_of(label, open_end=False))
    assert plan.kind == "taper" and plan.stop_date == D0 + timedelta(days=14)
    assert [d.to_dict() for d in plan.days] == [d.to_dict() for d in label.days]


def test_steps_above_the_ceiling_are_refused_naming_the_step() -> None:
    steps = [
        StepSpec(D0, D0 + timedelta(days=2), tid(5), "dosageInstruction[0]"),
        StepSpec(D0 + timedelta(days=3), None, tid(30), "dosageInstruction[1]"),
    ]
    with pytest.raises(PlanRefused) as err:
        plan_from_steps("baclofen", steps)
    assert err.value.field == "dosageInstruction[1]" and "90 mg/day" in err.value.message
    renal = assess(
        age=65, sex="male", weight_kg=70, creatinine_mg_dl=1.4
    )  # CrCl 52.1: ceiling 53.3
    ok = [StepSpec(D0, None, tid(15))]  # a fixed dose; a titration's start is reduced too
    assert plan_from_steps("baclofen", ok, renal=renal).ceiling_mg_day == pytest.approx(53.3333)
    too_much = [StepSpec(D0, None, tid(20))]
    with pytest.raises(PlanRefused):
        plan_from_steps("baclofen", too_much, renal=renal)


@pytest.mark.parametrize(
    ("steps", "field", "words"),
    [
        ([StepSpec(D0, D0 + timedelta(days=2), tid(20))], "steps", "must not be stopped at once"),
        (
            [
                StepSpec(D0, D0 + timedelta(days=2), tid(10)),
                StepSpec(D0 + timedelta(days=3), D0 + timedelta(days=5), tid(15)),
            ],
            "steps",
            "must not be stopped at once",
        ),
        (
            [
                StepSpec(D0, D0 + timedelta(days=2), tid(10)),
                StepSpec(
                    D0 + timedelta(days=3), D0 + timedelta(days=5), (ScheduledDose("morning", 10),)
                ),
            ],
            "steps",
            "taper down to 5 mg/day",
        ),
    ],
)
def test_a_baclofen_plan_that_ends_above_one_step_is_refused(steps, field, words) -> None:
    with pytest.raises(PlanRefused) as err:
        plan_from_steps("baclofen", steps)
    assert err.value.field == field and words in err.value.message
    assert err.value.sources


def test_a_course_of_another_medicine_may_end() -> None:
    plan = plan_from_steps(
        "naltrexone",
        [StepSpec(D0, D0 + timedelta(days=6), (ScheduledDose("morning", 50),))],
        protocol_max_mg_day=50,
    )
    assert (
        plan.kind == "maintenance"
        and plan.stop_date == D0 + timedelta(days=7)
        and not plan.continues
    )


@pytest.mark.parametrize(
    ("steps", "field"),
    [
        ([], "steps"),
        ([StepSpec(D0, D0 - timedelta(days=1), tid(5))], "steps[0]"),
        ([StepSpec(D0, None, tid(5)), StepSpec(D0 + timedelta(days=1), None, tid(10))], "steps[0]"),
        ([StepSpec(D0, D0, tid(5)), StepSpec(D0 + timedelta(days=2), None, tid(10))], "steps[1]"),
        ([StepSpec(D0, None, (ScheduledDose("noonish", 5),))], "steps[0]"),
        (
            [StepSpec(D0, None, (ScheduledDose("morning", 5), ScheduledDose("morning", 5)))],
            "steps[0]",
        ),
        ([StepSpec(D0, None, (ScheduledDose("morning", -5),))], "steps[0]"),
        ([StepSpec(D0, None, ())], "steps[0]"),
        ([StepSpec(D0, D0 + timedelta(days=400), tid(5))], "steps"),
        ([StepSpec(D0, D0, tid(10)), StepSpec(D0 + timedelta(days=1), None, tid(5))], "steps"),
    ],
)
def test_impossible_steps_are_refused(steps, field) -> None:
    with pytest.raises(ImplausibleValue) as err:
        plan_from_steps("baclofen", steps)
    assert err.value.field == field


def test_up_and_down_is_two_plans() -> None:
    steps = [
        StepSpec(D0, D0, tid(5)),
        StepSpec(D0 + timedelta(days=1), D0 + timedelta(days=1), tid(10)),
        StepSpec(D0 + timedelta(days=2), D0 + timedelta(days=2), (ScheduledDose("morning", 5),)),
    ]
    with pytest.raises(ImplausibleValue) as err:
        plan_from_steps("baclofen", steps)
    assert "separate plans" in err.value.message


def test_plan_ceiling_for_a_form() -> None:
    mg_day, per_dose, limits, _notes = plan_ceiling(
        "baclofen", assess(age=70, sex="male", weight_kg=60, creatinine_mg_dl=3.0)
    )
    assert mg_day == pytest.approx(26.6667) and per_dose is None
    assert any(lim.rule_id == "baclofen.renal_severe" for lim in limits)
    assert plan_ceiling("naltrexone")[0] is None
