"""Withdrawal monitoring core, table-driven from the source tables in the fact sheet (A2, A3)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import pytest
import yaml

from tandem.withdrawal.monitoring import (
    BandMismatch,
    IntervalNotSet,
    MonitoringError,
    MonitoringState,
    NoAssessment,
    ScoredAssessment,
    WithdrawalContext,
    census_sort_key,
    context_flags,
    evaluate,
    next_due,
    reassessment_interval,
)
from tandem.withdrawal.protocol import Protocol, load_protocol, protocol_from_mapping

T0 = datetime(2024, 6, 3, 8, 0, tzinfo=UTC)

# Test-only thresholds for the rules the example leaves to the program (the fact sheet gives
# no rise or overdue numbers). They exercise the rule mechanics; they are not clinical advice.
RISE_POINTS = 5
OVERDUE_MINUTES = 30


def raw_example() -> dict[str, Any]:
    text = (
        resources.files("tandem.withdrawal")
        .joinpath("data", "example_protocol.yaml")
        .read_text(encoding="utf-8")
    )
    return yaml.safe_load(text)


def program_protocol(**instrument_changes: Any) -> Protocol:
    """The example with the program's own rise and overdue thresholds filled in."""
    data = raw_example()
    for rule in data["instruments"]["ciwa_ar"]["escalations"]:
        if rule["kind"] == "rise":
            rule["points"] = RISE_POINTS
        if rule["kind"] == "overdue":
            rule["minutes"] = OVERDUE_MINUTES
    data["instruments"]["ciwa_ar"].update(instrument_changes)
    return protocol_from_mapping(data)


EXAMPLE = load_protocol()
PROGRAM = program_protocol()


def ciwa(total: int, at: datetime, band: str | None = None, **extra: Any) -> ScoredAssessment:
    return ScoredAssessment("ciwa_ar", total, band, at, **extra)


def series(totals: Sequence[int], every: timedelta, start: datetime = T0) -> list[ScoredAssessment]:
    return [ciwa(total, start + i * every) for i, total in enumerate(totals)]


def state_at(history: Sequence[ScoredAssessment], now: datetime, **kw: Any) -> MonitoringState:
    return evaluate(PROGRAM, "ciwa_ar", history, now, **kw)


# --------------------------------------------------------------------------- CCJM table

# Fact sheet A2, CCJM reassessment table, read through the PMC6286444 bands (<8, 8-15, >15).
# total, band, minutes to the next assessment, drugs suggested
CCJM_ROWS = [
    (0, "minimal", 120, ()),
    (7, "minimal", 120, ()),
    (8, "moderate", 120, ("chlordiazepoxide", "lorazepam")),
    (9, "moderate", 120, ("chlordiazepoxide", "lorazepam")),
    (10, "moderate", 120, ("chlordiazepoxide", "lorazepam")),
    (11, "moderate", 60, ("chlordiazepoxide", "lorazepam")),
    (15, "moderate", 60, ("chlordiazepoxide", "lorazepam")),
    (16, "severe", 60, ("chlordiazepoxide", "lorazepam")),
    (19, "severe", 60, ("chlordiazepoxide", "lorazepam")),
    (20, "severe", 15, ()),  # ">=20: evaluate for ICU transfer"; 15 min is Yale's, unverified
    (67, "severe", 15, ()),
]


@pytest.mark.parametrize(("total", "band", "minutes", "drugs"), CCJM_ROWS)
def test_ccjm_row_gives_band_interval_and_suggestions(
    total: int, band: str, minutes: int, drugs: tuple[str, ...]
) -> None:
    history = [ciwa(total, T0, band)]
    state = evaluate(EXAMPLE, "ciwa_ar", history, T0)
    assert state.band_id == band
    assert state.interval.minutes == minutes
    assert state.due_at == T0 + timedelta(minutes=minutes)
    assert next_due(EXAMPLE, "ciwa_ar", history, T0) == state.due_at
    assert tuple(m.drug for m in state.medication_suggestions) == drugs


