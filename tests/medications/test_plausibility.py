"""Issue 9 item 4: implausible measurements are refused with the field and its range (a
plausibility bound, not a clinical threshold), units are explicit and converted, and no
duration crashes with a traceback: the pure core, the CLI and the page alike."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from tandem.medications.dose_plan import titration
from tandem.medications.errors import ImplausibleValue
from tandem.medications.plausibility import (
    check_measurement,
    creatinine_to_mg_dl,
    plausible_ranges,
    weight_to_kg,
)
from tandem.medications.storage import MedicationFactsRow
from tests.conftest import World, sign_in
from tests.medications.test_cli import run
from tests.medications.test_pages_medications import facts_form
from tests.medications.test_taper_guards import D0


def test_every_range_is_labelled_a_plausibility_bound() -> None:
    ranges = plausible_ranges()
    assert {"weight_kg", "creatinine_mg_dl", "age"} <= set(ranges)
    with pytest.raises(ImplausibleValue, match="not a clinical threshold"):
        check_measurement("weight_kg", 5000)


@pytest.mark.parametrize(
    ("value", "unit", "mg_dl"),
    [
        (1.0, "mg_dl", 1.0),
        (0.2, "mg_dl", 0.2),
        (25, "mg_dl", 25.0),
        (88.4, "umol_l", 1.0),  # fact sheet F1: µmol/L ÷ 88.4
        (265.2, "umol_l", 3.0),
        (0.01, "mg_dl", None),  # the 773,500 mL/min
        (0.19, "mg_dl", None),
        (25.1, "mg_dl", None),
        (88, "mg_dl", None),  # µmol/L typed into mg/dL
        (1.0, "umol_l", None),  # mg/dL typed into µmol/L
        (1.0, "mmol_l", None),
    ],
)
def test_creatinine_is_converted_and_bounded_in_the_unit_typed(
    value: float, unit: str, mg_dl: float | None
) -> None:
    if mg_dl is None:
        with pytest.raises(ImplausibleValue) as refused:
            creatinine_to_mg_dl("creatinine", value, unit)
        assert refused.value.field == "creatinine"
    else:
        assert creatinine_to_mg_dl("creatinine", value, unit) == pytest.approx(mg_dl)


@pytest.mark.parametrize(
    ("value", "unit", "kg"),
    [
        (60, "kg", 60.0),
        (132.277, "lb", 60.0),
        (5000, "kg", None),
        (19, "kg", None),
        (900, "lb", None),
    ],
)
def test_weight_is_converted_and_bounded(value: float, unit: str, kg: float | None) -> None:
    if kg is None:
        with pytest.raises(ImplausibleValue, match="20-400 kg"):
            weight_to_kg("weight_kg", value, unit)
    else:
        assert weight_to_kg("weight_kg", value, unit) == pytest.approx(kg, abs=0.01)


def test_a_huge_interval_is_refused_not_a_crash() -> None:
    with pytest.raises(ImplausibleValue) as refused:
        titration("baclofen", "5mg-tid", 5, 1_000_000, "20mg-tid", D0)
    assert refused.value.field == "every_days"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (
            ["plan", "baclofen", "--target", "20mg-tid", "--every", "1000000d"],
            "--every: must be at most 366 days",
        ),
        (
            ["taper", "baclofen", "--from", "20mg-tid", "--over", "1000000d"],
            "--over: must be at most 366 days",
        ),
        (
            [
                "check",
                "baclofen",
                "--age",
                "70",
                "--sex",
                "male",
                "--weight-kg",
                "60",
                "--creatinine-mg-dl",
                "0.01",
            ],
            "--creatinine-mg-dl: 0.01 mg/dL is outside the plausible range for serum creatinine, 0.2-25 mg/dL",
        ),
        (
            ["check", "baclofen", "--weight-kg", "5000"],
            "--weight-kg: 5000 kg is outside the plausible range for weight, 20-400 kg",
        ),
        (["check", "baclofen", "--age", "700"], "--age: 700 years is outside the plausible range"),
        (
            ["check", "baclofen", "--weight-kg", "60", "--weight-lb", "132"],
            "--weight-lb: give the weight once",
        ),
    ],
)
def test_the_cli_names_the_field_and_its_range(args: list[str], words: str) -> None:
    code, out, err = run(*args)
    assert code == 2 and words in err
    assert "Traceback" not in out + err


def test_the_cli_takes_pounds_and_micromoles() -> None:
    code, out, err = run(
        "check",
        "baclofen",
        "--age",
        "70",
        "--sex",
        "male",
        "--weight-lb",
        "132.277",
        "--creatinine-umol-l",
        "265.2",
    )
    assert code == 0, err
    assert "19.4 mL/min" in out  # fact sheet F1 worked value: 70 y, 60 kg, 3.0 mg/dL


@pytest.mark.usefixtures("frozen_clock")
def test_the_facts_page_refuses_implausible_values_and_converts_units(
    client, sessions, world: World
) -> None:
    csrf = sign_in(client, world.email("prescriber"), world.passwords["prescriber"])
    url = f"/patients/{world.patient_a2}/medications/facts"
    tiny = client.post(url, data=facts_form(csrf, creatinine="0.01"))
    assert tiny.status_code == 422 and "0.2-25 mg/dL" in tiny.text
    assert re.search(r'id="creatinine"[^>]*aria-invalid="true"', tiny.text)
    heavy = client.post(url, data=facts_form(csrf, weight_kg="5000"))
    assert heavy.status_code == 422 and "20-400 kg" in heavy.text
    assert re.search(r'id="weight_kg"[^>]*aria-invalid="true"', heavy.text)
    with sessions() as db:
        assert db.scalars(select(MedicationFactsRow)).all() == []
    ok = client.post(
        url,
        data=facts_form(
            csrf,
            weight_kg="132.277",
            weight_unit="lb",
            creatinine="265.2",
            creatinine_unit="umol_l",
        ),
    )
    assert ok.status_code == 303, ok.text
    with sessions() as db:
        row = db.scalars(select(MedicationFactsRow)).one()
        assert (row.weight_kg, row.creatinine_mg_dl) == (60.0, 3.0)


@pytest.mark.usefixtures("frozen_clock")
def test_the_titration_page_refuses_a_huge_interval(client, world: World) -> None:
    from tests.medications.test_pages_medications import _titration

    csrf = sign_in(client, world.email("prescriber"), world.passwords["prescriber"])
    page = client.post(
        f"/patients/{world.patient_a}/medications/plans",
        data=_titration(csrf, every_days="1000000"),
    )
    assert page.status_code == 422, page.text
    assert "at most 366 days" in page.text, re.findall(
        r"role=\"alert\"[^<]*|field-error[^<]*", page.text
    )
