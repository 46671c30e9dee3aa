"""Errors the medications core raises. All are `tandem.errors.InvalidInput`s (so `ValueError`s)
that name the offending field, so the app's one handler answers them like any other bad input.

Adapters (the CLI, routes) translate `field` into their own option or parameter name, so a
person sees which input to fix; they never need to parse the message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from tandem.errors import InvalidInput

if TYPE_CHECKING:
    from tandem.medications.monograph import Source

__all__ = [
    "DoseParseError",
    "ImplausibleValue",
    "MedicationInputError",
    "PlanRefused",
    "UnknownMedication",
    "UnknownSubstance",
]


class MedicationInputError(InvalidInput):
    """An input the medications core cannot accept. `field` names it; `message` says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(field, message)


class UnknownMedication(MedicationInputError):
    def __init__(self, medication_id: str, known: Sequence[str], field: str = "medication_id"):
        self.medication_id = medication_id
        super().__init__(
            field, f"unknown medication {medication_id!r}; known: {', '.join(sorted(known))}"
        )


class UnknownSubstance(MedicationInputError):
    """A current medication/substance class outside Tandem's vocabulary."""


class DoseParseError(MedicationInputError):
    """A dose, amount or duration written in a form Tandem does not read."""


class ImplausibleValue(MedicationInputError):
    """A number that cannot describe a real patient or a real plan (negative, zero, NaN...)."""


class PlanRefused(MedicationInputError):
    """A well-formed request Tandem will not turn into a plan, with the reason and its source.

    Examples: a target above the maximum; a baclofen course that stops without a taper.
    """

    def __init__(self, field: str, reason: str, sources: Sequence[Source] = ()) -> None:
        self.reason = reason
        self.sources = tuple(sources)
        super().__init__(field, reason)
