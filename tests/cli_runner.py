"""The `tandem` command run in the test's own process: the same Typer app the installed script
runs, with its own environment and working directory, without a new interpreter's imports (a few
seconds a command on this machine). `tests/test_cli.py::test_the_installed_script_runs` covers
the script itself."""

from __future__ import annotations

import os
import subprocess
import sys
import traceback
from pathlib import Path

from rich.console import Console

TANDEM = str(Path(sys.executable).with_name("tandem"))


def run_tandem(
    database_url: str,
    *args: str,
    cwd: Path | None = None,
    columns: int = 200,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    from typer.testing import CliRunner

    from tandem.cli import app

    env = {**(env or {}), "TANDEM_DATABASE_URL": database_url, "COLUMNS": str(columns)}
    # The commands' consoles were made when their modules were imported: as wide as a terminal
    # with COLUMNS would make them, for this command.
    consoles = [
        value
        for name, module in list(sys.modules.items())
        if name.startswith("tandem.")
        for value in vars(module).values()
        if isinstance(value, Console)
    ]
    widths = [c.width for c in consoles]
    here = os.getcwd()
    try:
        for console in consoles:
            console.width = columns
        if cwd is not None:
            os.chdir(cwd)
        result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=True)
    finally:
        os.chdir(here)
        for console, width in zip(consoles, widths, strict=True):
            console.width = width
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    return subprocess.CompletedProcess([TANDEM, *args], result.exit_code, result.stdout, stderr)


def run_init(
    database_url: str, admin: tuple[str, str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    """`tandem init` with its first administrator (e-mail, name, password) and any options."""
    email, name, password = admin
    return run_tandem(
        database_url,
        "init",
        "--admin-email",
        email,
        "--admin-name",
        name,
        "--admin-password",
        password,
        *args,
        columns=300,
    )
