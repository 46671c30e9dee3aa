"""Patient demographics and episodes of care: plain values and their rules (no I/O)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
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
    # None: the sender said nothing about identifiers (an update keeps the stored ones).
    identifiers: tuple[Identifier, ...] | None = ()
    phone: str | None = None
    email: str | None = None
    active: bool = True
    # The synthetic-data marker (HTEST) as sent; None: not said (an update keeps the stored one).
    synthetic: bool | None = None


def check_record(record: PatientRecord, today: date) -> PatientRecord:
    """Refuse what a clinic would never accept; return the record, trimmed."""
    family = record.family.strip()
    given = tuple(g.strip() for g in record.given if g.strip())
    if not family and not given:
        raise InvalidInput("name", "a family or a given name is required")
    if len(family) > 200 or any(len(g) > 100 for g in given) or len(" ".join(given)) > 200:
        raise InvalidInput("name", "names are limited to 200 characters")
    if record.gender is not None and record.gender not in GENDERS:
        raise InvalidInput("gender", f"must be one of {', '.join(GENDERS)}")
    if record.birth_date is not None:
        if record.birth_date > today:
            raise InvalidInput("birthDate", "cannot be in the future")
        if record.birth_date.year < 1900:
            raise InvalidInput("birthDate", "must be in 1900 or later")
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
        synthetic=record.synthetic,
    )


_TANDEM_MRN_SYSTEMS = "urn:tandem:program:"


def check_identifiers(
    sent: tuple[Identifier, ...] | None,
    mrn_system: str,
    stored: tuple[Identifier, ...] = (),
    *,
    new_mrn: str,
) -> tuple[Identifier, ...]:
    """The identifiers a patient will have. An identifier without a system is the program's
    MRN; one MRN per patient, issued (`new_mrn`) when none is sent. An update (`stored` holds
    an MRN) keeps that MRN: it cannot be removed or changed. `sent` None keeps `stored`.
    Identifiers of other systems (a lab's, a payer's) are kept as sent, not as MRNs."""
    if sent is None:
        return stored or (Identifier(mrn_system, new_mrn),)
    wanted = [Identifier(i.system or mrn_system, i.value.strip()) for i in sent]
    for ident in wanted:
        if ident.system.startswith(_TANDEM_MRN_SYSTEMS) and ident.system != mrn_system:
            raise InvalidInput(
                "identifier", f"{ident.system} is another program's MRN system; use {mrn_system}"
            )
        if ident.system == mrn_system and not _MRN.match(ident.value):
            raise InvalidInput("identifier", "an MRN is 2-40 letters, digits or hyphens")
        if not 1 <= len(ident.value) <= 100 or not ident.value.isprintable():
            raise InvalidInput("identifier", "an identifier value is 1-100 printable characters")
        if len(ident.system) > 200:
            raise InvalidInput("identifier", "an identifier system is at most 200 characters")
    if len(set(wanted)) != len(wanted):
        raise InvalidInput("identifier", "the same identifier is sent twice")
    mrns = [i.value for i in wanted if i.system == mrn_system]
    if len(mrns) > 1:
        raise InvalidInput("identifier", "a patient has one MRN in the program; send one")
    kept = next((i.value for i in stored if i.system == mrn_system), None)
    if kept is not None and mrns != [kept]:
        raise InvalidInput(
            "identifier",
            f"the MRN {kept} ({mrn_system}) is kept for the life of the record: it cannot be "
            "removed or changed by an update; send it unchanged",
        )
    if not mrns:
        wanted.insert(0, Identifier(mrn_system, new_mrn))
    return tuple(wanted)


def age_on(birth_date: date | None, today: date) -> int | None:
    if birth_date is None:
        return None
    years = today.year - birth_date.year
    if (today.month, today.day) < (birth_date.month, birth_date.day):
        years -= 1
    return years


@dataclass(frozen=True)
class DateFilter:
    """A FHIR date search value: a prefix (eq, ne, lt, le, gt, ge) and the days it names,
    from `day` up to `end` (exclusive): one day, or a whole month (YYYY-MM) or year (YYYY)."""

    prefix: str
    day: date
    end: date


_DATE_PREFIXES = ("eq", "ne", "lt", "le", "gt", "ge")


def _next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def parse_date_filter(text: str, field: str = "birthdate") -> DateFilter:
    prefix, value = ("eq", text)
    if text[:2] in _DATE_PREFIXES:
        prefix, value = text[:2], text[2:]
    day: date | None = None
    until: date | None = None
    try:
        if re.fullmatch(r"\d{4}", value):
            day = date(int(value), 1, 1)
            until = date(day.year + 1, 1, 1) if day.year < 9999 else date.max
        elif re.fullmatch(r"\d{4}-\d{2}", value):
            day = date(int(value[:4]), int(value[5:]), 1)
            until = _next_month(day) if day < date(9999, 12, 1) else date.max
        elif re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            day = date.fromisoformat(value)
            until = day + timedelta(days=1) if day < date.max else date.max
    except ValueError:
        day = None
    if day is None or until is None:
        raise InvalidInput(
            field,
            f"{text!r} is not a date (YYYY, YYYY-MM or YYYY-MM-DD, optional prefix "
            "eq/lt/le/gt/ge/ne)",
        )
    if not 1 < day.year < 9999:  # a day's neighbours in any zone stay in range
        raise InvalidInput(field, f"{text!r} is out of range (years 2 to 9998)")
    return DateFilter(prefix, day, until)


SORT_KEYS = ("family", "given", "birthdate", "_lastUpdated", "_id")


def parse_sort(text: str) -> tuple[tuple[str, bool], ...]:
    """FHIR `_sort`: comma-separated keys, each descending when it starts with `-`."""
    keys = []
    for part in (p.strip() for p in text.split(",")):
        key = part.removeprefix("-")
        if key not in SORT_KEYS:
            raise InvalidInput(
                "_sort", f"{part!r}: sort by {', '.join(SORT_KEYS)} (- for descending)"
            )
        keys.append((key, part.startswith("-")))
    return tuple(keys)


def check_genders(values: tuple[str, ...]) -> tuple[str, ...]:
    for value in values:
        if value not in GENDERS:
            raise InvalidInput("gender", f"{value!r}: one of {', '.join(GENDERS)}")
    return values


AnyOf = tuple[str, ...]  # one search parameter's comma-separated values: any may match


@dataclass(frozen=True)
class PatientQuery:
    """A patient search. Each tuple holds one group per time a parameter is given (all must
    match, AND); each group the comma-separated values of that one (any may match, OR)."""

    names: tuple[AnyOf, ...] = ()
    families: tuple[AnyOf, ...] = ()
    givens: tuple[AnyOf, ...] = ()
    identifiers: tuple[AnyOf, ...] = ()  # "system|value" or "value"
    genders: tuple[AnyOf, ...] = ()
    ids: tuple[AnyOf, ...] = ()
    birth_dates: tuple[tuple[DateFilter, ...], ...] = ()
    last_updated: tuple[tuple[DateFilter, ...], ...] = ()  # days, UTC
    # (key, descending) from `_sort`: keys of SORT_KEYS. Empty: family, given, id.
    sort: tuple[tuple[str, bool], ...] = ()
    # The sort key (family_lower, given_lower, id) of the last row already seen.
    after: tuple[str, str, str] | None = None
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
