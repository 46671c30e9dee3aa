"""The `tandem` command: one Typer app; each domain adds its own commands below."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="tandem",
    help="Tandem: medication-supported addiction treatment.",
    no_args_is_help=True,
    add_completion=False,
)

# Domain command groups register here (each lives beside its domain).
