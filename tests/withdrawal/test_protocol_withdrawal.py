"""The withdrawal protocol file: loads, every number is sourced, bad files are refused by path."""

from __future__ import annotations

import copy
import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from tandem.instruments.engine import get_instrument
from tandem.withdrawal.protocol import (
    INSTRUMENT_IDS,
    KNOWN_BAND_SCHEMES,
    Protocol,
    ProtocolError,
    load_protocol,
    protocol_from_mapping,
    total_range,
)


def raw_example() -> dict[str, Any]:
    text = (
        resources.files("tandem.withdrawal")
        .joinpath("data", "example_protocol.yaml")
        .read_text(encoding="utf-8")
    )
    return yaml.safe_load(text)


def refused(data: dict[str, Any]) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        protocol_from_mapping(data)
    return info.value


def paths(error: ProtocolError) -> dict[str, str]:
    return {issue.path: issue.message for issue in error.issues}


# --------------------------------------------------------------------------- the example


def test_example_loads_with_version_zone_and_hash() -> None:
    protocol = load_protocol()
    assert isinstance(protocol, Protocol)
    assert protocol.id == "example-detox"
    assert protocol.version == "2025.1"
    assert protocol.time_zone == "America/New_York"
    assert len(protocol.content_hash) == 64
    assert protocol.content_hash == load_protocol().content_hash
    assert set(protocol.instruments) == {"ciwa_ar", "cows", "sows_gossop"}


def test_content_hash_changes_with_any_edit_but_not_with_key_order() -> None:
    data = raw_example()
    base = protocol_from_mapping(data).content_hash
    reordered = dict(reversed(list(data.items())))
    assert protocol_from_mapping(reordered).content_hash == base
    edited = copy.deepcopy(data)
    edited["instruments"]["ciwa_ar"]["reassessment"][0]["minutes"] = 119
    assert protocol_from_mapping(edited).content_hash != base


def test_ciwa_uses_the_pmc6286444_scheme_whose_bands_contain_the_ccjm_rows() -> None:
    ciwa = load_protocol().instrument("ciwa_ar")
    assert ciwa.band_scheme is not None
    assert ciwa.band_scheme.id == "pmc6286444"
    assert [(b.id, b.min_total, b.max_total) for b in ciwa.band_scheme.bands] == [
        ("minimal", 0, 7),
        ("moderate", 8, 15),
        ("severe", 16, 67),
    ]
    # CCJM table rows (fact sheet A2): 0-7, 8-10, 11-15, 16-19, >=20.
    assert [(r.band, r.min_total, r.max_total, r.minutes) for r in ciwa.reassessment] == [
        ("minimal", 0, 7, 120),
        ("moderate", 8, 10, 120),
        ("moderate", 11, 15, 60),
        ("severe", 16, 19, 60),
        ("severe", 20, 67, 15),
    ]


def test_every_number_in_the_example_file_has_a_source_above_it() -> None:
    def walk(value: Any, sourced: bool, path: str) -> list[str]:
        if isinstance(value, bool) or value is None or isinstance(value, str):
            return []
        if isinstance(value, int | float):
            return [] if sourced else [path]
        if isinstance(value, dict):
            here = sourced or "source" in value
            return [p for k, v in value.items() for p in walk(v, here, f"{path}.{k}")]
        if isinstance(value, list):
            return [p for i, v in enumerate(value) for p in walk(v, sourced, f"{path}.{i}")]
        return [path]

    data = raw_example()
    assert walk(data["instruments"], False, "instruments") == []
    assert walk(data["risk_context"], False, "risk_context") == []


def test_unverified_entries_are_exposed_for_the_ui() -> None:
    items = {item.path: item.note for item in load_protocol().unverified_items()}
    # Numbers the fact sheet does not give are left to the program.
    for path in (
        "instruments.ciwa_ar.escalations.2.source",  # rise of N points
        "instruments.ciwa_ar.escalations.3.source",  # overdue by M minutes
        "instruments.cows.reassessment.0.source",  # COWS intervals
        "instruments.sows_gossop.reassessment.0.source",  # SOWS intervals
        "risk_context.windows.1.source",  # short-acting opioid onset window
        "risk_context.windows.2.source",  # long-acting opioid onset window
        "instruments.ciwa_ar.reassessment.1.medication.0.route",
    ):
        assert path in items, path
    # CCJM attribution is UNCONFIRMED on the fact sheet, so its rows carry that note.
    assert "UNCONFIRMED" in items["instruments.ciwa_ar.reassessment.0.source"]
    assert "UNCONFIRMED" in items["instruments.ciwa_ar.step_down.source"]
    # A confirmed source is not listed.
    assert "instruments.cows.band_scheme.source" not in items
    assert "instruments.ciwa_ar.escalations.0.source" not in items


