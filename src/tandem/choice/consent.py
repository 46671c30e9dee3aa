"""Consent for substance-use records (42 CFR Part 2, as amended in 2024): the pure core.

What a consent must hold to be valid (§2.31(a)), what it covers, when it is in force, and the
notice that travels with every disclosure (§2.32). Plain values in, plain values out; the clock
is passed in. The rules themselves (purposes, information categories, required elements, the
notice text) are data: `data/consent.yaml`, each with its source.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tandem.clock import program_today, zone
from tandem.errors import InvalidInput
from tandem.evidence import Source

DATA = Path(__file__).resolve().parent / "data" / "consent.yaml"
PURPOSE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
MAX_NAME = 200
MAX_TEXT = 500


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Purpose(_Frozen):
    code: str = Field(pattern=r"^[A-Z]+$")
    label: str
    plain: str
    source: str


class Category(_Frozen):
    id: str = Field(pattern=r"^[a-z_]+$")
    label: str
    plain: str
    resource_types: tuple[str, ...] = ()


class Element(_Frozen):
    field: str
    paragraph: str
    label: str
    source: str


class Notice(_Frozen):
    text: str
    items: tuple[str, ...]
    closing: str
    source: str

    @property
    def full_text(self) -> str:
        return "\n".join((self.text, *self.items, self.closing))


class Accounting(_Frozen):
    text: str
    source: str


class ConsentRules(_Frozen):
    sources: dict[str, Source]
    purposes: tuple[Purpose, ...]
    categories: tuple[Category, ...]
    elements: tuple[Element, ...]
    notice: Notice
    accounting: Accounting

    @model_validator(mode="after")
    def _sources_known(self) -> ConsentRules:
        cited = [p.source for p in self.purposes] + [e.source for e in self.elements]
        cited += [self.notice.source, self.accounting.source]
        unknown = sorted(set(cited) - set(self.sources))
        if unknown:
            raise ValueError(f"unknown source(s): {', '.join(unknown)}")
        if [c.id for c in self.categories][:1] != ["all"]:
            raise ValueError("the first information category must be 'all'")
        return self

    def purpose(self, code: str) -> Purpose | None:
        return next((p for p in self.purposes if p.code == code), None)

    def element(self, field: str) -> Element:
        return next(e for e in self.elements if e.field == field)


@cache
def rules() -> ConsentRules:
    return ConsentRules.model_validate(yaml.safe_load(DATA.read_text(encoding="utf-8")))


def covered_types(information: str) -> frozenset[str] | None:
    """The kinds of record (FHIR resource types) a consent's information covers; None: all."""
    ids = [i for i in information.split(",") if i]
    if not ids or "all" in ids:
        return None
    return frozenset(t for c in rules().categories if c.id in ids for t in c.resource_types)


def information_label(information: str) -> str:
    labels = {c.id: c.label for c in rules().categories}
    return ", ".join(labels.get(i, i) for i in information.split(",") if i)


def information_plain(information: str) -> str:
    """The information a consent covers, as the patient reads it."""
    plain = {c.id: c.plain for c in rules().categories}
    return ", ".join(plain.get(i, i) for i in information.split(",") if i)


def _missing(field: str, detail: str = "") -> InvalidInput:
    element = rules().element(field)
    return InvalidInput(
        field,
        f"{detail or f'enter {element.label}'} (required by 42 CFR {element.paragraph})",
    )


@dataclass(frozen=True)
class ConsentInput:
    """A consent as a person fills it in (form or FHIR Consent), not yet checked."""

    recipient_program_id: int | None = None
    recipient_name: str = ""
    purpose: str = ""
    purpose_text: str = ""
    information: tuple[str, ...] = ()
    expires_on: date | None = None
    expiry_event: str = ""
    signed_on: date | None = None
    signed_by: str = ""
    signer_role: str = "patient"


@dataclass(frozen=True)
class CheckedConsent:
    recipient_program_id: int | None
    recipient_name: str
    purpose: str
    purpose_text: str
    information: str  # category ids, comma-separated ("all" for every record)
    expires_on: date | None
    expires_at: datetime | None  # the first moment it is no longer in force (UTC)
    expiry_event: str
    signed_on: date
    signed_at: datetime  # the first moment it is in force: the start of the day it was signed
    signed_by: str
    signer_role: str


