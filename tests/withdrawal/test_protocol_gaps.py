"""Issue 9 item 7: no monitored patient is left without a due time. COWS falls due under the
example protocol (a cited guideline, marked for the program to confirm); where no source gives a
number (SOWS-Gossop intervals, overdue thresholds) the program must set one: the protocol check
names the row, `protocol-set` refuses the protocol, and monitoring on that scale cannot start."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from tandem.cli import app
from tandem.errors import InvalidInput
from tandem.instruments.engine import get_instrument
from tandem.storage.db import session_scope
from tandem.withdrawal import assessments, protocols
from tandem.withdrawal.monitoring import ScoredAssessment, evaluate, next_due
from tandem.withdrawal.protocol import load_protocol, monitoring_gaps, protocol_from_mapping
from tests.conftest import World
from tests.withdrawal.helpers import access_for, admit_to_detox, cows_answers

EXAMPLE = load_protocol()
T0 = datetime(2026, 3, 4, 14, 0, tzinfo=UTC)


def example_data() -> dict[str, Any]:
    text = (
        resources.files("tandem.withdrawal")
        .joinpath("data", "example_protocol.yaml")
        .read_text("utf-8")
    )
    data: dict[str, Any] = yaml.safe_load(text)
    return data


def filled(data: dict[str, Any]) -> dict[str, Any]:
    """The program's own choices for what the sources leave empty (test values)."""
    data["sources"]["program"] = {"citation": "Alpha program setting", "quality": "none"}
    for inst in data["instruments"].values():
        for row in inst["reassessment"]:
            if row["minutes"] is None:
                row["minutes"], row["source"] = 120, {"ref": "program"}
        for rule in inst["escalations"]:
            if rule["kind"] == "overdue" and rule["minutes"] is None:
                rule["minutes"], rule["source"] = 30, {"ref": "program"}
    return data


def test_cows_falls_due_under_the_example_protocol() -> None:
    history = [ScoredAssessment("cows", 14, "moderate", T0)]
    assert next_due(EXAMPLE, "cows", history, T0) == T0 + timedelta(hours=4)
    state = evaluate(EXAMPLE, "cows", history, T0 + timedelta(hours=5))
    assert state.overdue and state.minutes_overdue == 60
    assert state.interval.source.unverified  # a guideline's 4 h, read by this protocol
    assert "Lothian" in state.interval.source.citation


def test_the_check_names_every_row_the_program_must_set() -> None:
    gaps = {g.path: g.message for g in monitoring_gaps(EXAMPLE)}
    assert set(gaps) == {
        "instruments.sows_gossop.reassessment.0",
        "instruments.ciwa_ar.escalations.3",
        "instruments.cows.escalations.2",
        "instruments.sows_gossop.escalations.1",
    }
    assert "row sows_interval_unset (totals 0-30)" in gaps["instruments.sows_gossop.reassessment.0"]
    assert "never fall due" in gaps["instruments.sows_gossop.reassessment.0"]
    assert "rule cows_overdue" in gaps["instruments.cows.escalations.2"]
    assert monitoring_gaps(protocol_from_mapping(filled(example_data()))) == []


def test_no_interval_for_any_score_of_a_scale_the_protocol_monitors() -> None:
    for key in EXAMPLE.instruments:
        lo, hi = (0, 30) if key == "sows_gossop" else (0, 48) if key == "cows" else (0, 67)
        gapless = key not in {g.path.split(".")[1] for g in monitoring_gaps(EXAMPLE, overdue=False)}
        for total in range(lo, hi + 1):
            row = EXAMPLE.instrument(key).row_for(total)
            assert row is not None
            assert (row.minutes is not None) is gapless, (key, total)


def test_monitoring_cannot_start_on_a_scale_with_no_due_time(sessions, world: World) -> None:
    admit_to_detox(sessions, world, world.patient_a)
    sows = {item.id: 1 for item in get_instrument("sows_gossop").items}
    with session_scope(sessions) as db:
        access = access_for(sessions, db, world)
        with pytest.raises(InvalidInput) as refused:
            assessments.save_assessment(access, world.patient_a, "sows_gossop", sows)
    assert refused.value.field == "questionnaire"
    assert "SOWS-Gossop monitoring cannot start" in refused.value.message
    assert "sows_interval_unset" in refused.value.message
    with session_scope(sessions) as db:
        protocols.set_program_protocol(
            db, world.program_a, protocol_from_mapping(filled(example_data()))
        )
    with session_scope(sessions) as db:
        access = access_for(sessions, db, world)
        saved = assessments.save_assessment(access, world.patient_a, "sows_gossop", sows)
        assert saved.state.due_at is not None and saved.state.interval.minutes == 120
        cows = assessments.save_assessment(access, world.patient_a, "cows", cows_answers())
        assert cows.state.interval.minutes == 240


def test_protocol_set_refuses_a_protocol_with_gaps_and_names_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TANDEM_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    runner = CliRunner()
    init = runner.invoke(
        app,
        [
            "init",
            *("--admin-email", "a@b.test", "--admin-name", "A"),
            *("--admin-password", "a-long-password-1234", "--program-code", "alpha"),
            *("--program-name", "Alpha", "--time-zone", "America/New_York"),
        ],
    )
    assert init.exit_code == 0, init.output
    shown = runner.invoke(app, ["withdrawal", "protocol-show", "alpha"])
    assert "not set: instruments.sows_gossop.reassessment.0" in shown.output
    gappy = tmp_path / "gappy.yaml"
    gappy.write_text(yaml.safe_dump(example_data()), "utf-8")
    refused = runner.invoke(app, ["withdrawal", "protocol-set", "alpha", str(gappy)])
    assert refused.exit_code == 2
    assert "no due time" in refused.output
    assert "sows_interval_unset" in refused.output and "rule ciwa_overdue" in refused.output
    own = tmp_path / "own.yaml"
    own.write_text(yaml.safe_dump(filled(example_data())), "utf-8")
    done = runner.invoke(app, ["withdrawal", "protocol-set", "alpha", str(own)])
    assert done.exit_code == 0, done.output
    assert "not set" not in runner.invoke(app, ["withdrawal", "protocol-show", "alpha"]).output
