"""Withdrawal monitoring: when the next assessment is due, what escalates, when it may stop.

Pure functions over plain values. The instrument engine scores the answers; this module takes
its results as `ScoredAssessment(instrument_id, total, band_id, scored_at)` and reads them
against a program's `Protocol`. There is no clock here: `now` is always passed in, aware.

Time: reassessment intervals are elapsed time. All arithmetic and comparison is done in UTC
(Python compares and subtracts two datetimes sharing one tzinfo by wall clock, which is wrong
across a daylight-saving change); results are rendered in the program's time zone.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from tandem.withdrawal.protocol import (
    BAND_LEVEL_RANK,
    SEVERITY_RANK,
    Band,
    BandRule,
    Citation,
    ContextMatch,
    InstrumentProtocol,
    OverdueRule,
    Protocol,
    Reassessment,
    RiseRule,
    TotalAtLeastRule,
    total_range,
)

__all__ = [
    "BandMismatch",
    "Escalation",
    "Flag",
    "Interval",
    "IntervalNotSet",
    "MedicationOption",
    "MonitoringError",
    "MonitoringState",
    "NoAssessment",
    "ScoredAssessment",
    "WithdrawalContext",
    "census_key",
    "census_sort_key",
    "context_flags",
    "escalation_key",
    "evaluate",
    "next_due",
    "reassessment_interval",
]


class MonitoringError(ValueError):
    """The history cannot be read against the protocol."""


class NoAssessment(MonitoringError):
    """No assessment of this instrument yet: the baseline assessment is due."""


class IntervalNotSet(MonitoringError):
    """The protocol leaves the reassessment interval for this score to the program."""


class BandMismatch(MonitoringError):
    """The assessment's band does not match the protocol's band scheme for its total."""


def _require_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value.isoformat()}")


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True, slots=True)
class ScoredAssessment:
    """One scored withdrawal assessment, as the instrument engine returns it.

    `band_scheme_id` and `protocol_version` are what the assessment was scored under, when
    known; they let a change of protocol be told apart from a wrong band.
    """

    instrument_id: str
    total: int
    band_id: str | None
    scored_at: datetime
    band_scheme_id: str | None = None
    protocol_version: str | None = None
    assessment_id: str | None = None

    def __post_init__(self) -> None:
        _require_aware(self.scored_at, "scored_at")
        if isinstance(self.total, bool) or not isinstance(self.total, int) or self.total < 0:
            raise ValueError(f"total must be a non-negative int, got {self.total!r}")


Substance = Literal["alcohol", "opioid", "other"]
HalfLifeClass = Literal["short", "long"]


@dataclass(frozen=True, slots=True)
class WithdrawalContext:
    """What is known about this withdrawal episode. None means not recorded."""

    substance: Substance
    last_use_at: datetime | None = None
    opioid_half_life_class: HalfLifeClass | None = None
    history_withdrawal_seizures: bool | None = None
    history_delirium_tremens: bool | None = None
    liver_failure: bool | None = None
    elderly: bool | None = None

    def __post_init__(self) -> None:
        if self.substance not in ("alcohol", "opioid", "other"):
            raise ValueError(f"substance must be alcohol, opioid or other, not {self.substance!r}")
        if self.opioid_half_life_class not in (None, "short", "long"):
            raise ValueError(
                f"opioid_half_life_class must be short, long or None, "
                f"not {self.opioid_half_life_class!r}"
            )
        if self.last_use_at is not None:
            _require_aware(self.last_use_at, "last_use_at")


# --------------------------------------------------------------------------- outputs


@dataclass(frozen=True, slots=True)
class Interval:
    """How long after the latest assessment the next one is due, and why."""

    minutes: int | None
    row_id: str | None
    step_down_stage: int | None  # 1-based stage of the step-down rule, None if not stepped down
    reason: str
    source: Citation | None


@dataclass(frozen=True, slots=True)
class Escalation:
    rule_id: str
    severity: str
    message: str
    detail: str
    source: Citation
    key: str  # stable per rule and latest assessment: what an acknowledgement records
    acknowledged: bool = False


@dataclass(frozen=True, slots=True)
class MedicationOption:
    """A symptom-triggered medication suggestion from the protocol, with the protocol's
    24-hour maximum for the drug when its sources give one."""

    drug: str
    dose_text: str
    route: str | None
    repeat: str | None
    note: str | None
    source: Citation
    max_mg_per_24h: float | None = None
    max_source: Citation | None = None


@dataclass(frozen=True, slots=True)
class Flag:
    id: str
    severity: str
    message: str
    source: Citation | None


@dataclass(frozen=True, slots=True)
class MonitoringState:
    instrument_id: str
    protocol_id: str
    protocol_version: str
    protocol_hash: str
    now: datetime  # in the program's time zone
    latest: ScoredAssessment
    previous: ScoredAssessment | None
    band_id: str | None
    band_label: str | None
    band_level: str | None
    band_rank: int  # BAND_LEVEL_RANK of the band; -1 when the instrument has no bands
    interval: Interval
    due_at: datetime | None  # in the program's time zone; None when the interval is not set
    overdue: bool
    overdue_by: timedelta
    minutes_overdue: int
    escalations: tuple[Escalation, ...]
    monitoring_may_end: bool
    end_reason: str
    medication_suggestions: tuple[MedicationOption, ...]
    flags: tuple[Flag, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def unacknowledged_escalations(self) -> tuple[Escalation, ...]:
        return tuple(e for e in self.escalations if not e.acknowledged)


# --------------------------------------------------------------------------- history


def _series(
    protocol: Protocol, instrument_id: str, history: Sequence[ScoredAssessment], now: datetime
) -> tuple[InstrumentProtocol, list[ScoredAssessment]]:
    """This instrument's assessments, oldest first, checked against `now` and its range."""
    _require_aware(now, "now")
    inst = protocol.instrument(instrument_id)
    lo, hi = total_range(instrument_id)
    series = [a for a in history if a.instrument_id == instrument_id]
    now_utc = _utc(now)
    for a in series:
        if _utc(a.scored_at) > now_utc:
            raise MonitoringError(
                f"{instrument_id} assessment at {a.scored_at.isoformat()} is after now "
                f"({now.isoformat()})"
            )
        if not lo <= a.total <= hi:
            raise MonitoringError(f"{instrument_id} total {a.total} is outside {lo}-{hi}")
    series.sort(key=lambda a: _utc(a.scored_at))
    if not series:
        raise NoAssessment(f"no {instrument_id} assessment recorded: the baseline is due")
    return inst, series