def test_placeholder_rules_are_empty_not_invented() -> None:
    ciwa = load_protocol().instrument("ciwa_ar")
    rules = {rule.id: rule for rule in ciwa.escalations}
    assert rules["ciwa_rise"].points is None  # type: ignore[union-attr]
    assert rules["ciwa_overdue"].minutes is None  # type: ignore[union-attr]
    assert rules["ciwa_icu"].total == 20  # type: ignore[union-attr]


def test_load_protocol_from_a_path(tmp_path: Path) -> None:
    target = tmp_path / "program.yaml"
    data = raw_example()
    data["version"] = "2025.2"
    target.write_text(yaml.safe_dump(data), encoding="utf-8")
    assert load_protocol(target).version == "2025.2"
    assert load_protocol(str(target)).version == "2025.2"


def test_known_band_schemes_cover_the_fact_sheet() -> None:
    assert KNOWN_BAND_SCHEMES["ciwa_ar"] == {"va_paws", "asam_2020", "pmc6286444"}


# --------------------------------------------------------------------------- refusals


def test_missing_source_is_refused_naming_the_field() -> None:
    data = raw_example()
    del data["instruments"]["ciwa_ar"]["reassessment"][1]["source"]
    error = refused(data)
    assert paths(error) == {
        "instruments.ciwa_ar.reassessment.1.source": "required field is missing"
    }
    assert "instruments.ciwa_ar.reassessment.1.source: required field is missing" in str(error)


def test_missing_source_on_an_escalation_rule_names_its_path() -> None:
    data = raw_example()
    del data["instruments"]["ciwa_ar"]["escalations"][1]["source"]
    assert "instruments.ciwa_ar.escalations.1.total_at_least.source" in paths(refused(data))


def test_bad_band_id_in_an_escalation_rule_is_refused() -> None:
    data = raw_example()
    data["instruments"]["ciwa_ar"]["escalations"][0]["bands"] = ["sever"]
    found = paths(refused(data))
    assert list(found) == ["instruments.ciwa_ar.escalations.0.bands.0"]
    assert "unknown band 'sever'" in found["instruments.ciwa_ar.escalations.0.bands.0"]
    assert "minimal, moderate, severe" in found["instruments.ciwa_ar.escalations.0.bands.0"]


def test_bad_band_id_in_a_reassessment_row_is_refused() -> None:
    data = raw_example()
    data["instruments"]["cows"]["reassessment"][0]["band"] = "extreme"
    found = paths(refused(data))
    assert "unknown band 'extreme'" in found["instruments.cows.reassessment.0.band"]


def test_unknown_band_scheme_is_refused() -> None:
    data = raw_example()
    data["instruments"]["ciwa_ar"]["band_scheme"]["id"] = "wikipedia"
    found = paths(refused(data))
    assert "unknown band scheme 'wikipedia'" in found["instruments.ciwa_ar.band_scheme.id"]
    assert "asam_2020" in found["instruments.ciwa_ar.band_scheme.id"]


def test_a_band_scheme_that_cuts_across_the_reassessment_rows_is_refused() -> None:
    # ASAM 2020 bands (<10, 10-18, >=19; fact sheet A1) split the CCJM 8-10 and 16-19 rows.
    data = raw_example()
    data["instruments"]["ciwa_ar"]["band_scheme"]["id"] = "asam_2020"
    data["instruments"]["ciwa_ar"]["band_scheme"]["bands"] = [
        {"id": "minimal", "label": "<10", "level": "minimal", "min_total": 0, "max_total": 9},
        {"id": "moderate", "label": "10-18", "level": "moderate", "min_total": 10, "max_total": 18},
        {"id": "severe", "label": ">=19", "level": "severe", "min_total": 19, "max_total": 67},
    ]
    found = paths(refused(data))
    assert "does not match this reassessment table" in found["instruments.ciwa_ar.reassessment.1"]
    assert "instruments.ciwa_ar.reassessment.3" in found


def test_bands_with_a_gap_are_refused() -> None:
    data = raw_example()
    data["instruments"]["cows"]["band_scheme"]["bands"][1]["min_total"] = 6
    found = paths(refused(data))
    assert found["instruments.cows.band_scheme.bands"] == "no entry covers totals 5-5"


def test_reassessment_rows_that_overlap_are_refused() -> None:
    data = raw_example()
    data["instruments"]["ciwa_ar"]["reassessment"][2]["min_total"] = 10
    found = paths(refused(data))
    assert found["instruments.ciwa_ar.reassessment"] == "totals 10-10 are covered twice"


def test_an_empty_number_must_be_marked_unverified() -> None:
    data = raw_example()
    data["instruments"]["ciwa_ar"]["reassessment"][0]["minutes"] = None
    found = paths(refused(data))
    assert "unverified" in found["instruments.ciwa_ar.reassessment.0.source"]


