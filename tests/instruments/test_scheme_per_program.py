"""Issue 9 item 6: one CIWA-Ar band scheme per program. `tandem score` bands by the program's
protocol's scheme (the shipped example protocol's when no program is named), says which it
used, and agrees with what the pages and FHIR store for the same answers."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select
from typer.testing import CliRunner

from tandem.cli import app
from tandem.storage.db import session_scope
from tandem.withdrawal import assessments
from tandem.withdrawal.protocol import load_protocol
from tandem.withdrawal.storage import AssessmentRow
from tests.conftest import World
from tests.instruments.facts import answers
from tests.instruments.test_instruments_cli import run
from tests.withdrawal.helpers import access_for, admit_to_detox, ciwa_answers

CIWA_17 = [f"{k}={v}" for k, v in ciwa_answers(17).items()]


def test_score_uses_the_protocols_scheme_and_says_so() -> None:
    code, out, err = run("ciwa_ar", *CIWA_17)
    assert code == 0, err
    assert "Band scheme pmc6286444: from the shipped example protocol" in " ".join(out.split())
    body = json.loads(run("ciwa_ar", *CIWA_17, "--json")[1])
    # 16-18 is "severe" under the protocol's scheme (ASAM 2020 would call it moderate).
    assert (body["scheme"], body["band"]) == ("pmc6286444", "severe")
    assert body["scheme_from"].startswith("from the shipped example protocol")
    assert load_protocol().scheme_for("ciwa_ar") == body["scheme"]


def test_another_scheme_only_when_asked() -> None:
    body = json.loads(run("ciwa_ar", *CIWA_17, "--json", "--scheme", "asam_2020")[1])
    assert (body["scheme"], body["band"], body["scheme_from"]) == (
        "asam_2020",
        "moderate",
        "given with --scheme",
    )


def test_an_instrument_no_protocol_covers_keeps_its_default() -> None:
    phq9 = [f"{k}={v}" for k, v in answers("phq9", [0] * 9).items()]
    code, out, err = run("phq9", *phq9, "--json")
    assert code == 0, err
    body = json.loads(out)
    assert body["scheme"] == "kroenke_2001" and "instrument's default" in body["scheme_from"]


def test_score_for_a_named_program(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TANDEM_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    runner = CliRunner()
    init = runner.invoke(
        app,
        [
            "init",
            "--admin-email",
            "a@b.test",
            "--admin-name",
            "A",
            "--admin-password",
            "a-long-password-1234",
            "--program-code",
            "alpha",
            "--program-name",
            "Alpha",
            "--time-zone",
            "America/New_York",
        ],
    )
    assert init.exit_code == 0, init.output
    scored = runner.invoke(app, ["score", "ciwa_ar", *CIWA_17, "--program", "alpha"])
    assert scored.exit_code == 0, scored.output
    assert "Band scheme pmc6286444: from program alpha's protocol" in " ".join(
        scored.output.split()
    )
    unknown = runner.invoke(app, ["score", "ciwa_ar", *CIWA_17, "--program", "nope"])
    assert unknown.exit_code == 2 and "no program with code 'nope'" in unknown.output


def test_the_cli_and_a_stored_assessment_band_alike(sessions, world: World) -> None:
    admit_to_detox(sessions, world, world.patient_a)
    with session_scope(sessions) as db:
        access = access_for(sessions, db, world)
        assessments.save_assessment(access, world.patient_a, "ciwa_ar", ciwa_answers(17))
    with sessions() as db:
        row = db.scalars(select(AssessmentRow)).one()
    body = json.loads(run("ciwa_ar", *CIWA_17, "--json")[1])
    assert row.band_scheme_id == body["scheme"]
