"""Every monograph validates, every fact has a source, and the unconfirmed is marked so."""

from __future__ import annotations

import copy

import pytest
import yaml
from pydantic import ValidationError

from tandem.medications.errors import UnknownMedication
from tandem.medications.monograph import (
    Sourced,
    all_monographs,
    load_monograph,
    load_sources,
    medication_ids,
    parse_monograph,
)

EXPECTED_IDS = {
    "baclofen",
    "naltrexone",
    "acamprosate",
    "disulfiram",
    "gabapentin",
    "topiramate",
    "buprenorphine",
    "methadone",
    "lofexidine",
    "clonidine",
    "chlordiazepoxide",
    "lorazepam",
    "diazepam",
    "oxazepam",
}


def _raw(medication_id: str) -> dict:
    from importlib import resources

    text = resources.files("tandem.medications").joinpath(f"data/{medication_id}.yaml").read_text()
    return yaml.safe_load(text)


def test_medication_ids() -> None:
    assert set(medication_ids()) == EXPECTED_IDS


@pytest.mark.parametrize("medication_id", sorted(EXPECTED_IDS))
def test_every_fact_has_a_source_and_unverified_has_a_note(medication_id) -> None:
    mono = load_monograph(medication_id)
    items = list(mono.sourced_items())
    assert items, "a monograph states facts"
    for path, item in items:
        assert isinstance(item, Sourced)
        assert item.source, path
        for src in item.source:
            assert src.citation, path
        if item.unverified:
            assert item.note, path
    for rule in mono.rules:
        assert rule.source and rule.reason


@pytest.mark.parametrize("medication_id", sorted(EXPECTED_IDS))
def test_codes_only_where_the_sheet_gives_them(medication_id) -> None:
    mono = load_monograph(medication_id)
    code = mono.ingredient_code
    if medication_id == "baclofen":
        assert code.code == "1292" and code.unverified
    else:
        assert code.code is None and code.unverified and code.note


def test_sources_registry_validates() -> None:
    sources = load_sources()
    for key, src in sources.items():
        assert src.id == key
        if src.unverified:
            assert src.note
        if src.url:
            assert src.url.startswith(("http://", "https://"))


def test_unknown_medication() -> None:
    with pytest.raises(UnknownMedication) as err:
        load_monograph("aspirin")
    assert err.value.field == "medication_id"
    assert "baclofen" in str(err.value)


# ---------------------------------------------------------------- baclofen in full


def test_baclofen_brands_and_unverified_intrathecal_brands() -> None:
    mono = load_monograph("baclofen")
    brands = {b.name: b for b in mono.brand_names}
    assert set(brands) == {"Lioresal", "Gablofen", "Ozobax", "Fleqsuvy", "Lyvispah", "Baclocur"}
    assert brands["Gablofen"].unverified and brands["Lioresal"].unverified
    assert "intrathecal" in brands["Gablofen"].note
    assert brands["Baclocur"].country == "FR"
    assert not brands["Ozobax"].unverified


def test_baclofen_dosing_per_label() -> None:
    d = load_monograph("baclofen").dosing
    assert d.route == "oral"
    assert d.max_mg_day.value == 80
    assert str(d.titration.start) == "5mg-tid"
    assert (d.titration.step_mg, d.titration.every_days) == (5, 3)
    assert any(s.id == "ozobax_label" for s in d.max_mg_day.source)


def test_baclofen_off_label_uses_with_studies() -> None:
    uses = {u.id: u for u in load_monograph("baclofen").off_label_uses}
    assert set(uses) == {"alcohol_use_disorder", "opioid_withdrawal", "cocaine_use_disorder"}
    akh = next(s for s in uses["opioid_withdrawal"].studies if s.label.startswith("Akhondzadeh"))
    assert (akh.n, akh.pmid, akh.doi) == (62, "11123486", "10.1046/j.1365-2710.2000.00295.x")
    assert "clonidine" in akh.design
    shoptaw = uses["cocaine_use_disorder"].studies[0]
    assert shoptaw.n == 70
    labels = [s.label for s in uses["alcohol_use_disorder"].studies]
    assert any("Addolorato 2007" in x for x in labels)
    assert any("ALPADIR" in x for x in labels)
    assert any("Agabio 2023" in x for x in labels)
    for use in uses.values():
        for study in use.studies:
            assert study.design and study.result and study.source