def _trailing_below(series: Sequence[ScoredAssessment], below: int) -> list[ScoredAssessment]:
    run: list[ScoredAssessment] = []
    for a in reversed(series):
        if a.total >= below:
            break
        run.append(a)
    run.reverse()
    return run


def _band(
    protocol: Protocol, instrument_id: str, inst: InstrumentProtocol, latest: ScoredAssessment
) -> tuple[Band | None, list[str]]:
    """The protocol's band for the latest total, cross-checked with what the engine said."""
    scheme = inst.band_scheme
    warnings: list[str] = []
    if scheme is None:
        if latest.band_id is not None:
            warnings.append(
                f"{instrument_id} band {latest.band_id!r} ignored: the protocol sets no band "
                "scheme for this instrument"
            )
        return None, warnings
    band = scheme.band_for(latest.total)
    if band is None:  # the protocol validator checks bands cover every total
        raise BandMismatch(f"no {scheme.id!r} band covers {instrument_id} total {latest.total}")
    disagrees = (latest.band_scheme_id is not None and latest.band_scheme_id != scheme.id) or (
        latest.band_id is not None and latest.band_id != band.id
    )
    if disagrees:
        said = f"band {latest.band_id!r} of scheme {latest.band_scheme_id or '(unnamed)'!r}"
        expected = f"band {band.id!r} of scheme {scheme.id!r}"
        if latest.protocol_version is not None and latest.protocol_version != protocol.version:
            warnings.append(
                f"{instrument_id} total {latest.total} was banded {said} under protocol version "
                f"{latest.protocol_version}; read as {expected} under version {protocol.version}"
            )
        else:
            raise BandMismatch(
                f"{instrument_id} total {latest.total} was scored as {said}, but protocol "
                f"{protocol.id!r} v{protocol.version} reads it as {expected}"
            )
    return band, warnings


def _row(inst: InstrumentProtocol, instrument_id: str, total: int) -> Reassessment:
    row = inst.row_for(total)
    if row is None:
        raise IntervalNotSet(f"the protocol has no {instrument_id} reassessment row for {total}")
    return row


# --------------------------------------------------------------------------- due time


