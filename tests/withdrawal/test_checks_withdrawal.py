"""The pure input checks of withdrawal monitoring, on plain values (no database, no clock): every
refusal names its field, and every recorded time follows the one policy of `tandem.clock` (aware,
not later than now plus CLOCK_SKEW, clamped to now, not before what it follows)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from tandem import clock
from tandem.errors import InvalidInput
from tandem.withdrawal import checks, prn
from tandem.withdrawal.checks import (
    ContextInput,
    check_assessed_at,
    check_context,
    check_instrument,
    stored_context,
)
from tandem.withdrawal.monitoring import MedicationOption
from tandem.withdrawal.prn import DoseInput, DoseRefused, check_prn_dose
from tandem.withdrawal.protocol import Citation, load_protocol

NOW = datetime(2024, 6, 3, 12, 0, tzinfo=UTC)
ADMITTED = NOW - timedelta(hours=20)
ASSESSED = NOW - timedelta(minutes=30)
SOURCE = Citation("Source table", None, "secondary", None, False, (), ())
OPTIONS = (
    MedicationOption("chlordiazepoxide", "50-75 mg", None, None, None, SOURCE),
    MedicationOption("lorazepam", "2-3 mg", "oral", None, None, SOURCE),
)
GOOD_CONTEXT = ContextInput(
    substance="opioid",
    last_use_at=NOW - timedelta(hours=8),
    opioid_half_life_class="short",
    history_withdrawal_seizures=False,
    note="  came in with family  ",
)
GOOD_DOSE = DoseInput(
    assessment_id=1,
    suggestion=0,
    dose="50",
    route="oral",
    administered_at=NOW - timedelta(minutes=5),
)


def refused_field(call, *args, **kwargs) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput) as info:
        call(*args, **kwargs)
    return info.value.field


# --------------------------------------------------------------------------- one time policy


def test_withdrawal_keeps_no_clock_tolerance_of_its_own() -> None:
    for module in (checks, prn):
        assert not hasattr(module, "CLOCK_SKEW")
    assert clock.CLOCK_SKEW == timedelta(minutes=2)


@pytest.mark.parametrize(
    ("ahead", "accepted"),
    [
        (timedelta(0), True),
        (timedelta(minutes=1), True),
        (clock.CLOCK_SKEW, True),
        (clock.CLOCK_SKEW + timedelta(seconds=1), False),
        (timedelta(minutes=3), False),
        (timedelta(hours=1), False),
    ],
)
def test_every_recorded_time_has_the_same_tolerance_and_is_clamped(
    ahead: timedelta, accepted: bool
) -> None:
    at = NOW + ahead
    checks_of_a_time = {
        "assessed_at": lambda: check_assessed_at(at, NOW, ADMITTED),
        "last_use_at": lambda: (
            check_context(replace(GOOD_CONTEXT, last_use_at=at), NOW).context.last_use_at
        ),
        "administered_at": lambda: (
            check_prn_dose(
                OPTIONS,
                replace(GOOD_DOSE, administered_at=at),
                assessed_at=ASSESSED,
                now=NOW,
                scored="ciwa_ar 12",
            ).administered_at
        ),
    }
    for field, check in checks_of_a_time.items():
        if accepted:
            assert check() == NOW, field  # a clock a little ahead is "now", not the future
        else:
            with pytest.raises(InvalidInput, match="cannot be in the future") as info:
                check()
            assert info.value.field == field


@pytest.mark.parametrize("field", ["assessed_at", "last_use_at", "administered_at"])
def test_a_time_without_its_zone_is_refused(field: str) -> None:
    naive = datetime(2024, 6, 3, 11, 0)  # noqa: DTZ001 - the mistake under test
    calls = {
        "assessed_at": lambda: check_assessed_at(naive, NOW, ADMITTED),
        "last_use_at": lambda: check_context(replace(GOOD_CONTEXT, last_use_at=naive), NOW),
        "administered_at": lambda: check_prn_dose(
            OPTIONS,
            replace(GOOD_DOSE, administered_at=naive),
            assessed_at=ASSESSED,
            now=NOW,
            scored="ciwa_ar 12",
        ),
    }
    with pytest.raises(InvalidInput, match="needs a time zone") as info:
        calls[field]()
    assert info.value.field == field


def test_a_time_in_another_zone_is_the_same_instant() -> None:
    in_new_york = (NOW - timedelta(hours=1)).astimezone(ZoneInfo("America/New_York"))
    assert check_assessed_at(in_new_york, NOW, ADMITTED) == NOW - timedelta(hours=1)


# --------------------------------------------------------------------------- assessments


def test_an_assessment_is_not_before_the_admission() -> None:
    assert check_assessed_at(ADMITTED, NOW, ADMITTED) == ADMITTED
    with pytest.raises(InvalidInput, match="before the patient was admitted") as info:
        check_assessed_at(ADMITTED - timedelta(minutes=1), NOW, ADMITTED)
    assert info.value.field == "assessed_at"


def test_only_the_protocols_instruments_are_scored() -> None:
    protocol = load_protocol()
    check_instrument(protocol, "ciwa_ar")
    with pytest.raises(InvalidInput, match="not a withdrawal instrument") as info:
        check_instrument(protocol, "phq9")
    assert info.value.field == "questionnaire"


# --------------------------------------------------------------------------- context


def test_a_good_context_is_read_as_the_monitoring_core_reads_it() -> None:
    checked = check_context(GOOD_CONTEXT, NOW)
    assert checked.context.substance == "opioid"
    assert checked.context.opioid_half_life_class == "short"
    assert checked.context.history_withdrawal_seizures is False
    assert checked.context.history_delirium_tremens is None  # not recorded stays unknown
    assert checked.note == "came in with family"
    assert check_context(replace(GOOD_CONTEXT, opioid_half_life_class=""), NOW).context == (
        replace(checked.context, opioid_half_life_class=None)
    )


@pytest.mark.parametrize(
    ("change", "field", "says"),
    [
        ({"substance": "heroin"}, "substance", "choose one of alcohol, opioid, other"),
        ({"substance": ""}, "substance", "choose one of"),
        ({"opioid_half_life_class": "medium"}, "opioid_half_life_class", "short or long"),
        (
            {"substance": "alcohol", "opioid_half_life_class": "long"},
            "opioid_half_life_class",
            "only for an opioid",
        ),
        ({"last_use_at": NOW + timedelta(minutes=3)}, "last_use_at", "in the future"),
        ({"note": "x" * 2001}, "note", "under 2000 characters"),
    ],
)
def test_every_context_refusal_names_its_field(
    change: dict[str, object], field: str, says: str
) -> None:
    with pytest.raises(InvalidInput, match=says) as info:
        check_context(replace(GOOD_CONTEXT, **change), NOW)  # type: ignore[arg-type]
    assert info.value.field == field


def test_a_note_of_exactly_the_limit_is_kept() -> None:
    assert len(check_context(replace(GOOD_CONTEXT, note="x" * 2000), NOW).note) == 2000


def test_a_stored_context_reads_back_without_a_time_check() -> None:
    long_ago = NOW - timedelta(days=400)
    context = stored_context("alcohol", long_ago, None, True, None, None, True)
    assert (context.substance, context.last_use_at, context.elderly) == ("alcohol", long_ago, True)
    assert refused_field(stored_context, "glue", None, None, None, None, None, None) == "substance"


# --------------------------------------------------------------------------- PRN doses


def test_a_dose_within_the_suggestion_is_accepted() -> None:
    checked = check_prn_dose(OPTIONS, GOOD_DOSE, assessed_at=ASSESSED, now=NOW, scored="x")
    assert (checked.option.drug, checked.value, checked.unit, checked.route) == (
        "chlordiazepoxide",
        Decimal("50"),
        "mg",
        "oral",
    )
    lorazepam = replace(GOOD_DOSE, suggestion=1, dose="2.5", route="")
    checked = check_prn_dose(OPTIONS, lorazepam, assessed_at=ASSESSED, now=NOW, scored="x")
    assert (checked.value, checked.route) == (Decimal("2.5"), "oral")  # the protocol's route


@pytest.mark.parametrize(
    ("options", "change", "field", "says"),
    [
        ((), {}, "suggestion", "suggests no medication for ciwa_ar 3"),
        (OPTIONS, {"suggestion": 2}, "suggestion", "choose one of the protocol's suggestions"),
        (OPTIONS, {"suggestion": -1}, "suggestion", "choose one of the protocol's suggestions"),
        (OPTIONS, {"dose": "100"}, "dose", "outside the protocol's 50-75 mg"),
        (OPTIONS, {"dose": "abc"}, "dose", "enter a number of mg"),
        (OPTIONS, {"dose": "0"}, "dose", "positive"),
        (OPTIONS, {"route": "nasal"}, "route", "choose one of oral"),
        (
            OPTIONS,
            {"administered_at": ASSESSED - timedelta(minutes=1)},
            "administered_at",
            "before the assessment that prompted it",
        ),
        (OPTIONS, {"administered_at": NOW + timedelta(minutes=3)}, "administered_at", "future"),
    ],
)
def test_every_dose_refusal_names_its_field(
    options: tuple[MedicationOption, ...], change: dict[str, object], field: str, says: str
) -> None:
    with pytest.raises(InvalidInput, match=says) as info:
        check_prn_dose(
            options,
            replace(GOOD_DOSE, **change),  # type: ignore[arg-type]
            assessed_at=ASSESSED,
            now=NOW,
            scored="ciwa_ar 3",
        )
    assert info.value.field == field


def test_a_dose_refusal_is_an_invalid_input() -> None:
    assert issubclass(DoseRefused, InvalidInput)
