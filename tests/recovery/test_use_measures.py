"""Use tracking, pure: input checks at their edges and the derived measures, where a day
nobody reported is unknown, never abstinent."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from tandem.errors import InvalidInput
from tandem.recovery import use_measures as m
from tandem.recovery.use_measures import ScreenResult, UseReport

D = date(2026, 11, 10)


def no(day: date, substance: str = "alcohol") -> UseReport:
    return UseReport(day, substance, False, 0.0 if substance == "alcohol" else None)


def drank(day: date, drinks: float | None) -> UseReport:
    return UseReport(day, "alcohol", True, drinks)


def test_standard_drink_and_heavy_day_figures_come_from_the_cited_data() -> None:
    facts = m.use_facts()
    assert facts.standard_drink.grams_alcohol == 14
    assert (facts.heavy_drinking_day.female, facts.heavy_drinking_day.male) == (4, 5)
    assert all(s.url and "niaaa.nih.gov" in s.url for s in facts.heavy_drinking_day.source)
    assert facts.loinc.drinks_per_day.code == "74013-4"


def test_no_reports_is_not_abstinence() -> None:
    result = m.abstinence([], D, D + timedelta(days=29), "alcohol")
    assert (result.days, result.abstinent, result.used, result.unknown) == (30, 0, 0, 30)
    assert result.percent_abstinent == 0
    assert result.percent_abstinent_of_reported is None


def test_a_single_day_period_counts_that_day_only() -> None:
    reports = [no(D), drank(D + timedelta(days=1), 2)]
    assert m.abstinence(reports, D, D, "alcohol").abstinent == 1
    nxt = m.abstinence(reports, D + timedelta(days=1), D + timedelta(days=1), "alcohol")
    assert (nxt.abstinent, nxt.used, nxt.percent_abstinent) == (0, 1, 0)


def test_percent_days_abstinent_counts_unreported_days_apart() -> None:
    reports = [no(D), no(D + timedelta(days=1)), drank(D + timedelta(days=2), 3)]
    result = m.abstinence(reports, D, D + timedelta(days=3), "alcohol")
    assert (result.abstinent, result.used, result.unknown) == (2, 1, 1)
    assert result.percent_abstinent == 50.0
    assert result.percent_abstinent_of_reported == 66.7


def test_a_period_ending_before_it_starts_is_refused() -> None:
    with pytest.raises(InvalidInput) as refused:
        m.abstinence([], D, D - timedelta(days=1), "alcohol")
    assert refused.value.field == "end"


def test_abstinent_from_every_substance_needs_an_answer_for_each() -> None:
    tracked = ("alcohol", "opioids")
    only_alcohol = [no(D)]
    both = [no(D), no(D, "opioids")]
    one_used = [no(D), UseReport(D, "opioids", True)]
    assert m.abstinence(only_alcohol, D, D, None, tracked).unknown == 1
    assert m.abstinence(both, D, D, None, tracked).abstinent == 1
    assert m.abstinence(one_used, D, D, None, tracked).used == 1


def test_the_current_run_stops_at_a_day_nobody_reported() -> None:
    today = D + timedelta(days=5)
    reports = [no(today), no(today - timedelta(days=1)), no(today - timedelta(days=3))]
    assert m.current_run(reports, today, "alcohol") == 2
    assert m.current_run([], today, "alcohol") == 0
    assert m.current_run([drank(today, 1)], today, "alcohol") == 0


@pytest.mark.parametrize(
    ("drinks", "sex", "heavy", "possibly"),
    [
        (3.9, "female", 0, 0),
        (4, "female", 1, 0),
        (4, "male", 0, 0),
        (4.9, "male", 0, 0),
        (5, "male", 1, 0),
        (3.9, None, 0, 0),
        (4, None, 0, 1),
        (5, None, 1, 0),
    ],
)
def test_heavy_drinking_day_edges(
    drinks: float, sex: m.Sex | None, heavy: int, possibly: int
) -> None:
    result = m.heavy_drinking_days([drank(D, drinks)], D, D, sex)
    assert (result.heavy, result.possibly_heavy) == (heavy, possibly)
    assert m.is_heavy(drinks, sex) == (True if heavy else (None if possibly else False))


def test_unknown_sex_says_which_threshold_and_drinks_unknown_are_counted_apart() -> None:
    result = m.heavy_drinking_days(
        [drank(D, None), no(D + timedelta(days=1))], D, D + timedelta(days=1), None
    )
    assert (result.heavy, result.possibly_heavy, result.drinks_unknown) == (0, 0, 1)
    assert "sex not recorded" in result.threshold


@pytest.mark.parametrize(
    ("substance", "used", "drinks", "field"),
    [
        ("opioids", True, 2.0, "standard_drinks"),
        ("alcohol", None, -1.0, "standard_drinks"),
        ("alcohol", True, 0.0, "standard_drinks"),
        ("alcohol", False, 2.0, "standard_drinks"),
        ("alcohol", None, 10000.0, "standard_drinks"),
        ("alcohol", None, float("nan"), "standard_drinks"),
        ("glue", True, None, "substance"),
        ("cannabis", None, None, "used"),
    ],
)
def test_impossible_use_reports_name_the_field(
    substance: str, used: bool | None, drinks: float | None, field: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        m.check_use(substance, used, drinks, D, D)
    assert refused.value.field == field


def test_a_day_not_yet_happened_is_refused_and_drinks_imply_use() -> None:
    with pytest.raises(InvalidInput) as refused:
        m.check_use("alcohol", False, None, D + timedelta(days=1), D)
    assert refused.value.field == "day"
    assert m.check_use("alcohol", None, 2.25, D, D) == UseReport(D, "alcohol", True, 2.2)
    assert m.check_use("alcohol", None, 0, D, D).used is False


def test_screen_results_are_positive_negative_or_invalid_once_each() -> None:
    assert m.check_screen([("opioids", "positive")], D, D) == (ScreenResult("opioids", "positive"),)
    for results, field in (
        ([("opioids", "maybe")], "results.opioids"),
        ([], "results"),
        ([("opioids", "negative"), ("opioids", "positive")], "results.opioids"),
    ):
        with pytest.raises(InvalidInput) as refused:
            m.check_screen(results, D, D)
        assert refused.value.field == field


@pytest.mark.parametrize("rating", [-1, 11, True, 2.5])
def test_a_craving_rating_is_a_whole_number_from_0_to_10(rating: object) -> None:
    with pytest.raises(InvalidInput):
        m.check_craving("alcohol", rating)  # type: ignore[arg-type]
    assert m.check_craving("alcohol", 0) == ("alcohol", 0)
    assert m.check_craving("alcohol", 10) == ("alcohol", 10)


def test_the_month_shows_reported_unreported_and_future_days() -> None:
    today = date(2026, 11, 15)
    reports = [no(date(2026, 11, 3)), drank(date(2026, 11, 4), 6)]
    screens = [(date(2026, 11, 4), ScreenResult("opioids", "negative"))]
    month = m.month_view(2026, 11, reports, screens, today, ("alcohol",), "male")
    cells = {c.day: c for week in month.weeks for c in week if c.in_month}
    assert cells[date(2026, 11, 3)].state == "abstinent"
    assert cells[date(2026, 11, 4)].state == "used"
    assert cells[date(2026, 11, 4)].substances[0].heavy is True
    assert cells[date(2026, 11, 4)].screens == (ScreenResult("opioids", "negative"),)
    assert cells[date(2026, 11, 5)].state == "unknown"
    assert cells[date(2026, 11, 16)].future
    assert month.next is None and month.previous == (2026, 10)
    assert all(len(week) == 7 for week in month.weeks)
