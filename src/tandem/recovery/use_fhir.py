"""Use days, craving ratings and drug-screen results as FHIR R4B Observations: the mapping, the
sources /fhir/Observation searches (`tandem.fhir.observations`), and reading a created one
back from FHIR.

Codes: each carries Tandem's own code system (the code is the substance id) and, only where
data/use_measures.yaml holds a confirmed one, its LOINC code: 74013-4 "Alcoholic drinks per
day" for an alcohol day with its drinks, and a urine-screen code for opioids, cocaine,
stimulants and cannabis. A day used or not, a craving rating, and the other screens carry the
Tandem code only (no LOINC code confirmed). Every resource is validated before it leaves.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

from fhir.resources.R4B.observation import Observation
from sqlalchemy import Select, select

from tandem.access.guard import Access
from tandem.access.queries import read_row, visible
from tandem.errors import InvalidInput
from tandem.fhir.observations import Found, ObservationSearch, ObservationSource
from tandem.fhir.output import checked
from tandem.fhir.search_dates import DateBounds, day_bounds
from tandem.recovery.storage import (
    CravingRatingRow,
    DrugScreenResultRow,
    DrugScreenRow,
    UseDayRow,
)
from tandem.recovery.substances import substances
from tandem.recovery.use_measures import SCREEN_RESULTS, use_facts

OBSERVATION = "Observation"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
USE_SYSTEM = "urn:tandem:recovery:use"
CRAVING_SYSTEM = "urn:tandem:recovery:craving"
SCREEN_SYSTEM = "urn:tandem:recovery:drug-screen"
RESULT_SYSTEM = "urn:tandem:recovery:drug-screen-result"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
SOCIAL_HISTORY = {"system": CATEGORY, "code": "social-history", "display": "Social History"}
LABORATORY = {"system": CATEGORY, "code": "laboratory", "display": "Laboratory"}
RESULT_LABELS = {"positive": "Positive", "negative": "Negative", "invalid": "Invalid specimen"}


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _labels() -> dict[str, str]:
    return {s.id: s.label for s in substances()}


def drinks_code() -> dict[str, str]:
    c = use_facts().loinc.drinks_per_day
    return {"system": LOINC, "code": c.code, "display": c.display}


def screen_codes() -> dict[str, dict[str, str]]:
    return {
        s: {"system": LOINC, "code": c.code, "display": c.display}
        for s, c in use_facts().loinc.urine_screen.items()
    }


# --------------------------------------------------------------------------- mapping


def use_observation(row: UseDayRow) -> dict[str, Any]:
    label = _labels().get(row.substance, row.substance)
    codings = [{"system": USE_SYSTEM, "code": row.substance, "display": f"{label} use that day"}]
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": f"use-{row.id}",
        "meta": {"lastUpdated": _iso(row.recorded_at)},
        "status": "final",
        "category": [{"coding": [SOCIAL_HISTORY]}],
        "code": {"coding": codings, "text": f"{label} use that day"},
        "subject": {"reference": f"Patient/{row.patient_id}"},
        "effectiveDateTime": row.day.isoformat(),
    }
    if row.standard_drinks is not None:
        codings.append(drinks_code())
        resource["valueQuantity"] = {
            "value": row.standard_drinks,
            "unit": "standard drinks",
            "system": UCUM,
            "code": "{drinks}/d",
        }
    else:
        resource["valueBoolean"] = row.used
    return checked(Observation, resource)


def craving_observation(row: CravingRatingRow) -> dict[str, Any]:
    label = _labels().get(row.substance, row.substance)
    text = f"Craving for {label.lower()} (0 none to 10 strongest)"
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": f"craving-{row.id}",
        "meta": {"lastUpdated": _iso(row.recorded_at)},
        "status": "final",
        "category": [{"coding": [SOCIAL_HISTORY]}],
        "code": {
            "coding": [{"system": CRAVING_SYSTEM, "code": row.substance, "display": text}],
            "text": text,
        },
        "subject": {"reference": f"Patient/{row.patient_id}"},
        "effectiveDateTime": _iso(row.rated_at),
        "valueInteger": row.rating,
    }
    return checked(Observation, resource)


def screen_observation(result: DrugScreenResultRow, screen: DrugScreenRow) -> dict[str, Any]:
    label = _labels().get(result.substance, result.substance)
    codings = [
        {"system": SCREEN_SYSTEM, "code": result.substance, "display": f"{label}, urine screen"}
    ]
    loinc = screen_codes().get(result.substance)
    if loinc is not None:
        codings.append(loinc)
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": f"screen-{result.id}",
        "meta": {"lastUpdated": _iso(screen.recorded_at)},
        "status": "final",
        "category": [{"coding": [LABORATORY]}],
        "code": {"coding": codings, "text": f"{label}, urine drug screen"},
        "subject": {"reference": f"Patient/{result.patient_id}"},
        "effectiveDateTime": _iso(screen.collected_at),
        "valueCodeableConcept": {
            "coding": [
                {
                    "system": RESULT_SYSTEM,
                    "code": result.result,
                    "display": RESULT_LABELS[result.result],
                }
            ],
            "text": RESULT_LABELS[result.result],
        },
        "specimen": {
            "display": f"{screen.specimen} specimen collected {_iso(screen.collected_at)}"
        },
    }
    return checked(Observation, resource)


# --------------------------------------------------------------------------- code search


@dataclass(frozen=True)
class Wanted:
    """What a source's rows must match: None in `substances` = every substance; `drinks` = an
    alcohol day with its drinks (LOINC 74013-4)."""

    substances: frozenset[str | None]
    drinks_only: bool = False


def wanted(
    tokens: Sequence[str], system: str, loinc: dict[str, str], drinks_loinc: str | None = None
) -> Wanted | None:
    """The rows of `system` that the code tokens name (any may match); None: no filter at all.
    An empty `substances` set: the tokens name nothing of this source."""
    if not tokens:
        return None
    known = {s.id for s in substances()}
    found: set[str | None] = set()
    drinks = False
    for token in tokens:
        if "|" in token:
            token_system, code = token.split("|", 1)
            if token_system == system:
                found.add(code or None)
            elif token_system == LOINC:
                if drinks_loinc is not None and code == drinks_loinc:
                    drinks = True
                found |= {s for s, c in loinc.items() if c == code}
        elif token in known:
            found.add(token)
    if drinks and not found:
        return Wanted(frozenset({"alcohol"}), drinks_only=True)
    return Wanted(frozenset(found))


def _substance_filter(
    statement: Select[Any], column: Any, want: Wanted | None
) -> Select[Any] | None:
    if want is None:
        return statement
    if not want.substances:
        return None
    if None in want.substances:
        return statement
    return statement.where(column.in_(sorted(s for s in want.substances if s is not None)))


def _instant_bounds(statement: Select[Any], column: Any, query: ObservationSearch) -> Select[Any]:
    if query.date_ge is not None:
        statement = statement.where(column >= query.date_ge)
    if query.date_lt is not None:
        statement = statement.where(column < query.date_lt)
    return statement


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


# --------------------------------------------------------------------------- sources


def _find_use(access: Access, query: ObservationSearch, limit: int) -> list[Found]:
    want = wanted(query.codes, USE_SYSTEM, {}, use_facts().loinc.drinks_per_day.code)
    statement = _substance_filter(select(UseDayRow), UseDayRow.substance, want)
    if statement is None:
        return []
    if want is not None and want.drinks_only:
        statement = statement.where(UseDayRow.standard_drinks.is_not(None))
    if query.patient_id is not None:
        statement = statement.where(UseDayRow.patient_id == query.patient_id)
    first, last = day_bounds(DateBounds(ge=query.date_ge, lt=query.date_lt))
    if first is not None:
        statement = statement.where(UseDayRow.day >= first)
    if last is not None:
        statement = statement.where(UseDayRow.day <= last)
    statement = (
        statement.where(visible(access, OBSERVATION, UseDayRow.patient_id, UseDayRow.program_id))
        .order_by(UseDayRow.day.desc(), UseDayRow.id)
        .limit(limit)
    )
    return [
        Found(_day_start(r.day), r.id, r.patient_id, _later(use_observation, r))
        for r in access.db.scalars(statement)
    ]


def _later(build: Callable[..., dict[str, Any]], *args: Any) -> Callable[[], dict[str, Any]]:
    return lambda: build(*args)


def _read_use(access: Access, row_id: int) -> dict[str, Any]:
    return use_observation(read_row(access, OBSERVATION, UseDayRow, row_id))


def _find_craving(access: Access, query: ObservationSearch, limit: int) -> list[Found]:
    want = wanted(query.codes, CRAVING_SYSTEM, {})
    statement = _substance_filter(select(CravingRatingRow), CravingRatingRow.substance, want)
    if statement is None:
        return []
    if query.patient_id is not None:
        statement = statement.where(CravingRatingRow.patient_id == query.patient_id)
    statement = _instant_bounds(statement, CravingRatingRow.rated_at, query)
    statement = (
        statement.where(
            visible(access, OBSERVATION, CravingRatingRow.patient_id, CravingRatingRow.program_id)
        )
        .order_by(CravingRatingRow.rated_at.desc(), CravingRatingRow.id)
        .limit(limit)
    )
    return [
        Found(r.rated_at, r.id, r.patient_id, _later(craving_observation, r))
        for r in access.db.scalars(statement)
    ]


def _read_craving(access: Access, row_id: int) -> dict[str, Any]:
    return craving_observation(read_row(access, OBSERVATION, CravingRatingRow, row_id))


def _find_screen(access: Access, query: ObservationSearch, limit: int) -> list[Found]:
    loinc = {s: c["code"] for s, c in screen_codes().items()}
    want = wanted(query.codes, SCREEN_SYSTEM, loinc)
    r, s = DrugScreenResultRow, DrugScreenRow
    base: Select[Any] = select(r, s).join(s, s.id == r.screen_id)  # type: ignore[assignment]
    statement = _substance_filter(base, r.substance, want)
    if statement is None:
        return []
    if query.patient_id is not None:
        statement = statement.where(r.patient_id == query.patient_id)
    statement = _instant_bounds(statement, s.collected_at, query)
    statement = (
        statement.where(visible(access, OBSERVATION, r.patient_id, r.program_id))
        .order_by(s.collected_at.desc(), r.id)
        .limit(limit)
    )
    return [
        Found(
            screen.collected_at,
            result.id,
            result.patient_id,
            _later(screen_observation, result, screen),
        )
        for result, screen in access.db.execute(statement)
    ]


def _read_screen(access: Access, row_id: int) -> dict[str, Any]:
    result = read_row(access, OBSERVATION, DrugScreenResultRow, row_id)
    screen = access.db.get(DrugScreenRow, result.screen_id)
    assert screen is not None  # a result always has its screen (foreign key)
    return screen_observation(result, screen)


SOURCES = (
    ObservationSource(prefix="use", find=_find_use, read=_read_use),
    ObservationSource(prefix="craving", find=_find_craving, read=_read_craving),
    ObservationSource(prefix="screen", find=_find_screen, read=_read_screen),
)


# --------------------------------------------------------------------------- reading a create


@dataclass(frozen=True)
class ObservationInput:
    kind: str  # use | craving | screen
    patient_id: str
    substance: str
    value: Any  # bool | float (drinks) | int (craving) | str (screen result)
    effective: date | datetime


def _codings(body: dict[str, Any]) -> list[dict[str, Any]]:
    code = body.get("code")
    codings = code.get("coding") if isinstance(code, dict) else None
    if not isinstance(codings, list) or not codings:
        raise InvalidInput(
            "code",
            "give a coding: "
            + ", ".join(f"{s}|<substance>" for s in (USE_SYSTEM, CRAVING_SYSTEM, SCREEN_SYSTEM)),
        )
    return [c for c in codings if isinstance(c, dict)]


def _kind_of(body: dict[str, Any]) -> tuple[str, str]:
    """(kind, substance) from the codings: Tandem's systems first, then a confirmed LOINC code."""
    known = {s.id for s in substances()}
    systems = {USE_SYSTEM: "use", CRAVING_SYSTEM: "craving", SCREEN_SYSTEM: "screen"}
    loinc_screens = {c["code"]: s for s, c in screen_codes().items()}
    codings = _codings(body)
    for coding in codings:
        kind = systems.get(str(coding.get("system")))
        if kind is not None:
            code = coding.get("code")
            if code not in known:
                raise InvalidInput("code.coding.code", f"one of: {', '.join(sorted(known))}")
            return kind, str(code)
    for coding in codings:
        if coding.get("system") == LOINC:
            if coding.get("code") == drinks_code()["code"]:
                return "use", "alcohol"
            if coding.get("code") in loinc_screens:
                return "screen", loinc_screens[str(coding.get("code"))]
    raise InvalidInput(
        "code",
        "not an Observation Tandem records: use a code of "
        + ", ".join((USE_SYSTEM, CRAVING_SYSTEM, SCREEN_SYSTEM)),
    )


