"""Our own FHIR output, checked against fhir.resources (R4B) when checking is on.

The mappers build plain dicts with care; validating each one again costs 0.5-2 ms a resource
(half the CPU of a search page). The test suite turns checking on for every request it makes
(`Settings.validate_fhir_output`), so every mapper's output is proven valid there; a server
turns it on with TANDEM_VALIDATE_FHIR_OUTPUT=true.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

_checking = {"on": True}


def check_output(on: bool) -> None:
    """Set once when the app is made (from the settings)."""
    _checking["on"] = on


def checked(model: type[BaseModel], resource: dict[str, Any]) -> dict[str, Any]:
    """`resource` itself, after validating it as `model` when checking is on."""
    if _checking["on"]:
        model.model_validate(resource)
    return resource