@pytest.mark.parametrize(
    ("total", "doses"),
    [
        (9, ("25-50 mg", "1-2 mg")),
        (13, ("50-75 mg", "2-3 mg")),
        (17, ("75-100 mg", "3-4 mg")),
    ],
)
def test_ccjm_doses_come_from_the_table_and_are_marked_unverified(
    total: int, doses: tuple[str, str]
) -> None:
    state = evaluate(EXAMPLE, "ciwa_ar", [ciwa(total, T0)], T0)
    assert tuple(m.dose_text for m in state.medication_suggestions) == doses
    for option in state.medication_suggestions:
        assert option.route is None  # the table does not give one
        assert option.source.unverified
        assert any("UNCONFIRMED" in note for note in option.source.notes)


def test_ciwa_9_is_moderate_and_reassessed_in_2_h() -> None:
    state = evaluate(EXAMPLE, "ciwa_ar", [ciwa(9, T0, "moderate")], T0 + timedelta(minutes=5))
    assert (state.band_id, state.band_label) == ("moderate", "Moderate (8-15)")
    assert state.due_at == T0 + timedelta(hours=2)
    assert not state.overdue
    assert state.interval.row_id == "ccjm_8_10"


def test_due_at_is_rendered_in_the_program_zone() -> None:
    state = evaluate(EXAMPLE, "ciwa_ar", [ciwa(9, T0)], T0)
    assert state.due_at is not None
    assert getattr(state.due_at.tzinfo, "key", None) == "America/New_York"
    assert state.due_at.hour == 6  # 10:00 UTC is 06:00 EDT
    assert getattr(state.now.tzinfo, "key", None) == "America/New_York"


# --------------------------------------------------------------------------- step-down

FOUR_HOURS = timedelta(hours=4)


@pytest.mark.parametrize(
    ("totals", "minutes", "stage"),
    [
        ([5], 120, None),
        ([5, 6], 120, None),
        ([5, 6, 7], 240, 1),  # "<8 on 3 consecutive checks -> every 4 h"
        ([5, 6, 7, 4], 240, 1),
        ([5, 6, 7, 4, 3], 240, 1),
        ([5, 6, 7, 4, 3, 2], 480, 2),  # "still <8 on 3 checks at 4 h -> every 8 h"
        ([5, 6, 7, 4, 3, 2, 1, 0, 0, 0], 480, 2),
        ([5, 6, 7, 9, 5], 120, None),  # a score of 8 or more restarts the count
        ([5, 6, 7, 8, 5, 5, 5], 240, 1),
        ([12, 9, 7, 7, 7], 240, 1),
        ([7, 7, 7, 7, 7, 12], 60, None),  # a high score ends the step-down at once
    ],
)
def test_step_down_after_consecutive_scores_below_8(
    totals: list[int], minutes: int, stage: int | None
) -> None:
    history = series(totals, FOUR_HOURS)
    now = history[-1].scored_at
    interval = reassessment_interval(EXAMPLE, "ciwa_ar", history, now)
    assert (interval.minutes, interval.step_down_stage) == (minutes, stage)
    assert next_due(EXAMPLE, "ciwa_ar", history, now) == now + timedelta(minutes=minutes)


def test_step_down_counts_only_this_instrument_and_sorts_by_time() -> None:
    history = series([5, 6, 7], FOUR_HOURS)
    noise = [ScoredAssessment("cows", 30, "moderately_severe", T0 + timedelta(hours=1))]
    shuffled = [history[2], *noise, history[0], history[1]]
    now = history[-1].scored_at
    assert reassessment_interval(EXAMPLE, "ciwa_ar", shuffled, now).minutes == 240


# --------------------------------------------------------------------------- escalations


def rule_ids(state: MonitoringState) -> set[str]:
    return {e.rule_id for e in state.escalations}


@pytest.mark.parametrize(
    ("previous", "latest", "fires"),
    [
        (9, 9 + RISE_POINTS - 1, False),
        (9, 9 + RISE_POINTS, True),
        (9, 9 + RISE_POINTS + 1, True),
        (14, 9, False),
        (0, RISE_POINTS, True),
    ],
)
def test_rise_of_n_points_since_the_previous_score(previous: int, latest: int, fires: bool) -> None:
    history = [ciwa(previous, T0), ciwa(latest, T0 + timedelta(hours=1))]
    state = state_at(history, T0 + timedelta(hours=1))
    assert ("ciwa_rise" in rule_ids(state)) is fires
    if fires:
        (rise,) = [e for e in state.escalations if e.rule_id == "ciwa_rise"]
        assert rise.severity == "high"
        assert f"from {previous} to {latest}" in rise.detail


