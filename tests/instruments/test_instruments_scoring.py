"""Scoring and banding against hand-checked totals: every instrument at min, max and every edge."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tandem.instruments.engine import (
    InvalidAnswers,
    UnknownInstrument,
    UnknownScheme,
    get_instrument,
    load_instruments,
    score,
)
from tandem.instruments.models import Instrument

from .facts import BANDS, DEFAULT_SCHEMES, ITEMS, TOTALS, answers

# (instrument, scheme or None for the default, values in scale order, total, band id)
# Totals are summed by hand; bands read off the facts sheet, both sides of every cut point.
CASES = [
    # CIWA-Ar: 9 items 0-7 then orientation 0-4
    ("ciwa_ar", None, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 0, "minimal"),
    ("ciwa_ar", None, [7, 7, 7, 7, 7, 7, 7, 7, 7, 4], 67, "severe"),
    ("ciwa_ar", "asam_2020", [7, 2, 0, 0, 0, 0, 0, 0, 0, 0], 9, "minimal"),
    ("ciwa_ar", "asam_2020", [7, 2, 0, 0, 0, 0, 0, 0, 0, 1], 10, "moderate"),
    ("ciwa_ar", "asam_2020", [7, 7, 4, 0, 0, 0, 0, 0, 0, 0], 18, "moderate"),
    ("ciwa_ar", "asam_2020", [7, 7, 4, 0, 0, 0, 0, 0, 0, 1], 19, "severe"),
    ("ciwa_ar", "asam_2020", [7, 7, 7, 7, 7, 7, 7, 7, 7, 4], 67, "severe"),
    ("ciwa_ar", "va_paws", [0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 0, "minimal"),
    ("ciwa_ar", "va_paws", [3, 2, 1, 1, 0, 0, 0, 0, 0, 0], 7, "minimal"),
    ("ciwa_ar", "va_paws", [3, 2, 1, 1, 0, 0, 0, 0, 0, 1], 8, "moderate"),
    ("ciwa_ar", "va_paws", [5, 5, 2, 1, 1, 0, 0, 0, 0, 0], 14, "moderate"),
    ("ciwa_ar", "va_paws", [5, 5, 2, 1, 1, 0, 0, 0, 0, 1], 15, "severe"),
    ("ciwa_ar", "va_paws", [7, 7, 7, 7, 7, 7, 7, 7, 7, 4], 67, "severe"),
    ("ciwa_ar", "pmc6286444", [0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 0, "minimal"),
    ("ciwa_ar", "pmc6286444", [0, 0, 0, 0, 0, 1, 2, 2, 2, 0], 7, "minimal"),
    ("ciwa_ar", "pmc6286444", [0, 0, 0, 0, 0, 1, 2, 2, 2, 1], 8, "moderate"),
    ("ciwa_ar", "pmc6286444", [1, 1, 1, 1, 1, 1, 1, 1, 3, 4], 15, "moderate"),
    ("ciwa_ar", "pmc6286444", [1, 1, 1, 1, 1, 1, 1, 1, 4, 4], 16, "severe"),
    ("ciwa_ar", "pmc6286444", [7, 7, 7, 7, 7, 7, 7, 7, 7, 4], 67, "severe"),
    # the same 15 lands in different bands depending on the scheme
    ("ciwa_ar", "asam_2020", [5, 5, 2, 1, 1, 0, 0, 0, 0, 1], 15, "moderate"),
    # COWS: pulse, sweat, restless, pupil, aches, nose, GI, tremor, yawn, anxiety, gooseflesh
    ("cows", None, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 0, "none"),
    ("cows", None, [1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0], 4, "none"),
    ("cows", None, [1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0], 5, "mild"),
    ("cows", None, [2, 2, 3, 2, 2, 1, 0, 0, 0, 0, 0], 12, "mild"),
    ("cows", None, [2, 2, 3, 2, 2, 2, 0, 0, 0, 0, 0], 13, "moderate"),
    ("cows", None, [4, 4, 5, 5, 4, 2, 0, 0, 0, 0, 0], 24, "moderate"),
    ("cows", None, [4, 4, 5, 5, 4, 2, 1, 0, 0, 0, 0], 25, "moderately_severe"),
    ("cows", None, [4, 4, 5, 5, 4, 4, 5, 4, 1, 0, 0], 36, "moderately_severe"),
    ("cows", None, [4, 4, 5, 5, 4, 4, 5, 4, 2, 0, 0], 37, "severe"),
    ("cows", "wesson_ling_2003", [4, 4, 5, 5, 4, 4, 5, 4, 4, 4, 5], 48, "severe"),
    # SOWS-Gossop: no published bands
    ("sows_gossop", None, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 0, None),
    ("sows_gossop", None, [3, 3, 3, 3, 3, 0, 0, 0, 0, 0], 15, None),
    ("sows_gossop", None, [3, 3, 3, 3, 3, 3, 3, 3, 3, 3], 30, None),
    # PHQ-9: cut points 5, 10, 15, 20
    ("phq9", None, [0, 0, 0, 0, 0, 0, 0, 0, 0], 0, "minimal"),
    ("phq9", None, [1, 1, 1, 1, 0, 0, 0, 0, 0], 4, "minimal"),
    ("phq9", None, [1, 1, 1, 1, 1, 0, 0, 0, 0], 5, "mild"),
    ("phq9", None, [3, 3, 3, 0, 0, 0, 0, 0, 0], 9, "mild"),
    ("phq9", None, [3, 3, 3, 1, 0, 0, 0, 0, 0], 10, "moderate"),
    ("phq9", None, [3, 3, 3, 3, 2, 0, 0, 0, 0], 14, "moderate"),
    ("phq9", None, [3, 3, 3, 3, 3, 0, 0, 0, 0], 15, "moderately_severe"),
    ("phq9", None, [3, 3, 3, 3, 3, 3, 1, 0, 0], 19, "moderately_severe"),
    ("phq9", None, [3, 3, 3, 3, 3, 3, 2, 0, 0], 20, "severe"),
    ("phq9", "kroenke_2001", [3, 3, 3, 3, 3, 3, 3, 3, 3], 27, "severe"),
    # GAD-7: cut points 5, 10, 15
    ("gad7", None, [0, 0, 0, 0, 0, 0, 0], 0, "minimal"),
    ("gad7", None, [2, 2, 0, 0, 0, 0, 0], 4, "minimal"),
    ("gad7", None, [2, 2, 1, 0, 0, 0, 0], 5, "mild"),
    ("gad7", None, [3, 3, 3, 0, 0, 0, 0], 9, "mild"),
    ("gad7", None, [3, 3, 3, 1, 0, 0, 0], 10, "moderate"),
    ("gad7", None, [3, 3, 3, 3, 2, 0, 0], 14, "moderate"),
    ("gad7", None, [3, 3, 3, 3, 3, 0, 0], 15, "severe"),
    ("gad7", "spitzer_2006", [3, 3, 3, 3, 3, 3, 3], 21, "severe"),
    # AUDIT (G1): zones 0-7, 8-15, 16-19, 20-40; items 9 and 10 score 0, 2 or 4
    ("audit", None, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 0, "zone_1"),
    ("audit", None, [4, 3, 0, 0, 0, 0, 0, 0, 0, 0], 7, "zone_1"),
    ("audit", None, [4, 4, 0, 0, 0, 0, 0, 0, 0, 0], 8, "zone_2"),
    ("audit", None, [4, 4, 4, 3, 0, 0, 0, 0, 0, 0], 15, "zone_2"),
    ("audit", None, [4, 4, 4, 0, 0, 0, 0, 0, 0, 4], 16, "zone_3"),
    ("audit", None, [4, 4, 4, 3, 0, 0, 0, 0, 0, 4], 19, "zone_3"),
    ("audit", None, [4, 4, 4, 0, 0, 0, 0, 0, 4, 4], 20, "zone_4"),
    ("audit", "who_risk_zones", [4, 4, 4, 4, 4, 4, 4, 4, 4, 4], 40, "zone_4"),
    # AUDIT-C (G1): items 1-3, 0-12, no bands in the fact sheet
    ("audit_c", None, [4, 4, 4], 12, None),
    ("audit_c", None, [0, 1, 0], 1, None),
    # DAST-10 (G2): levels 0, 1-2, 3-5, 6-8, 9-10; item 3 scores a "No"
    ("dast10", None, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 0, "none"),
    ("dast10", None, [0, 0, 1, 0, 0, 0, 0, 0, 0, 0], 1, "low"),
    ("dast10", None, [1, 1, 0, 0, 0, 0, 0, 0, 0, 0], 2, "low"),
    ("dast10", None, [1, 1, 1, 0, 0, 0, 0, 0, 0, 0], 3, "moderate"),
    ("dast10", None, [1, 1, 1, 1, 1, 0, 0, 0, 0, 0], 5, "moderate"),
    ("dast10", None, [1, 1, 1, 1, 1, 1, 0, 0, 0, 0], 6, "substantial"),
    ("dast10", None, [1, 1, 1, 1, 1, 1, 1, 1, 0, 0], 8, "substantial"),
    ("dast10", None, [1, 1, 1, 1, 1, 1, 1, 1, 1, 0], 9, "severe"),
    ("dast10", "skinner_levels", [1, 1, 1, 1, 1, 1, 1, 1, 1, 1], 10, "severe"),
]


@pytest.mark.parametrize(("instrument_id", "scheme_id", "values", "total", "band_id"), CASES)
def test_total_and_band(
    instrument_id: str, scheme_id: str | None, values: list[int], total: int, band_id: str | None
) -> None:
    result = score(get_instrument(instrument_id), answers(instrument_id, values), scheme_id)

    assert result.total == total
    assert (result.band.id if result.band else None) == band_id
    assert result.scheme_id == (scheme_id or DEFAULT_SCHEMES[instrument_id])
    assert list(result.item_values) == [item_id for item_id, _ in ITEMS[instrument_id]]
    assert list(result.item_values.values()) == values


def test_band_carries_label_and_severity() -> None:
    result = score(get_instrument("cows"), answers("cows", [4, 4, 5, 5, 4, 2, 1, 0, 0, 0, 0]))

    assert result.band is not None
    assert (result.band.id, result.band.label, result.band.severity) == (
        "moderately_severe",
        "Moderately severe",
        3,
    )


@pytest.mark.parametrize(("item9", "flagged"), [(0, False), (1, True), (2, True), (3, True)])
def test_phq9_item9_raises_suicide_risk_flag(item9: int, flagged: bool) -> None:
    result = score(get_instrument("phq9"), answers("phq9", [0, 0, 0, 0, 0, 0, 0, 0, item9]))

    assert [f.id for f in result.flags] == (["suicide_risk_screen"] if flagged else [])
    if flagged:
        assert "secondary" in result.flags[0].source


def test_phq9_flag_does_not_fire_on_other_items() -> None:
    result = score(get_instrument("phq9"), answers("phq9", [3, 3, 3, 3, 3, 3, 3, 3, 0]))

    assert result.flags == ()


IMPOSSIBLE = [
    (instrument_id, item_id, value, allowed)
    for instrument_id, items in ITEMS.items()
    for item_id, allowed in items
    for value in range(-2, max(allowed) + 3)
    if value not in allowed
]


@pytest.mark.parametrize(("instrument_id", "item_id", "value", "allowed"), IMPOSSIBLE)
def test_every_impossible_value_is_refused(
    instrument_id: str, item_id: str, value: int, allowed: tuple[int, ...]
) -> None:
    given = {i: a[0] for i, a in ITEMS[instrument_id]} | {item_id: value}

    with pytest.raises(InvalidAnswers) as caught:
        score(get_instrument(instrument_id), given)

    [error] = caught.value.errors
    assert (error.item_id, error.problem, error.given, error.allowed_values) == (
        item_id,
        "not_allowed",
        value,
        allowed,
    )
    assert item_id in str(caught.value)
    assert ", ".join(map(str, allowed)) in str(caught.value)


@pytest.mark.parametrize(
    ("instrument_id", "item_id", "value"),
    [
        ("ciwa_ar", "orientation", 7),  # a public page wrongly prints orientation as 0-7
        ("sows_gossop", "feeling_sick", 4),  # 0-4 belongs to the Subjective OWS
        ("cows", "gooseflesh", 1),
        ("cows", "restlessness", 2),
        ("cows", "resting_pulse", 3),
    ],
)
def test_known_wrong_public_ranges_are_refused(
    instrument_id: str, item_id: str, value: int
) -> None:
    given = {i: 0 for i, _ in ITEMS[instrument_id]} | {item_id: value}

    with pytest.raises(InvalidAnswers):
        score(get_instrument(instrument_id), given)


@pytest.mark.parametrize("bad", ["2", 2.0, True, None, [2]])
def test_non_integer_answers_are_refused(bad: object) -> None:
    given: dict[str, object] = {i: 0 for i, _ in ITEMS["gad7"]} | {"restless": bad}

    with pytest.raises(InvalidAnswers) as caught:
        score(get_instrument("gad7"), given)

    [error] = caught.value.errors
    assert (error.item_id, error.problem, error.given) == ("restless", "not_integer", bad)


def test_all_errors_are_collected_not_just_the_first() -> None:
    given: dict[str, object] = {i: 0 for i, _ in ITEMS["cows"]}
    given |= {"resting_pulse": 3, "sweating": "2", "heart_rate": 1}
    del given["gooseflesh"]

    with pytest.raises(InvalidAnswers) as caught:
        score(get_instrument("cows"), given)

    assert [(e.item_id, e.problem) for e in caught.value.errors] == [
        ("resting_pulse", "not_allowed"),
        ("sweating", "not_integer"),
        ("gooseflesh", "missing"),
        ("heart_rate", "unknown_item"),
    ]
    assert "allowed values: 0, 3, 5" in caught.value.errors[2].message
    assert "gooseflesh" in caught.value.errors[3].message  # lists the real items


def test_unknown_scheme_names_the_real_ones() -> None:
    ciwa = get_instrument("ciwa_ar")
    with pytest.raises(UnknownScheme, match="asam_2020"):
        score(ciwa, answers("ciwa_ar", [0] * 10), "welevelupnj")
    with pytest.raises(UnknownScheme, match="no published bands"):
        score(get_instrument("sows_gossop"), answers("sows_gossop", [0] * 10), "asam_2020")


def test_unknown_instrument() -> None:
    with pytest.raises(UnknownInstrument, match="cows"):
        get_instrument("sows")


@st.composite
def answered(draw: st.DrawFn) -> tuple[Instrument, dict[str, int]]:
    instruments = sorted(load_instruments().values(), key=lambda i: i.id)
    instrument = draw(st.sampled_from(instruments))
    return instrument, {i.id: draw(st.sampled_from(i.allowed_values)) for i in instrument.items}


@given(answered())
def test_any_valid_answers_score_in_range_with_exactly_one_band(
    case: tuple[Instrument, dict[str, int]],
) -> None:
    instrument, given_answers = case
    low, high = TOTALS[instrument.id]
    for scheme_id in [s.id for s in instrument.band_schemes] or [None]:
        result = score(instrument, given_answers, scheme_id)
        assert low <= result.total <= high
        if scheme_id is None:
            assert result.band is None
            continue
        containing = [
            b for b, lo, hi in BANDS[instrument.id, scheme_id] if lo <= result.total <= hi
        ]
        assert len(containing) == 1
        assert result.band is not None and result.band.id == containing[0]


def test_audit_items_9_and_10_refuse_1_and_3() -> None:
    """G1: items 9 and 10 have three answers, scored 0, 2 and 4; a 1 or a 3 is not an answer."""
    audit = get_instrument("audit")
    for bad in (1, 3):
        values = answers("audit", [0, 0, 0, 0, 0, 0, 0, 0, bad, 0])
        with pytest.raises(InvalidAnswers) as caught:
            score(audit, values)
        assert "injury" in str(caught.value)


def test_dast10_item_3_scores_the_no() -> None:
    """G2: 'always able to stop using drugs when you want to?' scores a point for No."""
    item = next(i for i in get_instrument("dast10").items if i.id == "able_to_stop")
    assert item.anchors[1].text == "No" and item.anchors[0].text == "Yes"
    others = [i for i in get_instrument("dast10").items if i.id != "able_to_stop"]
    assert all(i.anchors[1].text == "Yes" for i in others)
