"""Our FHIR output is validated whenever checking is on (always, in the tests)."""

from __future__ import annotations

import os

import pytest
from fhir.resources.R4B.patient import Patient
from pydantic import ValidationError

from tandem.fhir import output
from tandem.settings import Settings


def test_the_suite_checks_every_resource_the_app_sends() -> None:
    assert os.environ["TANDEM_VALIDATE_FHIR_OUTPUT"] == "true"
    assert Settings().validate_fhir_output is True


def test_checking_refuses_an_invalid_resource_and_off_passes_it_through() -> None:
    bad = {"resourceType": "Patient", "id": "p1", "birthDate": "31/12/1990"}
    try:
        output.check_output(True)
        with pytest.raises(ValidationError):
            output.checked(Patient, bad)
        output.check_output(False)
        assert output.checked(Patient, bad) is bad
    finally:
        output.check_output(True)
