"""The medications domain's input checks, pure (no session, no clock): every refusal names its
field; recorded times follow tandem.clock's one tolerance; planned doses have their own window;
the program's today is the program's calendar day, not UTC's."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from tandem.clock import CLOCK_SKEW, program_today
from tandem.errors import InvalidInput
from tandem.medications.errors import ImplausibleValue, MedicationInputError, PlanRefused
from tandem.medications.monograph import load_monograph
from tandem.medications.validation import (
    GIVEN_WINDOW,
    MAX_NOTE,
    RECORD_AHEAD,
    RECORD_BACK,
    FactsInput,
    check_administration,
    check_facts,
    check_side_effect,
    check_start,
    check_statement,
    check_stop,
    recordable,
)
from tests.medications.conftest import NOW, NY

TODAY = NOW.date()  # 4 March 2026 in New York
BIRTH = date(1970, 1, 15)
NAIVE = datetime(2026, 3, 4, 12, 0)  # noqa: DTZ001 - a naive time is the input under test


def facts(values: FactsInput, gender: str | None = "female") -> FactsInput:
    return check_facts(values, today=TODAY, now=NOW, birth_date=BIRTH, gender=gender)


def test_medication_input_errors_are_the_apps_invalid_input() -> None:
    error = ImplausibleValue("weight_kg", "must be more than zero")
    assert isinstance(error, InvalidInput) and isinstance(error, MedicationInputError)
    assert (error.field, error.message) == ("weight_kg", "must be more than zero")
    assert str(error) == "weight_kg: must be more than zero"
    assert isinstance(error, ValueError)


@pytest.mark.parametrize(
    ("values", "field", "words"),
    [
        (FactsInput(weight_kg=0), "weight_kg", "more than zero"),
        (FactsInput(weight_kg=-60), "weight_kg", "more than zero"),
        (FactsInput(weight_kg=float("nan")), "weight_kg", "must be a number"),
        (FactsInput(weight_kg=700), "weight_kg", "plausible range for weight, 20-400 kg"),
        (FactsInput(weight_kg=5000), "weight_kg", "not a clinical threshold"),
        (FactsInput(ideal_weight_kg=300), "ideal_weight_kg", "20-200 kg"),
        (FactsInput(creatinine_mg_dl=40, creatinine_on=TODAY), "creatinine_mg_dl", "0.2-25"),
        (FactsInput(creatinine_mg_dl=0.01, creatinine_on=TODAY), "creatinine_mg_dl", "0.2-25"),
        (FactsInput(creatinine_mg_dl=88, creatinine_on=TODAY), "creatinine_mg_dl", "µmol/L"),
        (FactsInput(alt_u_l=20001), "alt_u_l", "plausible"),
        (FactsInput(ast_u_l=True), "ast_u_l", "must be a number"),  # type: ignore[arg-type]
        (FactsInput(qtc_ms=1000), "qtc_ms", "plausible"),
        (FactsInput(weighed_on=TODAY + timedelta(days=1)), "weighed_on", "future"),
        (FactsInput(ecg_on=date(1969, 12, 31)), "ecg_on", "before the patient's birth"),
        (FactsInput(last_opioid_use_on=TODAY + timedelta(days=3)), "last_opioid_use_on", "future"),
        (FactsInput(last_drink_at=NAIVE), "last_drink_at", "time zone"),
        (FactsInput(last_drink_at=NOW + timedelta(minutes=3)), "last_drink_at", "future"),
        (FactsInput(sex_for_kidney="x"), "sex_for_kidney", "female or male"),
        (FactsInput(weight_basis="lean"), "weight_basis", "actual, ideal or adjusted"),
        (FactsInput(weight_basis="ideal"), "ideal_weight_kg", "ideal weight basis"),
        (FactsInput(creatinine_mg_dl=1.0), "creatinine_on", "date"),
        (FactsInput(taking=("moonshine",)), "taking", "unknown"),
        (FactsInput(note="x" * (MAX_NOTE + 1)), "note", f"under {MAX_NOTE}"),
    ],
)
def test_each_refused_fact_names_its_field(values: FactsInput, field: str, words: str) -> None:
    with pytest.raises(MedicationInputError) as refused:
        facts(values)
    assert refused.value.field == field and words in refused.value.message


def test_a_patient_recorded_as_male_is_not_recorded_pregnant() -> None:
    with pytest.raises(ImplausibleValue) as refused:
        facts(FactsInput(pregnant=True), gender="male")
    assert refused.value.field == "pregnant"
    assert facts(FactsInput(pregnant=False), gender="male").pregnant is False


def test_checked_facts_are_returned_as_kept() -> None:
    kept = facts(
        FactsInput(
            weight_kg=399.9,
            weighed_on=TODAY,
            taking=(" Alcohol", "methadone", "alcohol", ""),
            note="  seen today  ",
            last_drink_at=NOW + timedelta(minutes=1),
        )
    )
    assert kept.taking == ("alcohol", "methadone")
    assert kept.note == "seen today"
    assert kept.last_drink_at == NOW  # a clock a minute ahead is not the future


@pytest.mark.parametrize(
    ("start", "ok"),
    [
        (TODAY - timedelta(days=2), False),
        (TODAY - timedelta(days=1), True),
        (TODAY, True),
        (TODAY + timedelta(days=90), True),
        (TODAY + timedelta(days=91), False),
    ],
)
def test_a_plan_starts_from_yesterday_to_within_90_days(start: date, ok: bool) -> None:
    if ok:
        check_start(start, TODAY)
        return
    with pytest.raises(ImplausibleValue) as refused:
        check_start(start, TODAY)
    assert refused.value.field == "start_date"


def _stop(**changes: Any) -> str:
    arguments: dict[str, Any] = {
        "status": "active",
        "plan_start": TODAY + timedelta(days=2),
        "replaces_plan": None,
        "stop_on": TODAY + timedelta(days=2),
        "reason": "  patient declined  ",
        "today": TODAY,
    }
    arguments.update(changes)
    monograph = load_monograph(arguments.pop("medication", "naltrexone"))
    return check_stop(monograph, **arguments)


@pytest.mark.parametrize(
    ("changes", "field", "kind"),
    [
        ({"status": "completed"}, "plan", ImplausibleValue),
        ({"stop_on": TODAY - timedelta(days=1)}, "stop_on", ImplausibleValue),
        ({"reason": "   "}, "reason", ImplausibleValue),
        ({"reason": "x" * (MAX_NOTE + 1)}, "reason", ImplausibleValue),
        # Baclofen must be tapered: not stopped at once once started...
        (
            {"medication": "baclofen", "plan_start": TODAY - timedelta(days=3)},
            "stop_on",
            PlanRefused,
        ),
        # ...nor by cancelling the plan that took over from another before it starts.
        ({"medication": "baclofen", "replaces_plan": 7}, "stop_on", PlanRefused),
    ],
)
def test_each_refused_stop_names_its_field(
    changes: dict[str, Any], field: str, kind: type[MedicationInputError]
) -> None:
    with pytest.raises(kind) as refused:
        _stop(**changes)
    assert refused.value.field == field


def test_a_stop_keeps_its_reason_stripped() -> None:
    assert _stop() == "patient declined"
    assert _stop(medication="baclofen") == "patient declined"  # cancelled before it started


def _administration(**changes: Any) -> Any:
    arguments: dict[str, Any] = {
        "due_at": NOW - timedelta(hours=1),
        "administered_at": NOW - timedelta(minutes=50),
        "given": True,
        "reason": "",
        "note": "",
        "now": NOW,
    }
    arguments.update(changes)
    return check_administration(**arguments)


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"administered_at": NAIVE}, "administered_at", "time zone"),
        ({"due_at": NAIVE}, "due_at", "time zone"),
        ({"administered_at": NOW + timedelta(minutes=3)}, "administered_at", "future"),
        (
            {
                "administered_at": NOW - RECORD_BACK - timedelta(minutes=1),
                "due_at": NOW - RECORD_BACK,
            },
            "administered_at",
            "within 7 days",
        ),
        (
            {"due_at": NOW - GIVEN_WINDOW - timedelta(hours=1)},
            "administered_at",
            "more than 12 hours",
        ),
        ({"given": False, "reason": " "}, "reason", "why"),
        ({"note": "x" * (MAX_NOTE + 1)}, "note", "under"),
        ({"given": False, "reason": "x" * (MAX_NOTE + 1)}, "note", "under"),
    ],
)
def test_each_refused_administration_names_its_field(
    changes: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(ImplausibleValue) as refused:
        _administration(**changes)
    assert refused.value.field == field and words in refused.value.message


@pytest.mark.parametrize(
    ("ahead", "accepted"),
    [
        (timedelta(0), True),
        (timedelta(minutes=1), True),
        (CLOCK_SKEW, True),
        (timedelta(minutes=3), False),
        (timedelta(hours=1), False),  # a recorded time is not a planned dose: no 2-hour window
    ],
)
def test_a_recorded_time_may_be_ahead_by_the_clock_skew_only(
    ahead: timedelta, accepted: bool
) -> None:
    at = NOW + ahead
    cases = [
        (
            "administered_at",
            lambda: _administration(due_at=NOW, administered_at=at).administered_at,
        ),
        (
            "onset_at",
            lambda: (
                check_side_effect(
                    effect="nausea", severity="mild", detail="", onset_at=at, now=NOW
                ).onset_at
            ),
        ),
        ("last_drink_at", lambda: facts(FactsInput(last_drink_at=at)).last_drink_at),
    ]
    for field, record in cases:
        if accepted:
            assert record() == NOW, field  # kept as now, never in the future
            continue
        with pytest.raises(ImplausibleValue) as refused:
            record()
        assert refused.value.field == field and "future" in refused.value.message


def test_planned_doses_may_be_reported_within_their_own_window() -> None:
    """Which planned doses may be reported now is a separate window from the clock skew: a
    dose due within two hours may be reported taken, and one due up to a week ago."""
    assert check_statement(NOW + timedelta(hours=1), " early ", NOW) == "early"
    assert recordable(NOW + RECORD_AHEAD, NOW) and not recordable(
        NOW + RECORD_AHEAD + timedelta(minutes=1), NOW
    )
    assert recordable(NOW - RECORD_BACK, NOW) and not recordable(
        NOW - RECORD_BACK - timedelta(minutes=1), NOW
    )
    for due_at, words in (
        (NOW + RECORD_AHEAD + timedelta(minutes=1), "future"),
        (NOW - RECORD_BACK - timedelta(minutes=1), "within 7 days"),
        (NAIVE, "time zone"),
    ):
        with pytest.raises(ImplausibleValue) as refused:
            check_statement(due_at, "", NOW)
        assert refused.value.field == "due_at" and words in refused.value.message
    with pytest.raises(ImplausibleValue) as refused:
        check_statement(NOW, "x" * (MAX_NOTE + 1), NOW)
    assert refused.value.field == "reason"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"effect": "itching"}, "effect"),
        ({"severity": "fatal"}, "severity"),
        ({"effect": "other", "detail": "  "}, "detail"),
        ({"detail": "x" * (MAX_NOTE + 1)}, "detail"),
        ({"onset_at": NAIVE}, "onset_at"),
        ({"onset_at": NOW + timedelta(minutes=3)}, "onset_at"),
    ],
)
def test_each_refused_side_effect_names_its_field(changes: dict[str, Any], field: str) -> None:
    arguments: dict[str, Any] = {
        "effect": "drowsiness",
        "severity": "mild",
        "detail": "",
        "onset_at": NOW - timedelta(hours=3),
        "now": NOW,
    }
    with pytest.raises(ImplausibleValue) as refused:
        check_side_effect(**{**arguments, **changes})
    assert refused.value.field == field


def test_a_side_effect_is_kept_with_its_detail_stripped() -> None:
    kept = check_side_effect(
        effect="other", severity="severe", detail=" loose stools ", onset_at=NOW, now=NOW
    )
    assert (kept.effect, kept.severity, kept.detail, kept.onset_at) == (
        "other",
        "severe",
        "loose stools",
        NOW,
    )


def test_the_programs_today_is_its_own_calendar_day_not_utcs() -> None:
    """21:00 on 4 March in New York is already 5 March in UTC; the program's today is 4 March."""
    evening = datetime(2026, 3, 4, 21, 0, tzinfo=NY)
    in_utc = evening.astimezone(UTC)
    assert in_utc.date() == date(2026, 3, 5)
    assert program_today("America/New_York", in_utc) == date(2026, 3, 4)
    today = program_today("America/New_York", in_utc)
    # A weight measured "today" in New York is accepted; one dated UTC's day is the future.
    kept = check_facts(
        FactsInput(weight_kg=70, weighed_on=date(2026, 3, 4)),
        today=today,
        now=in_utc,
        birth_date=BIRTH,
        gender=None,
    )
    assert kept.weighed_on == date(2026, 3, 4)
    with pytest.raises(ImplausibleValue) as refused:
        check_facts(
            replace(kept, weighed_on=date(2026, 3, 5)),
            today=today,
            now=in_utc,
            birth_date=BIRTH,
            gender=None,
        )
    assert refused.value.field == "weighed_on"
    check_start(date(2026, 3, 3), today)  # yesterday in New York
    with pytest.raises(ImplausibleValue):
        check_start(date(2026, 3, 2), today)


@pytest.mark.parametrize(
    ("qtc", "accepted"),
    [(199.0, False), (200.0, True), (451.0, True), (800.0, True), (801.0, False), (4500.0, False)],
)
def test_qtc_has_a_plausible_range(qtc: float, accepted: bool) -> None:
    if accepted:
        assert facts(FactsInput(qtc_ms=qtc)).qtc_ms == qtc
        return
    with pytest.raises(ImplausibleValue) as err:
        facts(FactsInput(qtc_ms=qtc))
    assert err.value.field == "qtc_ms" and "200" in err.value.message


def test_hepatic_impairment_is_a_grade() -> None:
    assert facts(FactsInput(hepatic_impairment="moderate")).hepatic_impairment == "moderate"
    with pytest.raises(ImplausibleValue) as err:
        facts(FactsInput(hepatic_impairment="B"))
    assert err.value.field == "hepatic_impairment"
