"""The `tandem` command: one Typer app; each domain adds its own commands below."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="tandem",
    help="Tandem: medication-supported addiction treatment.",
    no_args_is_help=True,
    add_completion=False,
)

from tandem.platform_cli import register as _register_platform  # noqa: E402

_register_platform(app)

# Domain command groups register here (each lives beside its domain).

from tandem.instruments.cli import score_command  # noqa: E402

app.command("score")(score_command)

from tandem.medications.cli import med_app  # noqa: E402

app.add_typer(med_app, name="med")

from tandem.withdrawal.cli import withdrawal_app  # noqa: E402

app.add_typer(withdrawal_app, name="withdrawal")