def _effective(body: dict[str, Any], kind: str) -> date | datetime:
    raw = body.get("effectiveDateTime")
    if not isinstance(raw, str) or not raw:
        raise InvalidInput(
            "effectiveDateTime", "give when (a day for use, a time with its zone otherwise)"
        )
    try:
        if "T" not in raw:
            if kind != "use":
                raise InvalidInput("effectiveDateTime", "give the time with its zone")
            return date.fromisoformat(raw)
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except (ValueError, OverflowError):
        raise InvalidInput(
            "effectiveDateTime", f"{raw[:40]!r} is not a FHIR date or dateTime"
        ) from None
    if value.tzinfo is None:
        raise InvalidInput("effectiveDateTime", "needs a time zone (Z or +hh:mm)")
    return value


def read_observation_input(body: dict[str, Any]) -> ObservationInput:
    """What a created Observation says, or InvalidInput naming the element (Observation.<path>)."""
    subject = body.get("subject")
    reference = subject.get("reference", "") if isinstance(subject, dict) else ""
    if not isinstance(reference, str) or not reference.startswith("Patient/"):
        raise InvalidInput("subject", "reference the Patient (Patient/<id>)")
    if body.get("status") != "final":
        raise InvalidInput("status", "only a final Observation is recorded (status: final)")
    kind, substance_id = _kind_of(body)
    effective = _effective(body, kind)
    value_keys = sorted(k for k in body if k.startswith("value"))
    if len(value_keys) != 1:
        raise InvalidInput("value[x]", "give exactly one value")
    key = value_keys[0]
    raw = body[key]
    value: Any
    if kind == "use":
        if key == "valueBoolean" and isinstance(raw, bool):
            value = raw
        elif key == "valueQuantity" and isinstance(raw, dict) and substance_id == "alcohol":
            number = raw.get("value")
            if isinstance(number, bool) or not isinstance(number, int | float):
                raise InvalidInput("valueQuantity.value", "give the number of standard drinks")
            value = float(number)
        else:
            raise InvalidInput(
                key,
                "valueBoolean (used that day or not), or valueQuantity in standard drinks for alcohol",
            )
    elif kind == "craving":
        if key != "valueInteger" or isinstance(raw, bool) or not isinstance(raw, int):
            raise InvalidInput(key, "a craving rating is a whole number (valueInteger)")
        value = raw
    else:
        code = None
        if key == "valueCodeableConcept" and isinstance(raw, dict):
            for coding in raw.get("coding") or []:
                if isinstance(coding, dict) and coding.get("code") in SCREEN_RESULTS:
                    code = coding["code"]
        elif key == "valueString" and isinstance(raw, str):
            code = raw.strip().lower()
        if code not in SCREEN_RESULTS:
            raise InvalidInput(key, f"one of {', '.join(SCREEN_RESULTS)} ({RESULT_SYSTEM})")
        value = code
    return ObservationInput(
        kind, reference.removeprefix("Patient/"), substance_id, value, effective
    )
