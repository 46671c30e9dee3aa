"""FHIR R4B Questionnaire out, QuestionnaireResponse in."""

from __future__ import annotations

from typing import Any

import pytest
from fhir.resources.R4B.questionnaire import Questionnaire
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse

from tandem.instruments.engine import InvalidAnswers, get_instrument
from tandem.instruments.questionnaire import (
    ORDINAL_VALUE,
    InvalidQuestionnaireResponse,
    answers_from_questionnaire_response,
    to_questionnaire,
)

from .facts import ITEMS, PHQ9_ITEM_LOINC, answers


@pytest.mark.parametrize("instrument_id", sorted(ITEMS))
def test_questionnaire_is_valid_r4b_with_scored_choices(instrument_id: str) -> None:
    resource = to_questionnaire(get_instrument(instrument_id))

    questionnaire = Questionnaire.model_validate(resource)
    assert questionnaire.item is not None
    assert [(i.linkId, i.type) for i in questionnaire.item] == [
        (item_id, "choice") for item_id, _ in ITEMS[instrument_id]
    ]
    for fhir_item, (_, allowed) in zip(questionnaire.item, ITEMS[instrument_id], strict=True):
        options = fhir_item.answerOption or []
        assert [o.valueCoding.code for o in options] == [str(v) for v in allowed]
        assert all(o.valueCoding.display for o in options)
        ordinals = [
            e.valueDecimal for o in options for e in o.extension or [] if e.url == ORDINAL_VALUE
        ]
        assert ordinals == list(allowed)


def test_phq9_items_carry_loinc_and_withdrawal_scales_carry_none() -> None:
    phq9 = to_questionnaire(get_instrument("phq9"))
    cows = to_questionnaire(get_instrument("cows"))

    assert [i["code"][0]["code"] for i in phq9["item"]] == PHQ9_ITEM_LOINC
    assert {i["code"][0]["system"] for i in phq9["item"]} == {"http://loinc.org"}
    assert all("code" not in i for i in cows["item"])


def test_cows_gooseflesh_offers_only_legal_values() -> None:
    cows = to_questionnaire(get_instrument("cows"))
    gooseflesh = next(i for i in cows["item"] if i["linkId"] == "gooseflesh")

    assert [o["valueCoding"]["code"] for o in gooseflesh["answerOption"]] == ["0", "3", "5"]


@pytest.mark.parametrize("instrument_id", sorted(ITEMS))
def test_every_shipped_questionnaire_is_active(instrument_id: str) -> None:
    # PACS items 2-5: the printed wording was not found in any source read (fact sheet B1)
    expected = "draft" if instrument_id == "pacs" else "active"
    assert to_questionnaire(get_instrument(instrument_id))["status"] == expected


def test_status_is_draft_while_any_answer_is_unverified() -> None:
    cows = get_instrument("cows")
    items = list(cows.items)
    tremor = items[7]
    doubtful = tremor.anchors[2].model_copy(update={"unverified": True})
    items[7] = tremor.model_copy(update={"anchors": {**tremor.anchors, 2: doubtful}})

    assert to_questionnaire(cows.model_copy(update={"items": tuple(items)}))["status"] == "draft"


def test_ciwa_ar_answers_carry_the_forms_words_and_blank_grades_their_number() -> None:
    ciwa = to_questionnaire(get_instrument("ciwa_ar"))
    tremor = next(i for i in ciwa["item"] if i["linkId"] == "tremor")

    assert [o["valueCoding"]["display"] for o in tremor["answerOption"]] == [
        "no tremor",
        "not visible, but can be felt fingertip to fingertip",
        "2",
        "3",
        "moderate, with patient's arms extended",
        "5",
        "6",
        "severe, even with arms not extended",
    ]


def _response(items: list[dict[str, Any]]) -> dict[str, Any]:
    resource = {"resourceType": "QuestionnaireResponse", "status": "completed", "item": items}
    QuestionnaireResponse.model_validate(resource)
    return resource


def test_response_round_trip_with_coding_and_integer_answers() -> None:
    values = [2, 1, 3, 0, 1, 1, 5, 1, 2, 1, 3]
    expected = answers("cows", values)
    items = [
        {
            "linkId": k,
            "answer": [{"valueCoding": {"code": str(v)}} if n % 2 else {"valueInteger": v}],
        }
        for n, (k, v) in enumerate(expected.items())
    ]

    assert answers_from_questionnaire_response(get_instrument("cows"), _response(items)) == expected


def test_nested_group_items_are_read() -> None:
    expected = answers("gad7", [1, 2, 3, 0, 1, 2, 3])
    group = {
        "linkId": "gad7",
        "item": [{"linkId": k, "answer": [{"valueInteger": v}]} for k, v in expected.items()],
    }

    assert (
        answers_from_questionnaire_response(get_instrument("gad7"), _response([group])) == expected
    )


def test_bad_response_names_every_bad_link_id() -> None:
    good = answers("cows", [0] * 11)
    items = [{"linkId": k, "answer": [{"valueInteger": v}]} for k, v in good.items()]
    items[0]["answer"] = [{"valueCoding": {"code": "3"}}]  # resting_pulse: 3 is not a COWS value
    items[1]["answer"] = [{"valueCoding": {"code": "LA6568-5"}}]  # sweating: not a number
    items[2]["answer"] = [{"valueString": "1"}]  # restlessness: wrong answer type
    items[3]["answer"] = [{"valueInteger": 1}, {"valueInteger": 2}]  # pupil_size: two answers
    del items[10]  # gooseflesh: missing
    items.append({"linkId": "heart_rate", "answer": [{"valueInteger": 1}]})

    with pytest.raises(InvalidAnswers) as caught:
        answers_from_questionnaire_response(get_instrument("cows"), _response(items))

    assert sorted((e.item_id, e.problem) for e in caught.value.errors) == [
        ("gooseflesh", "missing"),
        ("heart_rate", "unknown_item"),
        ("pupil_size", "repeated"),
        ("resting_pulse", "not_allowed"),
        ("restlessness", "not_integer"),
        ("sweating", "not_integer"),
    ]
    assert "allowed values: 0, 1, 2, 4" in str(caught.value)


def test_not_a_questionnaire_response() -> None:
    broken = {
        "resourceType": "QuestionnaireResponse",
        "status": "completed",
        "item": [{"answer": []}],
    }

    with pytest.raises(InvalidQuestionnaireResponse):
        answers_from_questionnaire_response(get_instrument("cows"), broken)
