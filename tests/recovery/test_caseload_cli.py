"""`tandem caseload flags-show/-set`: a program's risk-flag rules from the command line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tandem.cli import app
from tandem.recovery.caseload_rules import DATA


def test_a_program_sets_its_own_flags_and_a_broken_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TANDEM_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    runner = CliRunner()
    init = runner.invoke(
        app,
        [
            "init",
            "--admin-email", "a@b.test",
            "--admin-name", "A",
            "--admin-password", "a-long-password-1234",
            "--program-code", "alpha",
            "--program-name", "Alpha",
            "--time-zone", "America/New_York",
        ],
    )  # fmt: skip
    assert init.exit_code == 0, init.output
    shown = runner.invoke(app, ["caseload", "flags-show", "alpha"])
    assert shown.exit_code == 0, shown.output
    assert "(example)" in shown.output and "to confirm: no_check_in" in shown.output

    document = yaml.safe_load(DATA.read_text())
    document["id"], document["version"] = "alpha-flags", "7"
    for rule in document["flags"]:
        if rule["kind"] == "no_check_in":
            rule["at_least"] = 5
            rule["source"] = {"citation": "Alpha program decision, 2026 clinical meeting"}
    mine = tmp_path / "alpha.yaml"
    mine.write_text(yaml.safe_dump(document))
    stored = runner.invoke(app, ["caseload", "flags-set", "alpha", str(mine)])
    assert stored.exit_code == 0, stored.output
    assert "alpha-flags version 7 are current" in stored.output
    shown = runner.invoke(app, ["caseload", "flags-show", "alpha"])
    assert "alpha-flags version 7 (program)" in shown.output
    assert "no_check_in: severity 1, at least 5" in shown.output
    assert "to confirm: no_check_in" not in shown.output

    document["flags"][0]["severity"] = 9
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(document))
    refused = runner.invoke(app, ["caseload", "flags-set", "alpha", str(broken)])
    assert refused.exit_code == 1 and "severity" in refused.output
    assert "version 7 (program)" in runner.invoke(app, ["caseload", "flags-show", "alpha"]).output