SIGNER_ROLES = {"patient": "The patient", "representative": "A person who may sign for them"}


def _day_start(day: date, time_zone: str) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone(time_zone)).astimezone(UTC)


def check_consent(
    values: ConsentInput,
    *,
    patient_name: str,
    program_name: str,
    recipient_program_name: str | None,
    own_program_id: int,
    time_zone: str,
    now: datetime,
) -> CheckedConsent:
    """A consent with every element §2.31(a) requires, or InvalidInput naming the first one
    missing (the field a person must fix)."""
    if not patient_name.strip():
        raise _missing("patient", "the patient has no name on record: add it first")
    if not program_name.strip():
        raise _missing("program")
    name = " ".join(values.recipient_name.split())
    if values.recipient_program_id is not None:
        if recipient_program_name is None:
            raise _missing("recipient", "choose a program of Tandem that is known")
        if values.recipient_program_id == own_program_id:
            raise InvalidInput(
                "recipient", "the patient's own program needs no consent: choose another"
            )
        name = recipient_program_name
    elif not name:
        raise _missing("recipient")
    if len(name) > MAX_NAME:
        raise InvalidInput("recipient", f"write the recipient in at most {MAX_NAME} characters")
    if rules().purpose(values.purpose) is None:
        raise _missing("purpose", "choose the purpose")
    purpose_text = " ".join(values.purpose_text.split())
    if values.purpose == "PATRQT" and not purpose_text:
        raise _missing("purpose", "describe the purpose in the patient's words")
    if len(purpose_text) > MAX_TEXT:
        raise InvalidInput("purpose", f"describe the purpose in at most {MAX_TEXT} characters")
    known = {c.id for c in rules().categories}
    chosen = [i for i in dict.fromkeys(values.information) if i]
    if not chosen:
        raise _missing("information", "choose which information may be shared")
    unknown = [i for i in chosen if i not in known]
    if unknown:
        raise InvalidInput("information", f"unknown kind of information: {unknown[0]}")
    information = "all" if "all" in chosen else ",".join(chosen)
    if values.signed_on is None:
        raise _missing("signed_on")
    today = program_today(time_zone, now)
    if values.signed_on > today:
        raise InvalidInput("signed_on", "the date signed cannot be in the future")
    event = " ".join(values.expiry_event.split())
    if values.expires_on is None and not event:
        raise _missing("expiry", "enter the date or the event on which the consent expires")
    if len(event) > MAX_TEXT:
        raise InvalidInput("expiry", f"describe the event in at most {MAX_TEXT} characters")
    if values.expires_on is not None and values.expires_on < values.signed_on:
        raise InvalidInput("expiry", "the consent cannot expire before it was signed")
    signed_by = " ".join(values.signed_by.split())
    if not signed_by:
        raise _missing("signed_by", "enter who signed")
    if len(signed_by) > MAX_NAME:
        raise InvalidInput("signed_by", f"write the name in at most {MAX_NAME} characters")
    if values.signer_role not in SIGNER_ROLES:
        raise InvalidInput("signed_by", "say whether the patient or a representative signed")
    return CheckedConsent(
        recipient_program_id=values.recipient_program_id,
        recipient_name=name,
        purpose=values.purpose,
        purpose_text=purpose_text,
        information=information,
        expires_on=values.expires_on,
        expires_at=(
            _day_start(values.expires_on + timedelta(days=1), time_zone)
            if values.expires_on is not None
            else None
        ),
        expiry_event=event,
        signed_on=values.signed_on,
        signed_at=_day_start(values.signed_on, time_zone),
        signed_by=signed_by,
        signer_role=values.signer_role,
    )


def state(
    *,
    signed_at: datetime,
    expires_at: datetime | None,
    ended_at: datetime | None,
    revoked_at: datetime | None,
    now: datetime,
) -> str:
    """in force | revoked | expired | ended (its expiry event happened) | not yet in force."""
    if revoked_at is not None and revoked_at <= now:
        return "revoked"
    if ended_at is not None and ended_at <= now:
        return "ended"
    if expires_at is not None and expires_at <= now:
        return "expired"
    if signed_at > now:
        return "not yet in force"
    return "in force"


STATE_TEXT = {
    "in force": "In force",
    "revoked": "Revoked",
    "ended": "Ended (its expiry event happened)",
    "expired": "Expired",
    "not yet in force": "Not yet in force",
}