def reassessment_interval(
    protocol: Protocol,
    instrument_id: str,
    history: Sequence[ScoredAssessment],
    now: datetime,
) -> Interval:
    """The interval after the latest assessment: its row's, or a step-down stage's."""
    inst, series = _series(protocol, instrument_id, history, now)
    return _interval(protocol, instrument_id, inst, series)


def _interval(
    protocol: Protocol,
    instrument_id: str,
    inst: InstrumentProtocol,
    series: Sequence[ScoredAssessment],
) -> Interval:
    latest = series[-1]
    step_down = inst.step_down
    if step_down is not None:
        run = len(_trailing_below(series, step_down.below_total))
        needed = 0
        chosen: tuple[int, int, int] | None = None
        for number, stage in enumerate(step_down.stages, start=1):
            needed += stage.after_consecutive
            if run >= needed:
                chosen = (number, stage.minutes, needed)
        if chosen is not None:
            number, minutes, needed = chosen
            return Interval(
                minutes=minutes,
                row_id=None,
                step_down_stage=number,
                reason=(
                    f"{run} consecutive totals below {step_down.below_total} "
                    f"(step-down stage {number} from {needed}): every {_duration(minutes)}"
                ),
                source=protocol.cite(step_down.source),
            )
    row = _row(inst, instrument_id, latest.total)
    if row.minutes is None:
        reason = f"total {latest.total} ({_range(row)}): no interval set by the program"
    else:
        reason = f"total {latest.total} ({_range(row)}): every {_duration(row.minutes)}"
    return Interval(
        minutes=row.minutes,
        row_id=row.id,
        step_down_stage=None,
        reason=reason,
        source=protocol.cite(row.source),
    )


def _range(row: Reassessment) -> str:
    """A reassessment row as the protocol's table reads it (never its internal id)."""
    low = row.min_total or 0
    if row.max_total is None:
        return f"scores {low} and above"
    return f"scores {low}-{row.max_total}"


def _duration(minutes: int) -> str:
    if minutes % 60 == 0:
        return f"{minutes // 60} h"
    return f"{minutes} min"


def _due(protocol: Protocol, latest: ScoredAssessment, minutes: int) -> datetime:
    # Elapsed time: add in UTC, then render in the program zone.
    return (_utc(latest.scored_at) + timedelta(minutes=minutes)).astimezone(protocol.zone)


def next_due(
    protocol: Protocol,
    instrument_id: str,
    history: Sequence[ScoredAssessment],
    now: datetime,
) -> datetime:
    """When the next assessment is due, in the program's time zone.

    Raises NoAssessment when there is none yet, IntervalNotSet when the protocol leaves the
    interval for this score to the program.
    """
    inst, series = _series(protocol, instrument_id, history, now)
    interval = _interval(protocol, instrument_id, inst, series)
    if interval.minutes is None:
        raise IntervalNotSet(
            f"protocol {protocol.id!r} v{protocol.version} sets no {instrument_id} "
            f"reassessment interval for total {series[-1].total}: the program must set one"
        )
    return _due(protocol, series[-1], interval.minutes)


# --------------------------------------------------------------------------- evaluation


def _local_text(value: datetime, protocol: Protocol) -> str:
    return value.astimezone(protocol.zone).strftime("%Y-%m-%d %H:%M %Z")


def escalation_key(instrument_id: str, rule_id: str, assessment_ref: str) -> str:
    """What an acknowledgement of rule `rule_id` fired by one assessment records."""
    return f"{instrument_id}:{rule_id}:{assessment_ref}"


def _escalation_key(instrument_id: str, rule_id: str, latest: ScoredAssessment) -> str:
    ref = latest.assessment_id or _utc(latest.scored_at).isoformat()
    return escalation_key(instrument_id, rule_id, ref)