def test_baclofen_renal_caution_is_a_study_not_a_label_rule() -> None:
    mono = load_monograph("baclofen")
    rules = {r.id: r for r in mono.rules}
    fractions = {
        rid: rules[rid].dose_limit.reduce_by
        for rid in ("baclofen.renal_mild", "baclofen.renal_moderate", "baclofen.renal_severe")
    }
    assert fractions == {
        "baclofen.renal_mild": "1/3",
        "baclofen.renal_moderate": "1/2",
        "baclofen.renal_severe": "2/3",
    }
    for rid in fractions:
        assert rules[rid].severity != "contraindicated"
        assert any(s.doi == "10.1002/jcph.247" for s in rules[rid].source)
        assert "not a label rule" in rules[rid].note
    assert rules["baclofen.dialysis"].dose_limit.max_mg_day == 5
    assert rules["baclofen.dialysis"].source[0].id == "mims_pms_baclofen"
    assert any(f.unverified and "US labels" in f.text for f in mono.renal)


def test_baclofen_other_sections_present() -> None:
    mono = load_monograph("baclofen")
    assert mono.mechanism and "GABA" in mono.mechanism.text
    assert mono.indications and mono.elimination and mono.overdose and mono.pregnancy
    assert mono.adverse_effects and mono.interactions and mono.half_life
    assert mono.discontinuation.taper_required
    assert "abrupt" in mono.discontinuation.text
    assert any("Neonatal withdrawal" in f.text for f in mono.pregnancy)
    substances = {s for i in mono.interactions for s in i.substances}
    assert {"alcohol", "opioids", "benzodiazepines", "cns_depressants"} <= substances


def test_baclofen_adherence_threshold_is_an_unverified_placeholder() -> None:
    policy = load_monograph("baclofen").adherence
    assert policy.missed_run_threshold == 3
    assert policy.unverified
    assert "program must set" in policy.note


def test_methadone_qtc_thresholds_cite_krantz_2009() -> None:
    mono = load_monograph("methadone")
    qtc_rules = [r for r in mono.rules if "qtc_ms" in r.when.facts()]
    assert {r.id for r in qtc_rules} == {"methadone.qtc_above_450", "methadone.qtc_above_500"}
    for rule in qtc_rules:
        assert rule.source[0].id == "krantz_2009" and not rule.unverified
    assert not any(w.unverified for w in mono.warnings)


def test_naltrexone_hepatotoxicity_is_no_longer_a_boxed_warning() -> None:
    mono = load_monograph("naltrexone")
    text = " ".join(w.text for w in mono.warnings if "epatotox" in w.text)
    assert "removed" in text and "2013" in text
    assert "boxed warning since 2013" in mono.rule("naltrexone.hepatotoxicity").reason


def test_lactation_facts_where_sources_give_them() -> None:
    for drug in ("methadone", "buprenorphine", "disulfiram"):
        assert load_monograph(drug).lactation, drug


def test_maxima_only_where_the_sheet_gives_them() -> None:
    maxima = {m.id: m.dosing.max_mg_day for m in all_monographs()}
    assert maxima["baclofen"].value == 80 and not maxima["baclofen"].unverified
    assert maxima["disulfiram"].value == 500
    assert maxima["lofexidine"].value == 2.88
    assert maxima["buprenorphine"].value == 24 and maxima["buprenorphine"].unverified
    assert maxima["acamprosate"].value == 1998 and maxima["acamprosate"].unverified
    for mid in (
        "naltrexone",
        "gabapentin",
        "topiramate",
        "methadone",
        "clonidine",
        "chlordiazepoxide",
        "lorazepam",
        "diazepam",
        "oxazepam",
    ):
        assert maxima[mid].value is None and maxima[mid].unverified, mid


# ---------------------------------------------------------------- the loader refuses bad data


def _broken(mutate) -> dict:
    data = copy.deepcopy(_raw("baclofen"))
    mutate(data)
    return data


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["mechanism"].pop("source"), "source"),
        (lambda d: d["mechanism"].update(source=[]), "source"),
        (lambda d: d["mechanism"].update(source="no_such_source"), "unknown source"),
        (lambda d: d["brand_names"][3].pop("note"), "note"),
        (lambda d: d["rxnorm"][0].update(code=None, unverified=False), "unverified"),
        (lambda d: d["rules"][0].update(when={"kidney": {"lt": 30}}), "unknown fact"),
        (lambda d: d["rules"][0].update(when={"on_any": ["heroin"]}), "unknown substance"),
        (lambda d: d["rules"][0].update(when={"pregnant": "yes"}), "yes/no"),
        (lambda d: d["rules"][0].update(severity="severe"), "severity"),
        (lambda d: d["rules"][0].update(id="naltrexone.renal"), "must start with"),
        (lambda d: d["rules"][1].update(id=d["rules"][0]["id"]), "duplicate"),
        (lambda d: d["dosing"]["max_mg_day"].update(value=None), "unverified"),
        (lambda d: d["dosing"]["titration"].update(start="5mg-xyz"), "frequency"),
        (lambda d: d.update(extra_field=1), "extra"),
    ],
)
def test_loader_refuses_bad_monographs(mutate, message) -> None:
    with pytest.raises(ValidationError) as err:
        parse_monograph(_broken(mutate))
    assert message.lower() in str(err.value).lower()
