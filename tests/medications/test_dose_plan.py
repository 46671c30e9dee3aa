"""Titration and taper calendars, day by day, and the bounds a plan must respect."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from tandem.medications.dose import Dose, Frequency, parse_days, parse_dose, parse_mg
from tandem.medications.dose_plan import renal_titration, taper, titration
from tandem.medications.errors import (
    DoseParseError,
    ImplausibleValue,
    PlanRefused,
    UnknownMedication,
)
from tandem.medications.renal import RenalResult, assess

D0 = date(2025, 3, 1)
TID = ("morning", "midday", "evening")
QID = ("morning", "midday", "evening", "bedtime")


def calendar(plan) -> list[tuple[str, tuple[tuple[str, float], ...]]]:
    return [(d.date.isoformat(), tuple((x.time_slot, x.mg) for x in d.doses)) for d in plan.days]


def tid(a: float, b: float | None = None, c: float | None = None):
    b = a if b is None else b
    c = a if c is None else c
    return tuple((s, mg) for s, mg in zip(TID, (a, b, c), strict=True) if mg)


def day(n: int) -> str:
    return (D0 + timedelta(days=n - 1)).isoformat()


# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("text", "mg", "freq"),
    [
        ("5mg-tid", 5, Frequency.TID),
        ("20mg-qid", 20, Frequency.QID),
        ("20 mg QID", 20, Frequency.QID),
        ("10mg-bid", 10, Frequency.BID),
        ("50mg-daily", 50, Frequency.DAILY),
        ("0.18mg-qid", 0.18, Frequency.QID),
    ],
)
def test_parse_dose(text, mg, freq) -> None:
    assert parse_dose(text) == Dose(mg, freq)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("5mg-xyz", DoseParseError),
        ("five mg tid", DoseParseError),
        ("5-tid", DoseParseError),
        ("0mg-tid", ImplausibleValue),
        ("-5mg-tid", ImplausibleValue),
        ("", DoseParseError),
    ],
)
def test_parse_dose_refuses(text, error) -> None:
    with pytest.raises(error) as err:
        parse_dose(text, "start")
    assert err.value.field == "start"


def test_parse_amounts_and_durations() -> None:
    assert parse_mg("5mg") == 5 and parse_mg("2.5") == 2.5
    assert (parse_days("3d"), parse_days("3"), parse_days("2w"), parse_days("10 days")) == (
        3,
        3,
        14,
        10,
    )
    assert parse_days("0d", allow_zero=True) == 0
    for bad in ("0mg", "-5mg"):
        with pytest.raises(ImplausibleValue):
            parse_mg(bad, "step_mg")
    with pytest.raises(ImplausibleValue):
        parse_days("0d", "every_days")
    with pytest.raises(ImplausibleValue):
        parse_days("-3d", "every_days")
    with pytest.raises(DoseParseError):
        parse_days("3 months", "over_days")


# ---------------------------------------------------------------- titration calendars


def test_label_titration_5_to_20_mg_tid_every_3_days() -> None:
    plan = titration("baclofen", Dose(5, Frequency.TID), 5, 3, Dose(20, Frequency.TID), D0)
    assert calendar(plan) == [
        ("2025-03-01", tid(5)),
        ("2025-03-02", tid(5)),
        ("2025-03-03", tid(5)),
        ("2025-03-04", tid(10)),
        ("2025-03-05", tid(10)),
        ("2025-03-06", tid(10)),
        ("2025-03-07", tid(15)),
        ("2025-03-08", tid(15)),
        ("2025-03-09", tid(15)),
        ("2025-03-10", tid(20)),
        ("2025-03-11", tid(20)),
        ("2025-03-12", tid(20)),
    ]
    assert [d.total_mg for d in plan.days] == [15] * 3 + [30] * 3 + [45] * 3 + [60] * 3
    assert plan.continues and plan.stop_date is None
    assert plan.ceiling_mg_day == 80
    assert [str(s.uniform_dose) for s in plan.steps] == [
        "5mg-tid",
        "10mg-tid",
        "15mg-tid",
        "20mg-tid",
    ]
    assert any("not given" in n.text for n in plan.notes)  # kidney function not checked


def test_titration_to_the_label_maximum_switches_to_qid() -> None:
    plan = titration("baclofen", "5mg-tid", 5, 3, "20mg-qid", D0, hold_days=2)
    qid20 = tuple((s, 20.0) for s in QID)
    assert calendar(plan)[9:] == [
        (day(10), tid(20)),
        (day(11), tid(20)),
        (day(12), tid(20)),
        (day(13), qid20),
        (day(14), qid20),
    ]
    assert plan.days[-1].total_mg == 80


def test_titration_last_step_is_capped_at_the_target() -> None:
    plan = titration("baclofen", "5mg-tid", 10, 2, "20mg-tid", D0)
    assert [d.doses[0].mg for d in plan.days] == [5, 5, 15, 15, 20, 20]


def test_target_above_the_label_maximum_is_refused_with_its_source() -> None:
    with pytest.raises(PlanRefused) as err:
        titration("baclofen", "5mg-tid", 5, 3, "25mg-qid", D0)
    assert err.value.field == "target"
    assert "100 mg/day" in err.value.reason and "80 mg/day" in err.value.reason
    assert any(s.id == "ozobax_label" for s in err.value.sources)


def test_protocol_maximum_only_ever_lowers_the_ceiling() -> None:
    with pytest.raises(PlanRefused) as err:
        titration("baclofen", "5mg-tid", 5, 3, "20mg-tid", D0, protocol_max_mg_day=45)
    assert "protocol maximum 45" in err.value.reason
    plan = titration("baclofen", "5mg-tid", 5, 3, "15mg-tid", D0, protocol_max_mg_day=45)
    assert plan.ceiling_mg_day == 45
    high = titration("baclofen", "5mg-tid", 5, 3, "20mg-tid", D0, protocol_max_mg_day=300)
    assert high.ceiling_mg_day == 80
    assert any("lower maximum applies" in n.text for n in high.notes)


@pytest.mark.parametrize(
    ("renal", "ceiling", "rule_id", "target"),
    [
        # CrCl 52.1 (F1 worked value): 80 × 2/3
        (
            assess(age=65, sex="male", weight_kg=70, creatinine_mg_dl=1.4),
            53.3333,
            "baclofen.renal_mild",
            "15mg-tid",
        ),
        # CrCl 36.5: 80 × 1/2
        (
            assess(age=70, sex="male", weight_kg=60, creatinine_mg_dl=1.6),
            40,
            "baclofen.renal_moderate",
            "10mg-tid",
        ),
        # CrCl 19.4 (F1 worked value): 80 × 1/3
        (
            assess(age=70, sex="male", weight_kg=60, creatinine_mg_dl=3.0),
            26.6667,
            "baclofen.renal_severe",
            "5mg-qid",
        ),
    ],
)
def test_kidney_function_lowers_the_ceiling_and_says_why(renal, ceiling, rule_id, target) -> None:
    start, step, _, _ = renal_titration("baclofen", renal)
    plan = titration("baclofen", start, step, 3, target, D0, renal=renal)
    assert plan.ceiling_mg_day == pytest.approx(ceiling)
    binding = plan.binding_limit
    assert binding.rule_id == rule_id
    assert any(s.doi == "10.1002/jcph.247" for s in binding.source)
    with pytest.raises(PlanRefused) as err:
        titration("baclofen", start, step, 3, "20mg-tid", D0, renal=renal)
    assert err.value.field == "target"
    assert f"{round(ceiling, 1):g} mg/day ceiling" in err.value.reason
    assert any(s.doi == "10.1002/jcph.247" for s in err.value.sources)


def test_renal_mild_plan_within_the_reduced_ceiling() -> None:
    renal = assess(age=65, sex="male", weight_kg=70, creatinine_mg_dl=1.4)
    plan = titration("baclofen", "3.33mg-tid", 3.33, 3, "15mg-tid", D0, renal=renal)
    assert plan.ceiling_mg_day == pytest.approx(53.3333)
    lim = plan.binding_limit
    assert lim.rule_id == "baclofen.renal_mild"
    assert "80 × 2/3" in lim.reason
    assert any(s.doi == "10.1002/jcph.247" for s in lim.source)
    assert any("not a label rule" in n.text for n in plan.notes)
    with pytest.raises(PlanRefused) as err:
        titration("baclofen", "3.33mg-tid", 3.33, 3, "20mg-tid", D0, renal=renal)
    assert err.value.field == "target" and "53.3 mg/day" in err.value.reason


# Issue 9 item 3: a kidney reduction (fact sheet C3/F3: by 1/3, 1/2, 2/3 for CrCl 50-80,
# 30-50, <30) applies to the start and each step as well as the ceiling (and so the target).
@pytest.mark.parametrize(
    ("creatinine", "start", "step", "reduce_by"),
    [
        (1.4, 3.33, 3.33, "1/3"),  # CrCl 52.1: 5 mg × 2/3
        (1.6, 2.5, 2.5, "1/2"),  # CrCl 36.5: 5 mg × 1/2
        (3.0, 1.67, 1.67, "2/3"),  # CrCl 19.4: 5 mg × 1/3
    ],
)
def test_kidney_function_reduces_the_start_and_the_step(
    creatinine: float, start: float, step: float, reduce_by: str
) -> None:
    age = 65 if creatinine == 1.4 else 70
    renal = assess(
        age=age, sex="male", weight_kg=70 if age == 65 else 60, creatinine_mg_dl=creatinine
    )
    reduced = renal_titration("baclofen", renal)
    assert reduced is not None and (reduced[0].mg, reduced[1]) == (start, step)
    with pytest.raises(PlanRefused) as err:
        titration("baclofen", "5mg-tid", start, 3, "5mg-qid", D0, renal=renal)
    assert err.value.field == "start" and f"reduced by {reduce_by}" in err.value.reason
    with pytest.raises(PlanRefused) as err:
        titration("baclofen", f"{start}mg-tid", 5, 3, "5mg-qid", D0, renal=renal)
    assert err.value.field == "step_mg" and f"reduced by {reduce_by}" in err.value.reason
    plan = titration("baclofen", f"{start}mg-tid", step, 3, "5mg-tid", D0, renal=renal)
    assert plan.days[0].doses[0].mg == start
    assert f"start, step and target reduced by {reduce_by}" in plan.notes[0].text


def test_normal_kidneys_keep_the_labelled_start() -> None:
    renal = assess(age=45, sex="female", weight_kg=60, creatinine_mg_dl=0.9)  # CrCl 74.8? mild
    healthy = assess(age=30, sex="male", weight_kg=80, creatinine_mg_dl=0.9)  # CrCl > 80
    assert renal_titration("baclofen", healthy) is None
    assert renal_titration("baclofen", None) is None
    assert renal_titration("baclofen", renal) is not None


def test_dialysis_refuses_even_the_start() -> None:
    with pytest.raises(PlanRefused) as err:
        titration("baclofen", "5mg-tid", 5, 3, "10mg-tid", D0, renal=RenalResult(on_dialysis=True))
    assert err.value.field == "start" and "5 mg daily" in err.value.reason


def test_acamprosate_contraindicated_by_kidney_function() -> None:
    renal = assess(age=70, sex="male", weight_kg=60, creatinine_mg_dl=3.0)
    with pytest.raises(PlanRefused) as err:
        titration("acamprosate", "333mg-tid", 333, 7, "666mg-tid", D0, renal=renal)
    assert err.value.field == "renal" and "contraindicated" in err.value.reason


def test_lofexidine_per_dose_ceiling_from_egfr() -> None:
    renal = assess(age=65, sex="male", weight_kg=70, creatinine_mg_dl=1.4)  # eGFR 55.8
    plan = titration("lofexidine", "0.18mg-qid", 0.18, 1, "0.36mg-qid", D0, renal=renal)
    assert (plan.ceiling_mg_day, plan.ceiling_mg_per_dose) == (1.44, 0.36)
    with pytest.raises(PlanRefused) as err:
        titration("lofexidine", "0.18mg-qid", 0.18, 1, "0.54mg-qid", D0, renal=renal)
    assert err.value.field == "target" and "eGFR 30-89.9" in err.value.reason


def test_medication_without_a_known_maximum_needs_a_protocol_maximum() -> None:
    with pytest.raises(PlanRefused) as err:
        titration("naltrexone", "25mg-daily", 25, 3, "50mg-daily", D0)
    assert err.value.field == "protocol_max_mg_day"
    plan = titration("naltrexone", "25mg-daily", 25, 3, "50mg-daily", D0, protocol_max_mg_day=50)
    assert plan.ceiling_mg_day == 50


def test_a_baclofen_course_may_not_end_without_a_taper() -> None:
    with pytest.raises(PlanRefused) as err:
        titration("baclofen", "5mg-tid", 5, 3, "10mg-tid", D0, then_stop=True)
    assert err.value.field == "then_stop" and "abrupt" in err.value.reason


@pytest.mark.parametrize(
    ("args", "kwargs", "field", "error"),
    [
        (("baclofen", "5mg-tid", 0, 3, "20mg-tid", D0), {}, "step_mg", ImplausibleValue),
        (("baclofen", "5mg-tid", -5, 3, "20mg-tid", D0), {}, "step_mg", ImplausibleValue),
        (("baclofen", "5mg-tid", 5, 0, "20mg-tid", D0), {}, "every_days", ImplausibleValue),
        (("baclofen", "5mg-tid", 5, -3, "20mg-tid", D0), {}, "every_days", ImplausibleValue),
        (("baclofen", "5mg-xyz", 5, 3, "20mg-tid", D0), {}, "start", DoseParseError),
        (("baclofen", "5mg-tid", 5, 3, "lots", D0), {}, "target", DoseParseError),
        (("baclofen", "20mg-tid", 5, 3, "10mg-tid", D0), {}, "target", ImplausibleValue),
        (("baclofen", "20mg-qid", 5, 3, "20mg-tid", D0), {}, "target", ImplausibleValue),
        (("baclofen", "5mg-tid", 5, 3, "5mg-tid", D0), {}, "target", ImplausibleValue),
        (
            ("baclofen", "5mg-tid", 5, 3, "20mg-tid", "2025-03-01"),
            {},
            "start_date",
            ImplausibleValue,
        ),
        (
            ("baclofen", "5mg-tid", 5, 3, "20mg-tid", D0),
            {"protocol_max_mg_day": -10},
            "protocol_max_mg_day",
            ImplausibleValue,
        ),
        (("aspirin", "5mg-tid", 5, 3, "20mg-tid", D0), {}, "medication_id", UnknownMedication),
    ],
)
def test_titration_refuses_impossible_input(args, kwargs, field, error) -> None:
    with pytest.raises(error) as err:
        titration(*args, **kwargs)
    assert err.value.field == field
    assert isinstance(err.value, ValueError)


# ---------------------------------------------------------------- taper calendars


def test_taper_20_mg_tid_over_two_weeks() -> None:
    plan = taper("baclofen", "20mg-tid", 14, D0)
    # Daily totals fall 60 → 55, 50, ..., 5 in 5 mg steps spread over 14 days; each day's
    # total is split over the three slots (extra 5 mg units to the earlier slots).
    assert calendar(plan) == [
        (day(1), tid(20, 20, 15)),
        (day(2), tid(20, 15, 15)),
        (day(3), tid(15, 15, 15)),
        (day(4), tid(15, 15, 10)),
        (day(5), tid(15, 15, 10)),
        (day(6), tid(15, 10, 10)),
        (day(7), tid(10, 10, 10)),
        (day(8), tid(10, 10, 5)),
        (day(9), tid(10, 5, 5)),
        (day(10), tid(10, 5, 5)),
        (day(11), tid(5, 5, 5)),
        (day(12), (("morning", 5.0), ("evening", 5.0))),
        (day(13), (("morning", 5.0),)),
        (day(14), (("morning", 5.0),)),
    ]
    assert [d.total_mg for d in plan.days] == [55, 50, 45, 40, 40, 35, 30, 25, 20, 20, 15, 10, 5, 5]
    assert plan.stop_date == date(2025, 3, 15)
    assert not plan.continues
    assert "abrupt" in plan.notes[0].text


def test_a_taper_shorter_than_the_monographs_minimum_is_refused() -> None:
    # Issue 9 item 2: was accepted with a note; the monograph's minimum is 7 days.
    with pytest.raises(PlanRefused) as err:
        taper("baclofen", "20mg-tid", 3, D0)
    assert err.value.field == "over_days" and "1-2 weeks" in err.value.reason


def test_taper_from_5_mg_tid() -> None:
    plan = taper("baclofen", "5mg-tid", 7, D0)
    two = (("morning", 5.0), ("evening", 5.0))
    one = (("morning", 5.0),)
    assert [doses for _, doses in calendar(plan)] == [two] * 3 + [one] * 4


def test_taper_already_at_the_smallest_dose_holds_then_stops() -> None:
    plan = taper("baclofen", "5mg-daily", 7, D0)
    assert [d.total_mg for d in plan.days] == [5] * 7
    assert plan.stop_date == D0 + timedelta(days=7)
    assert any("smallest step" in n.text for n in plan.notes)


def test_lofexidine_taper_in_tablet_units() -> None:
    plan = taper("lofexidine", "0.54mg-qid", 3, D0)
    assert calendar(plan) == [
        (day(1), (("morning", 0.54), ("midday", 0.36), ("evening", 0.36), ("bedtime", 0.36))),
        (day(2), (("morning", 0.36), ("midday", 0.36), ("evening", 0.18), ("bedtime", 0.18))),
        (day(3), (("morning", 0.18), ("evening", 0.18), ("bedtime", 0.18))),
    ]
    assert [d.total_mg for d in plan.days] == [1.62, 1.08, 0.54]


@pytest.mark.parametrize(
    "dose", ["5mg-tid", "10mg-tid", "20mg-tid", "20mg-qid", "15mg-bid", "25mg-qid", "75mg-qid"]
)
@pytest.mark.parametrize("days", [7, 10, 14, 21, 30])
def test_taper_shape(dose, days) -> None:
    plan = taper("baclofen", dose, days, D0)
    totals = [d.total_mg for d in plan.days]
    start_total = parse_dose(dose).mg_per_day
    assert len(plan.days) == days
    assert [d.date for d in plan.days] == [D0 + timedelta(days=i) for i in range(days)]
    assert all(t > 0 for t in totals)
    assert all(a >= b for a, b in zip(totals, totals[1:], strict=False))
    assert totals[0] < start_total
    assert totals[-1] == min(totals)
    if days >= start_total / 5 - 1:
        assert totals[-1] == 5  # enough days: down to one 5 mg unit
    assert all(x.mg > 0 and x.mg % 5 == 0 for d in plan.days for x in d.doses)
    assert plan.stop_date == D0 + timedelta(days=days)
    # evenly: every drop, including the last one to zero, within one 5 mg unit of the others
    levels = list(dict.fromkeys(totals))
    steps = [start_total, *levels, 0]
    drops = [a - b for a, b in zip(steps, steps[1:], strict=False)]
    assert max(drops) - min(drops) <= 5


def test_stopping_baclofen_at_once_is_refused() -> None:
    with pytest.raises(PlanRefused) as err:
        taper("baclofen", "20mg-tid", 0, D0)
    assert err.value.field == "over_days"
    assert "abrupt" in err.value.reason and "seizures" in err.value.reason
    assert any(s.id == "ozobax_label" for s in err.value.sources)


def test_zero_day_taper_for_other_medicines_is_invalid_not_a_refusal() -> None:
    with pytest.raises(ImplausibleValue) as err:
        taper("naltrexone", "50mg-daily", 0, D0, unit_mg=25)
    assert not isinstance(err.value, PlanRefused)
    assert err.value.field == "over_days"


@pytest.mark.parametrize(
    ("args", "kwargs", "field", "error"),
    [
        (("baclofen", "20mg-tid", -7, D0), {}, "over_days", ImplausibleValue),
        (("baclofen", "20mg-tid", 7.5, D0), {}, "over_days", ImplausibleValue),
        (("baclofen", "twenty", 7, D0), {}, "from_dose", DoseParseError),
        (("baclofen", "20mg-tid", 7, D0), {"unit_mg": 0}, "unit_mg", ImplausibleValue),
        (("naltrexone", "50mg-daily", 7, D0), {}, "unit_mg", ImplausibleValue),
        (("nope", "20mg-tid", 7, D0), {}, "medication_id", UnknownMedication),
    ],
)
def test_taper_refuses_impossible_input(args, kwargs, field, error) -> None:
    with pytest.raises(error) as err:
        taper(*args, **kwargs)
    assert err.value.field == field


def test_plan_to_dict_shape() -> None:
    body = taper("baclofen", "20mg-tid", 14, D0).to_dict()
    assert body["kind"] == "taper" and body["stop_date"] == "2025-03-15"
    first = body["days"][0]
    assert first == {
        "date": "2025-03-01",
        "doses": [
            {"time_slot": "morning", "mg": 20.0},
            {"time_slot": "midday", "mg": 20.0},
            {"time_slot": "evening", "mg": 15.0},
        ],
        "total_mg": 55.0,
    }


def test_plan_notes_name_no_rule_ids() -> None:
    """A plan's notes are read by people (the plan page, the CLI): they say which check was not
    made, never a rule's id."""
    from tandem.medications.monograph import load_monograph

    rule_ids = {r.id for r in load_monograph("baclofen").rules}
    without_kidneys = titration("baclofen", "5mg-tid", 5, 3, "20mg-tid", D0, renal=None)
    unknown_dialysis = titration(
        "baclofen",
        "3.33mg-tid",
        3.33,
        3,
        "15mg-tid",
        D0,
        renal=assess(age=65, sex="male", weight_kg=70, creatinine_mg_dl=1.4),
    )
    notes = [n.text for n in (*without_kidneys.notes, *unknown_dialysis.notes)]
    assert any("kidney limits were not checked" in n for n in notes)
    assert not [n for n in notes for rule_id in rule_ids if rule_id in n]