def _escalations(
    protocol: Protocol,
    instrument_id: str,
    inst: InstrumentProtocol,
    series: Sequence[ScoredAssessment],
    band: Band | None,
    due_at: datetime | None,
    now: datetime,
    acknowledged: Collection[str],
) -> list[Escalation]:
    latest = series[-1]
    previous = series[-2] if len(series) > 1 else None
    fired: list[Escalation] = []
    for rule in inst.escalations:
        detail: str | None = None
        if isinstance(rule, BandRule):
            if band is not None and band.id in rule.bands:
                detail = f"total {latest.total} is in band {band.label}"
        elif isinstance(rule, TotalAtLeastRule):
            if rule.total is not None and latest.total >= rule.total:
                detail = f"total {latest.total} is at or above {rule.total}"
        elif isinstance(rule, RiseRule):
            if rule.points is not None and previous is not None:
                rise = latest.total - previous.total
                if rise >= rule.points:
                    detail = (
                        f"rose {rise} points from {previous.total} to {latest.total} "
                        f"(threshold {rule.points})"
                    )
        elif isinstance(rule, OverdueRule):
            if rule.minutes is not None and due_at is not None:
                late = _utc(now) - _utc(due_at)
                if late > timedelta(0) and late >= timedelta(minutes=rule.minutes):
                    detail = (
                        f"due {_local_text(due_at, protocol)}, overdue by "
                        f"{int(late.total_seconds() // 60)} min (threshold {rule.minutes} min)"
                    )
        if detail is None:
            continue
        key = _escalation_key(instrument_id, rule.id, latest)
        fired.append(
            Escalation(
                rule_id=rule.id,
                severity=rule.severity,
                message=rule.message,
                detail=detail,
                source=protocol.cite(rule.source),
                key=key,
                acknowledged=key in acknowledged,
            )
        )
    fired.sort(key=lambda e: -SEVERITY_RANK[e.severity])
    return fired


def _may_end(
    protocol: Protocol,
    inst: InstrumentProtocol,
    series: Sequence[ScoredAssessment],
    escalations: Sequence[Escalation],
) -> tuple[bool, str]:
    rule = inst.stop
    if rule is None:
        return False, "the protocol has no stop rule for this instrument"
    run = _trailing_below(series, rule.below_total)
    if not run:
        return False, f"latest total {series[-1].total} is not below {rule.below_total}"
    span = _utc(run[-1].scored_at) - _utc(run[0].scored_at)
    hours = span.total_seconds() / 3600
    missing: list[str] = []
    if rule.consecutive is not None and len(run) < rule.consecutive:
        missing.append(f"{len(run)} of {rule.consecutive} consecutive assessments")
    if rule.for_hours is not None and span < timedelta(hours=rule.for_hours):
        missing.append(f"{round(hours, 1):g} of {rule.for_hours:g} h")
    if missing:
        return False, f"below {rule.below_total} so far: " + ", ".join(missing)
    if any(not e.acknowledged for e in escalations):
        return False, "stop rule met, but there are unacknowledged escalations"
    return True, (
        f"every total below {rule.below_total} for {round(hours, 1):g} h over {len(run)} assessments "
        f"(since {_local_text(run[0].scored_at, protocol)})"
    )


