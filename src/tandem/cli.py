"""The `tandem` command: one Typer app, with every domain's commands from the domain list."""

from __future__ import annotations

import typer

from tandem.domains import cli_commands


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="tandem",
        help="Tandem: medication-supported addiction treatment.",
        no_args_is_help=True,
        add_completion=False,
    )
    for name, command in cli_commands():
        if isinstance(command, typer.Typer):
            app.add_typer(command, name=name)
        else:
            app.command(name)(command)
    return app


app = build_app()