def test_an_empty_escalation_threshold_must_be_marked_unverified() -> None:
    data = raw_example()
    data["instruments"]["ciwa_ar"]["escalations"][1]["total"] = None
    found = paths(refused(data))
    assert "unverified" in found["instruments.ciwa_ar.escalations.1.source"]


def test_unverified_without_a_note_is_refused() -> None:
    data = raw_example()
    data["instruments"]["ciwa_ar"]["reassessment"][4]["source"].pop("note")
    found = paths(refused(data))
    assert any(p.startswith("instruments.ciwa_ar.reassessment.4.source") for p in found)


def test_unknown_source_ref_is_refused() -> None:
    data = raw_example()
    data["instruments"]["ciwa_ar"]["stop"]["source"]["ref"] = "ccjm"
    found = paths(refused(data))
    assert "unknown source 'ccjm'" in found["instruments.ciwa_ar.stop.source.ref"]


def test_unknown_field_is_refused() -> None:
    data = raw_example()
    data["instruments"]["ciwa_ar"]["stop"]["for_days"] = 2
    found = paths(refused(data))
    assert found["instruments.ciwa_ar.stop.for_days"].startswith("unknown field")


def test_unknown_time_zone_is_refused() -> None:
    data = raw_example()
    data["time_zone"] = "Mars/Olympus_Mons"
    assert "unknown IANA time zone" in paths(refused(data))["time_zone"]


def test_stop_rule_needs_a_condition() -> None:
    data = raw_example()
    del data["instruments"]["ciwa_ar"]["stop"]["for_hours"]
    assert "instruments.ciwa_ar.stop" in paths(refused(data))


def test_not_a_mapping_and_bad_yaml_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ProtocolError, match="must be a mapping"):
        protocol_from_mapping(["not", "a", "protocol"])  # type: ignore[arg-type]
    broken = tmp_path / "broken.yaml"
    broken.write_text("id: [unclosed\n", encoding="utf-8")
    with pytest.raises(ProtocolError, match="not valid YAML"):
        load_protocol(broken)


def test_protocol_error_is_a_value_error() -> None:
    data = raw_example()
    data["version"] = ""
    with pytest.raises(ValueError, match="version"):
        protocol_from_mapping(data)


@pytest.mark.parametrize("instrument_id", ["ciwa_ar", "cows", "sows_gossop"])
def test_declared_bands_match_the_instrument_engine_data(instrument_id: str) -> None:
    """The engine's band ids are what assessments carry; a drift would raise BandMismatch."""
    try:
        text = (
            resources.files("tandem.instruments")
            .joinpath("data", f"{instrument_id}.yaml")
            .read_text(encoding="utf-8")
        )
    except FileNotFoundError:
        pytest.skip(f"instrument data for {instrument_id} not present")
    engine = yaml.safe_load(text)
    engine_schemes = {s["id"]: s for s in engine.get("band_schemes") or []}
    assert set(engine_schemes) == KNOWN_BAND_SCHEMES[instrument_id]
    declared = load_protocol().instrument(instrument_id).band_scheme
    if declared is None:
        return
    engine_bands = [(b["id"], b["min"], b["max"]) for b in engine_schemes[declared.id]["bands"]]
    assert engine_bands == [(b.id, b.min_total, b.max_total) for b in declared.bands]
    assert (engine["total"]["min"], engine["total"]["max"]) == (
        declared.bands[0].min_total,
        declared.bands[-1].max_total,
    )


def test_round_trip_through_json_keeps_the_hash() -> None:
    """Programs store their protocol as JSON; reading it back must give the same version."""
    protocol = load_protocol()
    stored = json.loads(json.dumps(protocol.model_dump(mode="json")))
    again = protocol_from_mapping(stored)
    assert again == protocol
    assert again.content_hash == protocol.content_hash


@pytest.mark.parametrize("instrument_id", sorted(INSTRUMENT_IDS))
def test_possible_totals_come_from_the_instrument_data(instrument_id: str) -> None:
    """The protocol does not restate an instrument's totals: the engine's data gives them."""
    total = get_instrument(instrument_id).total
    assert total_range(instrument_id) == (total.min, total.max)


def test_the_instruments_totals_bound_the_bands_and_the_reassessment_table() -> None:
    assert total_range("ciwa_ar") == (0, 67)
    data = raw_example()
    data["instruments"]["ciwa_ar"]["band_scheme"]["bands"][-1]["max_total"] = 70
    found = paths(refused(data))
    assert found["instruments.ciwa_ar.band_scheme.bands"] == (
        "ranges run past the highest possible total 67"
    )
    data = raw_example()
    data["instruments"]["ciwa_ar"]["band_scheme"]["bands"][-1]["max_total"] = 60
    found = paths(refused(data))
    assert found["instruments.ciwa_ar.band_scheme.bands"] == "no entry covers totals 61-67"
