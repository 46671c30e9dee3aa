"""What a nurse (or an API client) enters for withdrawal monitoring, checked before anything is
stored: the withdrawal context, the time of an assessment, the instrument a protocol covers.

Pure: plain values in, the checked values out, or `InvalidInput` naming the field to fix. No
session, no clock (`now` is passed). Every recorded time goes through the one policy,
`tandem.clock.check_recorded_at`: timezone-aware, not later than `now` plus `CLOCK_SKEW`, not
before what it follows, and clamped to `now`. The checks of a dose given are the PRN rules'
(`withdrawal/prn.py`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TypeGuard

from tandem.clock import check_recorded_at
from tandem.errors import InvalidInput
from tandem.withdrawal.monitoring import HalfLifeClass, Substance, WithdrawalContext
from tandem.withdrawal.protocol import Protocol, monitoring_gaps, short_instrument_name

SUBSTANCES: Mapping[str, str] = {"alcohol": "Alcohol", "opioid": "Opioid", "other": "Other"}
HALF_LIFE: Mapping[str, str] = {
    "short": "Short-acting opioid",
    "long": "Long-acting opioid (e.g. methadone)",
}
MAX_NOTE = 2000


def _is_substance(value: str) -> TypeGuard[Substance]:
    return value in SUBSTANCES


def _is_half_life(value: str) -> TypeGuard[HalfLifeClass]:
    return value in HALF_LIFE


def check_substance(value: str) -> Substance:
    if not _is_substance(value):
        raise InvalidInput("substance", f"choose one of {', '.join(SUBSTANCES)}")
    return value


def check_half_life(value: str | None, substance: str) -> HalfLifeClass | None:
    """An opioid's half-life class; empty means not recorded."""
    if not value:
        return None
    if not _is_half_life(value):
        raise InvalidInput("opioid_half_life_class", "choose short or long acting")
    if substance != "opioid":
        raise InvalidInput("opioid_half_life_class", "only for an opioid")
    return value


def check_note(value: str, field: str = "note", limit: int = MAX_NOTE) -> str:
    if len(value) > limit:
        raise InvalidInput(field, f"keep the note under {limit} characters")
    return value.strip()


@dataclass(frozen=True)
class ContextInput:
    """The withdrawal context as entered; None means not recorded."""

    substance: str
    last_use_at: datetime | None = None
    opioid_half_life_class: str | None = None
    history_withdrawal_seizures: bool | None = None
    history_delirium_tremens: bool | None = None
    liver_failure: bool | None = None
    elderly: bool | None = None
    note: str = ""


@dataclass(frozen=True)
class CheckedContext:
    context: WithdrawalContext
    note: str


def check_context(values: ContextInput, now: datetime) -> CheckedContext:
    """The context as the monitoring core reads it, with its note; the time of last use is a
    recorded time (aware, not in the future)."""
    substance = check_substance(values.substance)
    half_life = check_half_life(values.opioid_half_life_class, substance)
    last_use = values.last_use_at
    if last_use is not None:
        last_use = check_recorded_at("last_use_at", last_use, now)
    note = check_note(values.note)
    return CheckedContext(
        WithdrawalContext(
            substance=substance,
            last_use_at=last_use,
            opioid_half_life_class=half_life,
            history_withdrawal_seizures=values.history_withdrawal_seizures,
            history_delirium_tremens=values.history_delirium_tremens,
            liver_failure=values.liver_failure,
            elderly=values.elderly,
        ),
        note,
    )


def stored_context(
    substance: str,
    last_use_at: datetime | None,
    opioid_half_life_class: str | None,
    history_withdrawal_seizures: bool | None,
    history_delirium_tremens: bool | None,
    liver_failure: bool | None,
    elderly: bool | None,
) -> WithdrawalContext:
    """A context read back from storage (checked when it was recorded, so no time check)."""
    checked_substance = check_substance(substance)
    return WithdrawalContext(
        substance=checked_substance,
        last_use_at=last_use_at,
        opioid_half_life_class=check_half_life(opioid_half_life_class, checked_substance),
        history_withdrawal_seizures=history_withdrawal_seizures,
        history_delirium_tremens=history_delirium_tremens,
        liver_failure=liver_failure,
        elderly=elderly,
    )


def check_instrument(protocol: Protocol, instrument_id: str) -> None:
    """Only the withdrawal instruments of the program's protocol are scored here."""
    if instrument_id not in protocol.instruments:
        covered = ", ".join(protocol.instruments)
        raise InvalidInput(
            "questionnaire",
            f"{instrument_id!r} is not a withdrawal instrument of this "
            f"program's protocol (it covers: {covered})",
        )


def check_assessed_at(assessed_at: datetime, now: datetime, admitted_at: datetime) -> datetime:
    """When the assessment was done: a recorded time, not before the patient was admitted."""
    return check_recorded_at(
        "assessed_at",
        assessed_at,
        now,
        not_before=admitted_at,
        not_before_reason="cannot be before the patient was admitted",
    )


def check_monitoring_can_start(protocol: Protocol, instrument_id: str) -> None:
    """An instrument is monitored only when the protocol gives every score a due time: a row the
    sources leave empty must be set by the program first (`tandem withdrawal protocol-set`)."""
    gaps = monitoring_gaps(protocol, instrument_id, overdue=False)
    if gaps:
        raise InvalidInput(
            "questionnaire",
            f"{short_instrument_name(instrument_id)} monitoring cannot start: the program's "
            f"protocol ({protocol.id} v{protocol.version}) leaves its due time unset ("
            + "; ".join(f"{g.path}: {g.message}" for g in gaps)
            + "). An administrator must set it first.",
        )
