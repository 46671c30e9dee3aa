"""The shipped data matches the facts sheet, and a broken data file fails to load, loudly."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tandem.instruments.engine import InstrumentDataError, load_instruments, load_instruments_from

from .facts import (
    ANCHORS,
    BANDS,
    DEFAULT_SCHEMES,
    ITEMS,
    PHQ9_ITEM_LOINC,
    TOTAL_LOINC,
    TOTALS,
)


def test_every_instrument_is_shipped() -> None:
    assert sorted(load_instruments()) == sorted(ITEMS)


@pytest.mark.parametrize("instrument_id", sorted(ITEMS))
def test_items_in_order_with_legal_values(instrument_id: str) -> None:
    instrument = load_instruments()[instrument_id]

    assert [(i.id, i.allowed_values) for i in instrument.items] == ITEMS[instrument_id]
    assert (instrument.total.min, instrument.total.max) == TOTALS[instrument_id]
    for item in instrument.items:
        assert sorted(item.anchors) == list(item.allowed_values)
        assert all(a.label(v).strip() for v, a in item.anchors.items())


@pytest.mark.parametrize("instrument_id", sorted(ITEMS))
def test_band_schemes_match_the_sources(instrument_id: str) -> None:
    instrument = load_instruments()[instrument_id]

    assert instrument.default_scheme == DEFAULT_SCHEMES[instrument_id]
    shipped = {
        (instrument_id, s.id): [(b.id, b.min, b.max) for b in s.bands]
        for s in instrument.band_schemes
    }
    assert shipped == {k: v for k, v in BANDS.items() if k[0] == instrument_id}
    for s in instrument.band_schemes:
        assert s.source
        assert [b.severity for b in s.bands] == list(range(len(s.bands)))


def test_sows_gossop_has_no_bands_and_says_why() -> None:
    sows = load_instruments()["sows_gossop"]

    assert sows.band_schemes == ()
    assert sows.band_note and "No published severity bands" in sows.band_note


def test_loinc_only_where_confirmed() -> None:
    instruments = load_instruments()

    assert [i.code.code for i in instruments["phq9"].items if i.code] == PHQ9_ITEM_LOINC
    for instrument_id, code in TOTAL_LOINC.items():
        total = instruments[instrument_id].total.code
        assert (total.code if total else None) == code
    for instrument_id in ("ciwa_ar", "cows", "sows_gossop", "gad7"):
        assert all(i.code is None for i in instruments[instrument_id].items)
    for instrument_id in ("ciwa_ar", "cows"):
        assert instruments[instrument_id].coding_note


@pytest.mark.parametrize("instrument_id", sorted(ANCHORS))
def test_every_anchor_reads_as_the_published_form(instrument_id: str) -> None:
    instrument = load_instruments()[instrument_id]

    shipped = {i.id: {v: a.text for v, a in i.anchors.items()} for i in instrument.items}
    assert shipped == ANCHORS[instrument_id]
    for item in instrument.items:
        for value, anchor in item.anchors.items():
            assert not anchor.unverified, (item.id, value)
            # a grade the form leaves blank reads as the form does: its number alone
            assert anchor.label(value) == (anchor.text or str(value))


@pytest.mark.parametrize("instrument_id", sorted(ANCHORS))
def test_every_item_names_at_least_two_reproductions_it_was_checked_in(
    instrument_id: str,
) -> None:
    instrument = load_instruments()[instrument_id]
    sources = {s.id: s for s in instrument.sources if s.id}

    for item in instrument.items:
        assert len(set(item.sources)) >= 2, item.id
        assert all(sources[sid].url for sid in item.sources)


def test_no_answer_anywhere_reads_as_a_placeholder() -> None:
    for instrument in load_instruments().values():
        for item in instrument.items:
            for value, anchor in item.anchors.items():
                label = anchor.label(value).lower()
                where = (instrument.id, item.id, value)
                assert "not transcribed" not in label, where
                assert "between" not in label and "unlabelled" not in label, where


def test_wording_is_verified_everywhere_and_only_a_band_scheme_is_not() -> None:
    instruments = load_instruments()

    # PACS items 2-5: no source read gives the printed wording and answer words (fact sheet B1)
    assert [i.id for i in instruments.values() if not i.wording_verified] == ["pacs"]
    pacs = instruments["pacs"]
    assert [i.id for i in pacs.items if not i.verified] == [
        "intensity",
        "duration",
        "ability_to_resist",
        "overall",
    ]
    # the VA PAWS reading of overlapping cut-offs still waits for the clinical lead
    assert [i.id for i in instruments.values() if not i.verified] == ["ciwa_ar", "pacs"]
    va_paws = instruments["ciwa_ar"].scheme("va_paws")
    assert va_paws is not None and va_paws.unverified


def test_ciwa_ar_blank_grades_are_the_ones_the_form_leaves_blank() -> None:
    ciwa = {i.id: i for i in load_instruments()["ciwa_ar"].items}

    for item_id in ("nausea_vomiting", "tremor", "paroxysmal_sweats", "anxiety", "agitation"):
        assert [v for v, a in ciwa[item_id].anchors.items() if a.text is None] == [2, 3, 5, 6]
    for item_id in ("tactile_disturbances", "headache", "orientation"):
        assert all(a.text for a in ciwa[item_id].anchors.values())


# A small, valid instrument; each case below breaks one thing about it.
TOY: dict[str, Any] = {
    "id": "toy",
    "name": "Toy scale",
    "version": "1",
    "respondent": "clinician",
    "citation": "none",
    "sources": [{"citation": "none given", "quality": "tertiary"}],
    "items": [
        {"id": "a", "text": "A", "allowed_values": [0, 1, 2], "anchors": {0: "x", 1: "y", 2: "z"}},
        {"id": "b", "text": "B", "allowed_values": [0, 3], "anchors": {0: "x", 3: "z"}},
    ],
    "total": {"min": 0, "max": 5},
    "default_scheme": "s",
    "band_schemes": [
        {
            "id": "s",
            "label": "S",
            "source": "none",
            "bands": [
                {"id": "low", "label": "Low", "min": 0, "max": 2, "severity": 0},
                {"id": "high", "label": "High", "min": 3, "max": 5, "severity": 1},
            ],
        }
    ],
    "flags": [{"id": "f", "item": "b", "at_least": 3, "message": "m", "source": "s"}],
}


def _bands(data: dict[str, Any]) -> list[dict[str, Any]]:
    bands: list[dict[str, Any]] = data["band_schemes"][0]["bands"]
    return bands


BROKEN: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("anchor missing", lambda d: d["items"][0]["anchors"].pop(1), "no anchor for [1]"),
    (
        "anchor for an impossible value",
        lambda d: d["items"][1]["anchors"].update({5: "w"}),
        "anchor for values not allowed [5]",
    ),
    ("duplicate item id", lambda d: d["items"][1].update(id="a"), "item ids must be unique"),
    ("total above item maxima", lambda d: d["total"].update(max=6), "items add up to 0..5"),
    (
        "total below item maxima",
        lambda d: d["items"][0].update(
            allowed_values=[0, 1, 2, 3], anchors={0: "w", 1: "x", 2: "y", 3: "z"}
        ),
        "items add up to 0..6",
    ),
    ("band gap", lambda d: _bands(d)[1].update(min=4), "(gap)"),
    ("band overlap", lambda d: _bands(d)[1].update(min=2), "(overlap)"),
    ("bands stop short of max", lambda d: _bands(d)[1].update(max=4), "bands end at 4"),
    ("bands start above min", lambda d: _bands(d)[0].update(min=1), "expected 0"),
    ("band min above max", lambda d: _bands(d)[1].update(min=3, max=2), "min 3 is above max 2"),
    ("severity out of order", lambda d: _bands(d)[1].update(severity=2), "severity 2, expected 1"),
    ("unknown default scheme", lambda d: d.update(default_scheme="t"), "default_scheme 't'"),
    (
        "duplicate scheme id",
        lambda d: d["band_schemes"].append(copy.deepcopy(d["band_schemes"][0])),
        "band scheme ids must be unique",
    ),
    (
        "no bands without a note",
        lambda d: d.update(band_schemes=[], default_scheme=None),
        "band_note",
    ),
    (
        "unsorted values",
        lambda d: d["items"][0].update(allowed_values=[0, 2, 1]),
        "unique and ascending",
    ),
    (
        "repeated value",
        lambda d: d["items"][1].update(allowed_values=[0, 3, 3]),
        "unique and ascending",
    ),
    (
        "negative value",
        lambda d: d["items"][1].update(allowed_values=[-1, 3], anchors={-1: "x", 3: "z"}),
        "greater than or equal to 0",
    ),
    (
        "value written as text",
        lambda d: d["items"][1].update(allowed_values=["0", 3]),
        "valid integer",
    ),
    (
        "misspelt field",
        lambda d: d["items"][0].update(allowed=[0, 1]),
        "Extra inputs are not permitted",
    ),
    ("missing source", lambda d: d.pop("sources"), "sources"),
    ("flag on unknown item", lambda d: d["flags"][0].update(item="c"), "unknown item 'c'"),
    (
        "flag threshold out of range",
        lambda d: d["flags"][0].update(at_least=4),
        "at_least 4 is outside",
    ),
    ("bad respondent", lambda d: d.update(respondent="family"), "respondent"),
    ("bad item id", lambda d: d["items"][0].update(id="Item A"), "String should match pattern"),
    (
        "item read in a source the file does not list",
        lambda d: d["items"][0].update(sources=["nowhere"]),
        "sources ['nowhere'] are not ids of `sources`",
    ),
    ("empty anchor text", lambda d: d["items"][0]["anchors"].update({1: ""}), "at least 1"),
]


def _write(directory: Path, data: dict[str, Any], name: str = "toy") -> None:
    (directory / f"{name}.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")


def test_toy_instrument_is_valid(tmp_path: Path) -> None:
    _write(tmp_path, TOY)

    assert list(load_instruments_from(tmp_path)) == ["toy"]


@pytest.mark.parametrize(("case", "breaks", "message"), BROKEN, ids=[c[0] for c in BROKEN])
def test_broken_data_fails_to_load(
    tmp_path: Path, case: str, breaks: Callable[[dict[str, Any]], None], message: str
) -> None:
    data = copy.deepcopy(TOY)
    breaks(data)
    _write(tmp_path, data)

    with pytest.raises(InstrumentDataError) as caught:
        load_instruments_from(tmp_path)

    assert "toy.yaml" in str(caught.value)
    assert message in str(caught.value)


def test_ciwa_with_orientation_scored_0_to_7_fails(tmp_path: Path) -> None:
    """welevelupnj.com prints orientation as 0-7; that file must not load as a 0-67 scale."""
    real = Path(__file__).parents[2] / "src/tandem/instruments/data/ciwa_ar.yaml"
    data = yaml.safe_load(real.read_text(encoding="utf-8"))
    data["items"][-1]["allowed_values"] = list(range(8))
    data["items"][-1]["anchors"] = {v: f"grade {v}" for v in range(8)}
    _write(tmp_path, data, "ciwa_ar")

    with pytest.raises(InstrumentDataError, match=r"items add up to 0\.\.70"):
        load_instruments_from(tmp_path)


def test_not_yaml(tmp_path: Path) -> None:
    (tmp_path / "toy.yaml").write_text("id: toy\nitems: [unclosed\n", encoding="utf-8")

    with pytest.raises(InstrumentDataError, match="toy.yaml: not valid YAML"):
        load_instruments_from(tmp_path)


def test_file_name_must_match_id(tmp_path: Path) -> None:
    _write(tmp_path, TOY, "other")

    with pytest.raises(InstrumentDataError, match="does not match the file name"):
        load_instruments_from(tmp_path)


def test_loaded_instruments_cannot_be_changed_by_callers() -> None:
    first = load_instruments()
    first.pop("cows")

    assert "cows" in load_instruments()
    with pytest.raises(ValueError, match="frozen"):
        load_instruments()["cows"].items[0].text = "changed"  # type: ignore[misc]
