"""`tandem withdrawal protocol-set/-show`: a program's protocol versions from the command line."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from tandem.cli import app
from tandem.withdrawal.protocol import load_protocol


def test_a_program_sets_its_own_protocol_and_a_broken_one_is_refused(
    tmp_path: Path, monkeypatch
) -> None:
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
    shown = runner.invoke(app, ["withdrawal", "protocol-show", "alpha"])
    assert shown.exit_code == 0 and "(example)" in shown.output
    data = yaml.safe_load(
        Path(load_protocol.__code__.co_filename)
        .with_name("data")
        .joinpath("example_protocol.yaml")
        .read_text("utf-8")
    )
    data["version"] = "alpha-1"
    data["sources"]["program"] = {"citation": "Alpha program setting", "quality": "none"}
    for inst in data["instruments"].values():  # what the sources leave to the program
        for row in inst["reassessment"]:
            if row["minutes"] is None:
                row["minutes"], row["source"] = 120, {"ref": "program"}
        for rule in inst["escalations"]:
            if rule["kind"] == "overdue" and rule["minutes"] is None:
                rule["minutes"], rule["source"] = 30, {"ref": "program"}
    own = tmp_path / "alpha.yaml"
    own.write_text(yaml.safe_dump(data), "utf-8")
    done = runner.invoke(app, ["withdrawal", "protocol-set", "alpha", str(own)])
    assert done.exit_code == 0, done.output
    assert "alpha-1" in runner.invoke(app, ["withdrawal", "protocol-show", "alpha"]).output
    broken = tmp_path / "broken.yaml"
    broken.write_text("id: x\n", "utf-8")
    refused = runner.invoke(app, ["withdrawal", "protocol-set", "alpha", str(broken)])
    assert refused.exit_code == 2 and "time_zone" in refused.output
    unknown = runner.invoke(app, ["withdrawal", "protocol-show", "nope"])
    assert unknown.exit_code == 2