def test_rise_needs_a_previous_score() -> None:
    assert "ciwa_rise" not in rule_ids(state_at([ciwa(30, T0)], T0))


def test_rise_rule_left_empty_by_the_example_never_fires() -> None:
    history = [ciwa(0, T0), ciwa(15, T0 + timedelta(hours=1))]
    state = evaluate(EXAMPLE, "ciwa_ar", history, T0 + timedelta(hours=1))
    assert "ciwa_rise" not in rule_ids(state)


@pytest.mark.parametrize(
    ("total", "expected"),
    [
        (15, set()),
        (16, {"ciwa_severe_band"}),
        (19, {"ciwa_severe_band"}),
        (20, {"ciwa_severe_band", "ciwa_icu"}),
        (40, {"ciwa_severe_band", "ciwa_icu"}),
    ],
)
def test_severe_band_and_icu_threshold(total: int, expected: set[str]) -> None:
    state = evaluate(EXAMPLE, "ciwa_ar", [ciwa(total, T0)], T0)
    assert rule_ids(state) == expected
    if "ciwa_icu" in expected:
        assert state.escalations[0].rule_id == "ciwa_icu"  # most severe first
        assert state.escalations[0].severity == "critical"
        assert "ICU" in state.escalations[0].message
        assert state.escalations[0].source.quote == ">=20: evaluate for ICU transfer"


OVERDUE_CASES = [
    # minutes after due, overdue?, minutes overdue, overdue rule fires?
    (-1, False, 0, False),
    (0, False, 0, False),
    (1, True, 1, False),
    (OVERDUE_MINUTES - 1, True, OVERDUE_MINUTES - 1, False),
    (OVERDUE_MINUTES, True, OVERDUE_MINUTES, True),
    (OVERDUE_MINUTES + 1, True, OVERDUE_MINUTES + 1, True),
]


@pytest.mark.parametrize(("after_due", "overdue", "minutes", "fires"), OVERDUE_CASES)
def test_overdue_at_the_exact_boundaries(
    after_due: int, overdue: bool, minutes: int, fires: bool
) -> None:
    history = [ciwa(9, T0)]
    due = T0 + timedelta(hours=2)
    state = state_at(history, due + timedelta(minutes=after_due))
    assert state.due_at == due
    assert state.overdue is overdue
    assert state.minutes_overdue == minutes
    assert ("ciwa_overdue" in rule_ids(state)) is fires


def test_overdue_seconds_are_not_rounded_up() -> None:
    state = state_at([ciwa(9, T0)], T0 + timedelta(hours=2, minutes=OVERDUE_MINUTES, seconds=-1))
    assert state.overdue and state.minutes_overdue == OVERDUE_MINUTES - 1
    assert "ciwa_overdue" not in rule_ids(state)


def test_acknowledging_an_escalation_by_key() -> None:
    history = [ciwa(22, T0, assessment_id="a-1")]
    first = state_at(history, T0)
    keys = {e.rule_id: e.key for e in first.escalations}
    assert keys["ciwa_icu"] == "ciwa_ar:ciwa_icu:a-1"
    second = state_at(history, T0, acknowledged={keys["ciwa_icu"]})
    assert [e.rule_id for e in second.unacknowledged_escalations] == ["ciwa_severe_band"]
    # A new assessment is a new escalation, not covered by the old acknowledgement.
    later = [*history, ciwa(23, T0 + timedelta(minutes=15), assessment_id="a-2")]
    third = state_at(later, T0 + timedelta(minutes=15), acknowledged={keys["ciwa_icu"]})
    assert {e.rule_id for e in third.unacknowledged_escalations} >= {"ciwa_icu"}


# --------------------------------------------------------------------------- stop rule


def test_stop_after_48_h_below_8() -> None:
    history = series([7] * 13, FOUR_HOURS)  # 0 h .. 48 h
    state = state_at(history, history[-1].scored_at)
    assert state.monitoring_may_end
    assert "48 h" in state.end_reason


def test_no_stop_one_minute_short_of_48_h() -> None:
    history = series([7] * 12, FOUR_HOURS)
    history.append(ciwa(7, T0 + timedelta(hours=48, minutes=-1)))
    state = state_at(history, history[-1].scored_at)
    assert not state.monitoring_may_end
    assert "of 48 h" in state.end_reason