def evaluate(
    protocol: Protocol,
    instrument_id: str,
    history: Sequence[ScoredAssessment],
    now: datetime,
    *,
    context: WithdrawalContext | None = None,
    acknowledged: Collection[str] = (),
) -> MonitoringState:
    """Read one patient's assessments of one instrument against the protocol at `now`.

    `acknowledged` holds the `Escalation.key`s a clinician has acknowledged. Raises
    NoAssessment when there is no assessment yet and BandMismatch when the latest band
    contradicts the protocol's band scheme.
    """
    inst, series = _series(protocol, instrument_id, history, now)
    latest = series[-1]
    band, warnings = _band(protocol, instrument_id, inst, latest)
    if latest.protocol_version is not None and latest.protocol_version != protocol.version:
        warnings.append(
            f"latest {instrument_id} assessment was scored under protocol version "
            f"{latest.protocol_version}; due times use version {protocol.version}"
        )

    interval = _interval(protocol, instrument_id, inst, series)
    due_at: datetime | None = None
    if interval.minutes is None:
        warnings.append(
            f"no {instrument_id} reassessment interval is set for total {latest.total}: "
            "the program must set one in its protocol"
        )
    else:
        due_at = _due(protocol, latest, interval.minutes)
    if interval.source is not None and interval.source.unverified and interval.minutes:
        warnings.append(f"reassessment interval rests on an unverified source: {interval.reason}")

    late = _utc(now) - _utc(due_at) if due_at is not None else timedelta(0)
    overdue = late > timedelta(0)
    overdue_by = late if overdue else timedelta(0)

    escalations = _escalations(
        protocol, instrument_id, inst, series, band, due_at, now, acknowledged
    )
    may_end, end_reason = _may_end(protocol, inst, series, escalations)

    row = inst.row_for(latest.total)
    suggestions = tuple(
        MedicationOption(
            drug=m.drug,
            dose_text=m.dose_text,
            route=m.route,
            repeat=m.repeat,
            note=m.note,
            source=protocol.cite(m.source),
        )
        for m in (row.medication if row is not None else ())
    )
    flags = tuple(context_flags(protocol, context, now=now)) if context is not None else ()

    return MonitoringState(
        instrument_id=instrument_id,
        protocol_id=protocol.id,
        protocol_version=protocol.version,
        protocol_hash=protocol.content_hash,
        now=now.astimezone(protocol.zone),
        latest=latest,
        previous=series[-2] if len(series) > 1 else None,
        band_id=band.id if band else None,
        band_label=band.label if band else None,
        band_level=band.level if band else None,
        band_rank=BAND_LEVEL_RANK[band.level] if band else -1,
        interval=interval,
        due_at=due_at,
        overdue=overdue,
        overdue_by=overdue_by,
        minutes_overdue=int(overdue_by.total_seconds() // 60),
        escalations=tuple(escalations),
        monitoring_may_end=may_end,
        end_reason=end_reason,
        medication_suggestions=suggestions,
        flags=flags,
        warnings=tuple(warnings),
    )


# --------------------------------------------------------------------------- context


def _matches(when: ContextMatch, context: WithdrawalContext) -> bool:
    for name, wanted in when.model_dump(exclude_none=True).items():
        if getattr(context, name) != wanted:
            return False
    return True


def context_flags(
    protocol: Protocol, context: WithdrawalContext, *, now: datetime | None = None
) -> list[Flag]:
    """Risk flags for this episode, most severe first.

    Time-window flags (e.g. days since the last drink) need `now` and `last_use_at`; without
    them they are skipped. A window the protocol leaves unset never fires.
    """
    flags: list[Flag] = []
    if context.substance == "alcohol" and (
        context.history_withdrawal_seizures is None or context.history_delirium_tremens is None
    ):
        flags.append(
            Flag(
                id="withdrawal_history_not_recorded",
                severity="warning",
                message="History of withdrawal seizures or delirium tremens not recorded.",
                source=None,
            )
        )
    for rule in protocol.risk_context.flags:
        if _matches(rule.when, context):
            flags.append(Flag(rule.id, rule.severity, rule.message, protocol.cite(rule.source)))
    if now is not None and context.last_use_at is not None:
        _require_aware(now, "now")
        elapsed = _utc(now) - _utc(context.last_use_at)
        if elapsed < timedelta(0):
            raise ValueError("last_use_at is after now")
        hours = elapsed.total_seconds() / 3600
        for window in protocol.risk_context.windows:
            if window.from_hours is None or window.to_hours is None:
                continue
            if _matches(window.when, context) and window.from_hours <= hours <= window.to_hours:
                flags.append(
                    Flag(
                        window.id,
                        window.severity,
                        f"{window.message} (last use {hours:.0f} h ago)",
                        protocol.cite(window.source),
                    )
                )
    flags.sort(key=lambda f: -SEVERITY_RANK[f.severity])
    return flags


# --------------------------------------------------------------------------- census


def census_sort_key(state: MonitoringState) -> tuple[int, int, float, int, float]:
    """Sort key for a census, most urgent first.

    Unacknowledged escalations (most severe first), then overdue (most overdue first), then
    highest band, then soonest due. A state with no due time (interval not set) sorts ahead
    of known due times in its group, so the gap is seen.
    """
    unacked = [SEVERITY_RANK[e.severity] for e in state.escalations if not e.acknowledged]
    return census_key(
        max(unacked) if unacked else None,
        state.overdue_by if state.overdue else None,
        state.band_rank,
        state.due_at,
    )


def census_key(
    escalation_rank: int | None,
    overdue_by: timedelta | None,
    band_rank: int,
    due_at: datetime | None,
) -> tuple[int, int, float, int, float]:
    """`census_sort_key` over plain values, for a census read from stored monitoring rows.

    `escalation_rank` is the SEVERITY_RANK of the most severe unacknowledged escalation (None
    when there is none); `overdue_by` is how late the reassessment is (None when not overdue).
    """
    escalation = -(escalation_rank + 1) if escalation_rank is not None else 0
    overdue = overdue_by is not None and overdue_by > timedelta(0)
    due = due_at.timestamp() if due_at is not None else float("-inf")
    return (
        escalation,
        0 if overdue else 1,
        -overdue_by.total_seconds() if overdue and overdue_by is not None else -0.0,
        -band_rank,
        due,
    )
