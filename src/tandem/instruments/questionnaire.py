"""Instruments as FHIR R4B Questionnaires, and answers back from QuestionnaireResponses."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from fhir.resources.R4B.questionnaire import Questionnaire
from fhir.resources.R4B.questionnaireresponse import (
    QuestionnaireResponse,
    QuestionnaireResponseItem,
)
from pydantic import ValidationError

from tandem.instruments.engine import (
    AnswerError,
    InvalidAnswers,
    parse_value,
    validate_answers,
)
from tandem.instruments.models import Coding, Instrument

ORDINAL_VALUE = "http://hl7.org/fhir/StructureDefinition/ordinalValue"


class InvalidQuestionnaireResponse(ValueError):
    """The document is not a valid R4B QuestionnaireResponse at all."""


def to_questionnaire(instrument: Instrument) -> dict[str, Any]:
    """A validated R4B Questionnaire; `draft` while any of its wording is unverified.

    The status follows the wording the resource carries (items and answers). Band schemes are
    not part of a Questionnaire; an unverified scheme is flagged where scores are banded.
    """
    resource: dict[str, Any] = {
        "resourceType": "Questionnaire",
        "id": instrument.id.replace("_", "-"),
        "name": questionnaire_name(instrument),
        "title": instrument.name,
        "version": instrument.version,
        "status": "active" if instrument.wording_verified else "draft",
        "subjectType": ["Patient"],
        "description": instrument.citation,
        "item": [
            {
                "linkId": item.id,
                "text": item.text,
                "type": "choice",
                "required": True,
                **({"code": [_coding(item.code)]} if item.code else {}),
                "answerOption": [
                    {
                        "extension": [{"url": ORDINAL_VALUE, "valueDecimal": value}],
                        "valueCoding": {"code": str(value), "display": anchor.label(value)},
                    }
                    for value, anchor in sorted(item.anchors.items())
                ],
            }
            for item in instrument.items
        ],
    }
    Questionnaire.model_validate(resource)
    return resource


def questionnaire_name(instrument: Instrument) -> str:
    """The Questionnaire's computable name: `Phq9`, `AuditC`, `CiwaAr`."""
    return "".join(part.capitalize() for part in instrument.id.split("_"))


def answers_from_questionnaire_response(
    instrument: Instrument, qr: Mapping[str, Any]
) -> dict[str, int]:
    """Item id -> value from a QuestionnaireResponse whose linkIds are the item ids.

    Each answer is a valueCoding whose code is the value, or a valueInteger. Raises
    InvalidAnswers naming every bad linkId, or InvalidQuestionnaireResponse.
    """
    try:
        response = QuestionnaireResponse.model_validate(dict(qr))
    except ValidationError as exc:
        raise InvalidQuestionnaireResponse(f"not a valid R4B QuestionnaireResponse: {exc}") from exc
    raw: dict[str, object] = {}
    errors: list[AnswerError] = []
    for link_id, answers in _answered(response.item or []):
        allowed = _allowed(instrument, link_id)
        if link_id in raw or len(answers) > 1:
            errors.append(AnswerError(instrument.id, link_id, "repeated", None, allowed))
        raw[link_id] = _value(answers[0])
    try:
        values = validate_answers(instrument, raw)
    except InvalidAnswers as exc:
        errors += exc.errors
    if errors:
        raise InvalidAnswers(errors)
    return values


def _answered(items: list[QuestionnaireResponseItem]) -> Iterator[tuple[str, list[Any]]]:
    """(linkId, answers) for every item that carries answers, at any depth."""
    for item in items:
        answers = list(item.answer or [])
        if answers:
            yield str(item.linkId), answers
        yield from _answered(list(item.item or []))
        for answer in answers:
            yield from _answered(list(answer.item or []))


def _value(answer: Any) -> object:
    if answer.valueInteger is not None:
        return int(answer.valueInteger)
    if answer.valueCoding is not None and answer.valueCoding.code is not None:
        return parse_value(str(answer.valueCoding.code))
    given = answer.model_dump(mode="json", exclude_none=True)
    return given.get("valueCoding", given)


def _allowed(instrument: Instrument, link_id: str) -> tuple[int, ...]:
    return next((i.allowed_values for i in instrument.items if i.id == link_id), ())


def _coding(coding: Coding) -> dict[str, str]:
    return coding.model_dump(exclude_none=True)
