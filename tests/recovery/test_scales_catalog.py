"""The self-report scales as data and scored by the engine, on plain values: every scale at its
edges and band limits (clinical_facts.md sections B1, B4, B5, G1, G2), PACS from its sources,
the urgent PHQ-9 item 9 rule, the crisis resources, the single 0-10 craving rating, and
`tandem score` for PACS."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from tandem.errors import InvalidInput
from tandem.instruments.cli import score_command
from tandem.instruments.engine import InvalidAnswers, get_instrument, score
from tandem.recovery.scales_catalog import (
    craving_rating_scale,
    crisis_resources,
    is_scale,
    scale,
    scales,
)
from tests.instruments.facts import ITEMS, TOTALS, answers


def total_of(instrument_id: str, total: int) -> dict[str, int]:
    """Answers adding up to `total`, filling items in order with their largest values."""
    values: dict[str, int] = {}
    left = total
    for item_id, allowed in ITEMS[instrument_id]:
        fit = max(v for v in allowed if v <= left)
        values[item_id] = fit
        left -= fit
    assert left == 0, f"{instrument_id}: {total} cannot be reached this way"
    return values


def test_the_scales_are_the_self_report_scales_of_the_issue() -> None:
    assert [s.instrument for s in scales()] == [
        "phq9",
        "gad7",
        "pacs",
        "audit",
        "audit_c",
        "dast10",
    ]
    assert not is_scale("ciwa_ar") and not is_scale("sows_gossop")
    with pytest.raises(InvalidInput) as refused:
        scale("cows")
    assert refused.value.field == "questionnaire"


# (instrument, total) -> band id at each limit, from the fact sheet's cut points
EDGES = [
    ("phq9", [(0, "minimal"), (4, "minimal"), (5, "mild"), (9, "mild"), (10, "moderate"),
              (14, "moderate"), (15, "moderately_severe"), (19, "moderately_severe"),
              (20, "severe"), (27, "severe")]),
    ("gad7", [(0, "minimal"), (4, "minimal"), (5, "mild"), (9, "mild"), (10, "moderate"),
              (14, "moderate"), (15, "severe"), (21, "severe")]),
    ("audit", [(0, "zone_1"), (7, "zone_1"), (8, "zone_2"), (15, "zone_2"), (16, "zone_3"),
               (19, "zone_3"), (20, "zone_4"), (40, "zone_4")]),
    ("dast10", [(0, "none"), (1, "low"), (2, "low"), (3, "moderate"), (5, "moderate"),
                (6, "substantial"), (8, "substantial"), (9, "severe"), (10, "severe")]),
    ("audit_c", [(0, None), (12, None)]),
    ("pacs", [(0, None), (14, None), (15, None), (20, None), (21, None), (30, None)]),
]  # fmt: skip


@pytest.mark.parametrize(("instrument_id", "edges"), EDGES, ids=[e[0] for e in EDGES])
def test_every_scale_at_its_edges_and_band_limits(
    instrument_id: str, edges: list[tuple[int, str | None]]
) -> None:
    instrument = get_instrument(instrument_id)
    assert (instrument.total.min, instrument.total.max) == TOTALS[instrument_id]
    for total, band in edges:
        result = score(instrument, total_of(instrument_id, total))
        assert result.total == total
        assert (result.band.id if result.band else None) == band, (instrument_id, total)


def test_pacs_0_and_30_and_an_out_of_range_item_refused() -> None:
    pacs = get_instrument("pacs")
    assert score(pacs, answers("pacs", [0, 0, 0, 0, 0])).total == 0
    assert score(pacs, answers("pacs", [6, 6, 6, 6, 6])).total == 30
    for bad in (7, -1, "3.5", True):
        values: dict[str, object] = dict(answers("pacs", [1, 1, 1, 1, 1]))
        values["intensity"] = bad
        with pytest.raises(InvalidAnswers) as refused:
            score(pacs, values)
        assert [e.item_id for e in refused.value.errors] == ["intensity"]


def test_pacs_reads_as_its_sources_and_cites_both_cut_offs_without_bands() -> None:
    pacs = get_instrument("pacs")
    frequency = pacs.items[0]
    assert frequency.text.startswith("During the past week how often have you thought about")
    assert frequency.anchors[0].text == "Never (0 times during the past week)"
    assert frequency.anchors[6].text == (
        "Nearly all the time (more than 40 times during the past week or more than 6 times per day)"
    )
    assert frequency.verified and not any(i.verified for i in pacs.items[1:])
    assert all(a.text is None for i in pacs.items[1:] for a in i.anchors.values())
    assert pacs.band_schemes == () and pacs.band_note is not None
    assert "above 20" in pacs.band_note and "15 or more" in pacs.band_note
    assert "Hartwell" in pacs.band_note and pacs.total.code is None
    # the calculator page the fact sheet calls erroneous is marked so where it is used
    calculator = next(s for s in pacs.sources if s.id == "calculator_dev")
    assert calculator.unverified and calculator.quality == "tertiary"


@pytest.mark.parametrize(
    ("item9", "urgent"), [(0, []), (1, ["suicide_risk_screen"]), (3, ["suicide_risk_screen"])]
)
def test_phq9_item9_above_zero_and_only_item9_is_urgent(item9: int, urgent: list[str]) -> None:
    phq9 = scale("phq9")
    # every other item at its maximum does not raise it
    result = score(phq9.definition, answers("phq9", [3] * 8 + [item9]))
    assert phq9.urgent(result) == urgent
    gad7 = scale("gad7")
    assert gad7.urgent(score(gad7.definition, answers("gad7", [3] * 7))) == []


def test_crisis_resources_give_988_call_or_text_and_911_with_sources() -> None:
    crisis = crisis_resources()
    assert crisis.country == "US"
    by_id = {r.id: r for r in crisis.resources}
    assert (by_id["lifeline_988"].call, by_id["lifeline_988"].text) == ("988", "988")
    assert by_id["emergency_911"].call == "911" and by_id["emergency_911"].text is None
    assert all(r.sources and all(s.url for s in r.sources) for r in crisis.resources)


def test_the_craving_rating_is_a_whole_number_0_to_10_marked_unverified() -> None:
    rating = craving_rating_scale()
    assert (rating.min, rating.max) == (0, 10)
    assert rating.check(0) == 0 and rating.check(10) == 10
    for bad in (11, -1, 2.5, "5", True):
        with pytest.raises(InvalidInput) as refused:
            rating.check(bad)
        assert refused.value.field == "rating"
    assert rating.unverified and rating.note


def test_tandem_score_scores_pacs_and_refuses_an_impossible_answer() -> None:
    app = typer.Typer()
    app.callback()(lambda: None)
    app.command("score")(score_command)
    args = [f"{k}={v}" for k, v in answers("pacs", [3, 2, 1, 0, 4]).items()]
    done = CliRunner().invoke(app, ["score", "pacs", *args, "--json"])
    assert done.exit_code == 0, done.output
    body = json.loads(done.stdout)
    assert (body["instrument"], body["total"], body["band"]) == ("pacs", 10, None)
    args[0] = "frequency=7"
    refused = CliRunner().invoke(app, ["score", "pacs", *args])
    assert refused.exit_code == 2 and "frequency" in refused.stderr


def test_the_policy_lets_a_patient_answer_for_themselves_only_and_staff_for_their_program() -> None:
    from tandem.access.policy import Actor, PatientRef, Permission, Role, decide, may

    own, neighbour, elsewhere = PatientRef("p1", 7), PatientRef("p2", 7), PatientRef("p3", 8)
    me = Actor(1, "me", Role.PATIENT, frozenset({7}), patient_id="p1")
    assert decide(me, Permission.CREATE, "QuestionnaireResponse", own)
    assert not decide(me, Permission.CREATE, "QuestionnaireResponse", neighbour)
    assert not decide(me, Permission.CREATE, "Observation", own)  # so no withdrawal assessment
    assert may(me, "fill_scale", own) and not may(me, "assess", own)
    for role in (Role.COUNSELOR, Role.NURSE, Role.PRESCRIBER, Role.ADMIN):
        staff = Actor(2, "staff", role, frozenset({7}))
        assert may(staff, "fill_scale", neighbour), role
        assert not may(staff, "fill_scale", elsewhere), role
    counselor = Actor(3, "c", Role.COUNSELOR, frozenset({7}))
    refused = may(counselor, "assess", own)
    assert not refused and refused.reason == "a counselor may not record assessments"
    assert not may(Actor(4, "r", Role.RESEARCHER, frozenset({7})), "fill_scale", own)
