"""The decision aid's pure core: checking a decision, the options of a situation, off-label
labelling and the safety level read from the medication screen."""

from __future__ import annotations

from datetime import date

import pytest

from tandem.choice.decision_options import choice_labels, option_views
from tandem.choice.decisions import DecisionInput, check_decision
from tandem.errors import InvalidInput
from tandem.medications.safety import PatientFacts

TODAY = date(2026, 3, 4)


def values(**changes: object) -> DecisionInput:
    base: dict[str, object] = {
        "substance": "opioids",
        "phase": "staying_stopped",
        "choice": "buprenorphine",
        "discussed_on": TODAY,
        "discussed_by": "  Dr   Lee ",
    }
    base.update(changes)
    return DecisionInput(**base)  # type: ignore[arg-type]


def test_a_decision_is_checked_and_tidied() -> None:
    checked = check_decision(values(), TODAY)
    assert checked.choice == "buprenorphine" and checked.discussed_by == "Dr Lee"
    assert check_decision(values(choice="no_medication"), TODAY).choice == "no_medication"
    assert check_decision(values(choice="undecided"), TODAY).choice == "undecided"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"choice": "acamprosate"}, "choice"),  # an option of another situation
        ({"substance": "nicotine"}, "substance"),
        ({"phase": "forever"}, "phase"),
        ({"discussed_on": None}, "discussed_on"),
        ({"discussed_on": date(2026, 3, 5)}, "discussed_on"),
        ({"discussed_on": date(2024, 1, 1)}, "discussed_on"),
        ({"discussed_by": " "}, "discussed_by"),
        ({"discussed_by": "x" * 201}, "discussed_by"),
        ({"preferences": "x" * 2001}, "preferences"),
    ],
)
def test_bad_decisions_name_the_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_decision(values(**changes), TODAY)
    assert refused.value.field == field


def test_choices_always_include_no_medication_and_not_yet() -> None:
    labels = choice_labels("stimulants", "withdrawal")
    assert list(labels) == ["no_medication", "undecided"]


def test_off_label_uses_are_labelled_and_the_screen_decides_the_safety_level() -> None:
    views = {v.id: v for v in option_views("alcohol", "staying_stopped", PatientFacts())}
    assert views["baclofen_alcohol"].off_label
    assert (views["baclofen_alcohol"].off_label_text or "").startswith("Off-label")
    assert not views["naltrexone"].off_label and views["naltrexone"].off_label_text is None
    taking_opioids = PatientFacts(taking=frozenset({"methadone"}))
    naltrexone = {v.id: v for v in option_views("alcohol", "staying_stopped", taking_opioids)}[
        "naltrexone"
    ]
    assert naltrexone.safety_level == "not_safe"
    assert views["no_medication"].safety_level == "none"
