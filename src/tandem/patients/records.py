"""Patient demographics and episodes of care: plain values and their rules (no I/O)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum

from tandem.errors import InvalidInput

GENDERS = ("female", "male", "other", "unknown")  # FHIR administrative-gender


class Phase(StrEnum):
    DETOX = "detox"
    REHAB = "rehab"
    AFTERCARE = "aftercare"


PHASE_LABELS = {Phase.DETOX: "Detox", Phase.REHAB: "Rehab", Phase.AFTERCARE: "Aftercare"}

DISCHARGE_REASONS = {
    "completed": "Completed treatment",
    "transferred": "Transferred to another service",
    "left_against_advice": "Left against clinical advice",
    "administrative": "Administrative discharge",
    "lost_to_follow_up": "Lost to follow-up",
    "deceased": "Deceased",
}

_MRN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9\-]{1,39}$")
_PHONE = re.compile(r"^[0-9+()\-. ]{5,40}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class Identifier:
    system: str
    value: str


@dataclass(frozen=True)
class PatientRecord:
    family: str
    given: tuple[str, ...]
    gender: str | None = None
    birth_date: date | None = None
    identifiers: tuple[Identifier, ...] = ()
    phone: str | None = None
    email: str | None = None
    active: bool = True


def check_record(record: PatientRecord, today: date) -> PatientRecord:
    """Refuse what a clinic would never accept; return the record, trimmed."""
    family = record.family.strip()
    given = tuple(g.strip() for g in record.given if g.strip())
    if not family and not given:
        raise InvalidInput("name", "a family or a given name is required")
    if len(family) > 200 or any(len(g) > 100 for g in given):
        raise InvalidInput("name", "names are limited to 200 characters")
    if record.gender is not None and record.gender not in GENDERS:
        raise InvalidInput("gender", f"must be one of {', '.join(GENDERS)}")
    if record.birth_date is not None:
        if record.birth_date > today:
            raise InvalidInput("birthDate", "cannot be in the future")
        if record.birth_date.year < 1900:
            raise InvalidInput("birthDate", "must be in 1900 or later")
    for ident in record.identifiers:
        if not _MRN.match(ident.value):
            raise InvalidInput("identifier", "an MRN is 2-40 letters, digits or hyphens")
    if record.phone and not _PHONE.match(record.phone):
        raise InvalidInput("telecom", "phone number has unexpected characters")
    if record.email and not _EMAIL.match(record.email):
        raise InvalidInput("telecom", "e-mail address is not valid")
    return PatientRecord(
        family=family,
        given=given,
        gender=record.gender,
        birth_date=record.birth_date,
        identifiers=record.identifiers,
        phone=(record.phone or None),
        email=(record.email or None),
        active=record.active,
    )


def age_on(birth_date: date | None, today: date) -> int | None:
    if birth_date is None:
        return None
    years = today.year - birth_date.year
    if (today.month, today.day) < (birth_date.month, birth_date.day):
        years -= 1
    return years


@dataclass(frozen=True)
class DateFilter:
    """A FHIR date search value: prefix (eq, ne, lt, le, gt, ge) and a day."""

    prefix: str
    day: date


_DATE_PREFIXES = ("eq", "ne", "lt", "le", "gt", "ge")


def parse_date_filter(text: str) -> DateFilter:
    prefix, value = ("eq", text)
    if text[:2] in _DATE_PREFIXES:
        prefix, value = text[:2], text[2:]
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(
            "birthdate", f"{text!r} is not a date (YYYY-MM-DD, optional prefix eq/lt/le/gt/ge/ne)"
        ) from None
    if not 1 < day.year < 9999:  # a day's neighbours in any zone stay in range
        raise InvalidInput("birthdate", f"{text!r} is out of range (years 2 to 9998)")
    return DateFilter(prefix, day)


@dataclass(frozen=True)
class PatientQuery:
    name: str | None = None
    identifier: str | None = None  # "system|value" or "value"
    birth_dates: tuple[DateFilter, ...] = ()
    program_id: int | None = None
    in_phase: str | None = None
    count: int = 20
    offset: int = 0
    extra: dict[str, str] = field(default_factory=dict)


def check_episode_times(admitted_at: datetime, now: datetime) -> None:
    if admitted_at.tzinfo is None:
        raise InvalidInput("admitted_at", "needs a time zone")
    if admitted_at > now:
        raise InvalidInput("admitted_at", "cannot be in the future")


def check_discharge(
    admitted_at: datetime, discharged_at: datetime, reason: str, now: datetime
) -> None:
    if reason not in DISCHARGE_REASONS:
        raise InvalidInput("discharge_reason", f"must be one of {', '.join(DISCHARGE_REASONS)}")
    if discharged_at < admitted_at:
        raise InvalidInput("discharged_at", "cannot be before admission")
    if discharged_at > now:
        raise InvalidInput("discharged_at", "cannot be in the future")