def test_no_stop_when_a_score_of_8_interrupts() -> None:
    history = series([7] * 6 + [8] + [7] * 6, FOUR_HOURS)
    state = state_at(history, history[-1].scored_at)
    assert not state.monitoring_may_end


def test_no_stop_when_latest_is_not_below_threshold() -> None:
    history = series([7] * 12 + [9], FOUR_HOURS)
    state = state_at(history, history[-1].scored_at)
    assert not state.monitoring_may_end
    assert "not below 8" in state.end_reason


def test_stop_by_consecutive_count_when_a_program_says_so() -> None:
    protocol = program_protocol(
        stop={
            "below_total": 8,
            "consecutive": 3,
            "source": {"ref": "ccjm_table", "unverified": True, "note": "test-only rule"},
        }
    )
    two = series([7, 7], FOUR_HOURS)
    three = series([7, 7, 7], FOUR_HOURS)
    assert not evaluate(protocol, "ciwa_ar", two, two[-1].scored_at).monitoring_may_end
    assert evaluate(protocol, "ciwa_ar", three, three[-1].scored_at).monitoring_may_end


def test_stop_is_held_back_by_an_unacknowledged_escalation() -> None:
    history = series([7] * 12 + [1, 1 + RISE_POINTS], FOUR_HOURS)
    state = state_at(history, history[-1].scored_at)
    assert "ciwa_rise" in rule_ids(state)
    assert not state.monitoring_may_end
    acked = state_at(history, history[-1].scored_at, acknowledged={state.escalations[0].key})
    assert acked.monitoring_may_end


def test_cows_has_no_stop_rule() -> None:
    state = evaluate(EXAMPLE, "cows", [ScoredAssessment("cows", 2, "none", T0)], T0)
    assert not state.monitoring_may_end
    assert "no stop rule" in state.end_reason


# --------------------------------------------------------------------------- other instruments


@pytest.mark.parametrize(
    ("total", "band"),
    [(0, "none"), (4, "none"), (5, "mild"), (12, "mild"), (13, "moderate"), (24, "moderate"),
     (25, "moderately_severe"), (36, "moderately_severe"), (37, "severe"), (48, "severe")],
)  # fmt: skip
def test_cows_bands_from_the_wesson_ling_form(total: int, band: str) -> None:
    state = evaluate(EXAMPLE, "cows", [ScoredAssessment("cows", total, band, T0)], T0)
    assert state.band_id == band
    assert ("cows_severe_band" in rule_ids(state)) is (band == "severe")


def test_sows_interval_is_left_to_the_program() -> None:
    history = [ScoredAssessment("sows_gossop", 14, None, T0)]
    with pytest.raises(IntervalNotSet, match="program must set"):
        next_due(EXAMPLE, "sows_gossop", history, T0)
    state = evaluate(EXAMPLE, "sows_gossop", history, T0 + timedelta(days=1))
    assert state.due_at is None and not state.overdue
    assert any("no sows_gossop reassessment interval" in w for w in state.warnings)


def test_sows_has_no_bands() -> None:
    history = [ScoredAssessment("sows_gossop", 12, None, T0)]
    state = evaluate(EXAMPLE, "sows_gossop", history, T0)
    assert (state.band_id, state.band_rank) == (None, -1)
    assert state.due_at is None
    with pytest.raises(MonitoringError, match="outside 0-30"):
        evaluate(EXAMPLE, "sows_gossop", [ScoredAssessment("sows_gossop", 31, None, T0)], T0)


# --------------------------------------------------------------------------- bad input


def test_band_that_contradicts_the_protocol_scheme_is_refused() -> None:
    with pytest.raises(BandMismatch, match="reads it as band 'moderate'"):
        evaluate(EXAMPLE, "ciwa_ar", [ciwa(9, T0, "minimal")], T0)
    with pytest.raises(BandMismatch, match="asam_2020"):
        evaluate(EXAMPLE, "ciwa_ar", [ciwa(9, T0, "moderate", band_scheme_id="asam_2020")], T0)


def test_band_from_an_older_protocol_version_is_reread_with_a_warning() -> None:
    old = ciwa(9, T0, "mild", band_scheme_id="asam_2020", protocol_version="2024.3")
    state = evaluate(EXAMPLE, "ciwa_ar", [old], T0)
    assert state.band_id == "moderate"
    assert any("2024.3" in w for w in state.warnings)


def test_missing_band_is_derived_from_the_total() -> None:
    assert evaluate(EXAMPLE, "ciwa_ar", [ciwa(16, T0)], T0).band_id == "severe"


def test_no_assessment_means_the_baseline_is_due() -> None:
    with pytest.raises(NoAssessment, match="baseline"):
        evaluate(EXAMPLE, "ciwa_ar", [ScoredAssessment("cows", 3, "none", T0)], T0)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        ciwa(9, datetime(2024, 6, 3, 8, 0))  # noqa: DTZ001
    with pytest.raises(ValueError, match="timezone-aware"):
        evaluate(EXAMPLE, "ciwa_ar", [ciwa(9, T0)], datetime(2024, 6, 3, 9, 0))  # noqa: DTZ001


def test_assessment_after_now_is_refused() -> None:
    with pytest.raises(MonitoringError, match="after now"):
        evaluate(EXAMPLE, "ciwa_ar", [ciwa(9, T0)], T0 - timedelta(seconds=1))


def test_unknown_instrument_is_refused() -> None:
    data = raw_example()
    del data["instruments"]["cows"]
    protocol = protocol_from_mapping(data)
    with pytest.raises(KeyError, match="no 'cows' section"):
        evaluate(protocol, "cows", [ScoredAssessment("cows", 3, "none", T0)], T0)


def test_negative_total_is_refused() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        ciwa(-1, T0)


def test_state_records_the_protocol_version_and_hash() -> None:
    state = evaluate(EXAMPLE, "ciwa_ar", [ciwa(9, T0)], T0)
    assert (state.protocol_id, state.protocol_version) == ("example-detox", "2025.1")
    assert state.protocol_hash == EXAMPLE.content_hash
    assert any("unverified" in w for w in state.warnings)  # CCJM attribution


# --------------------------------------------------------------------------- context flags


def flag_ids(context: WithdrawalContext, now: datetime | None = None) -> list[str]:
    return [f.id for f in context_flags(EXAMPLE, context, now=now)]


def test_history_of_dts_and_seizures_are_high_risk_flags() -> None:
    context = WithdrawalContext(
        "alcohol", history_withdrawal_seizures=True, history_delirium_tremens=True
    )
    flags = context_flags(EXAMPLE, context)
    assert [f.id for f in flags] == ["history_delirium_tremens", "history_withdrawal_seizures"]
    assert all(f.severity == "high" for f in flags)
    assert "high risk" in flags[0].message
    assert all(f.source is not None and f.source.unverified for f in flags)


def test_unrecorded_history_is_flagged_for_alcohol() -> None:
    assert flag_ids(WithdrawalContext("alcohol")) == ["withdrawal_history_not_recorded"]
    recorded = WithdrawalContext(
        "alcohol", history_withdrawal_seizures=False, history_delirium_tremens=False
    )
    assert flag_ids(recorded) == []


def test_liver_failure_and_age_caution_from_the_ccjm_table() -> None:
    context = WithdrawalContext(
        "alcohol",
        history_withdrawal_seizures=False,
        history_delirium_tremens=False,
        liver_failure=True,
        elderly=True,
    )
    assert flag_ids(context) == [
        "benzodiazepine_dose_caution_liver",
        "benzodiazepine_dose_caution_elderly",
    ]


@pytest.mark.parametrize(
    ("hours_since_last_drink", "flagged"),
    [(0, True), (72, True), (120, True), (120.02, False), (200, False)],
)
def test_alcohol_daily_check_in_window_of_5_days(
    hours_since_last_drink: float, flagged: bool
) -> None:
    now = T0 + timedelta(days=10)
    context = WithdrawalContext(
        "alcohol",
        last_use_at=now - timedelta(hours=hours_since_last_drink),
        history_withdrawal_seizures=False,
        history_delirium_tremens=False,
    )
    assert ("alcohol_ambulatory_daily_check_in" in flag_ids(context, now)) is flagged
    assert flag_ids(context) == []  # without `now` there is no window


def test_opioid_half_life_class() -> None:
    long = WithdrawalContext("opioid", last_use_at=T0, opioid_half_life_class="long")
    short = WithdrawalContext("opioid", last_use_at=T0, opioid_half_life_class="short")
    later = T0 + timedelta(hours=12)
    assert flag_ids(long, later) == ["long_acting_opioid"]
    assert flag_ids(short, later) == []  # the onset window is not in the sources


def test_onset_window_fires_once_a_program_sets_it() -> None:
    data = raw_example()
    window = data["risk_context"]["windows"][1]
    assert window["id"] == "short_acting_opioid_onset"
    window.update(from_hours=1, to_hours=2)  # test-only window
    protocol = protocol_from_mapping(data)
    context = WithdrawalContext("opioid", last_use_at=T0, opioid_half_life_class="short")
    ids = [f.id for f in context_flags(protocol, context, now=T0 + timedelta(minutes=90))]
    assert ids == ["short_acting_opioid_onset"]


def test_context_is_validated() -> None:
    with pytest.raises(ValueError, match="substance"):
        WithdrawalContext("cocaine")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timezone-aware"):
        WithdrawalContext("alcohol", last_use_at=datetime(2024, 1, 1))  # noqa: DTZ001
    with pytest.raises(ValueError, match="after now"):
        context_flags(EXAMPLE, WithdrawalContext("alcohol", last_use_at=T0), now=T0 - FOUR_HOURS)


def test_evaluate_carries_context_flags() -> None:
    context = WithdrawalContext(
        "alcohol", history_withdrawal_seizures=True, history_delirium_tremens=False
    )
    state = evaluate(EXAMPLE, "ciwa_ar", [ciwa(9, T0)], T0, context=context)
    assert [f.id for f in state.flags] == ["history_withdrawal_seizures"]


# --------------------------------------------------------------------------- census


def test_census_order() -> None:
    now = T0 + timedelta(hours=6)
    patients = {
        # unacknowledged critical escalation (ICU), not overdue
        "icu": [ciwa(25, now - timedelta(minutes=5))],
        # unacknowledged high escalation (severe band) and overdue
        "severe_overdue": [ciwa(17, now - timedelta(hours=2))],
        # overdue by 3 h, no escalation at the example's settings
        "overdue_3h": [ciwa(5, now - timedelta(hours=5))],
        # overdue by 1 h
        "overdue_1h": [ciwa(12, now - timedelta(hours=2))],
        # not overdue, moderate band, due in 90 min
        "moderate_later": [ciwa(9, now - timedelta(minutes=30))],
        # not overdue, moderate band, due in 30 min
        "moderate_sooner": [ciwa(9, now - timedelta(minutes=90))],
        # not overdue, minimal band, due sooner than both moderate ones
        "minimal_soonest": [ciwa(3, now - timedelta(minutes=119))],
    }
    states = {name: evaluate(EXAMPLE, "ciwa_ar", h, now) for name, h in patients.items()}
    order = sorted(states, key=lambda name: census_sort_key(states[name]))
    assert order == [
        "icu",
        "severe_overdue",
        "overdue_3h",
        "overdue_1h",
        "moderate_sooner",
        "moderate_later",
        "minimal_soonest",
    ]


def test_census_acknowledged_escalations_no_longer_lead() -> None:
    now = T0 + timedelta(hours=6)
    icu = evaluate(EXAMPLE, "ciwa_ar", [ciwa(25, now - timedelta(minutes=5))], now)
    acked = evaluate(
        EXAMPLE,
        "ciwa_ar",
        [ciwa(25, now - timedelta(minutes=5))],
        now,
        acknowledged={e.key for e in icu.escalations},
    )
    overdue = evaluate(EXAMPLE, "ciwa_ar", [ciwa(5, now - timedelta(hours=5))], now)
    assert sorted([acked, overdue], key=census_sort_key) == [overdue, acked]
    assert sorted([overdue, icu], key=census_sort_key) == [icu, overdue]


def test_census_unknown_due_time_sorts_ahead_of_known_ones() -> None:
    data = EXAMPLE.model_dump(mode="json")
    data["instruments"]["cows"]["reassessment"][0]["minutes"] = None  # left to a program
    unset = protocol_from_mapping(data)
    cows = evaluate(unset, "cows", [ScoredAssessment("cows", 14, "moderate", T0)], T0)
    assert cows.due_at is None
    ciwa_state = evaluate(EXAMPLE, "ciwa_ar", [ciwa(9, T0)], T0)
    assert sorted([ciwa_state, cows], key=census_sort_key) == [cows, ciwa_state]
