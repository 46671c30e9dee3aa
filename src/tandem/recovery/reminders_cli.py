"""`tandem portal`: the patient portal's program settings, as an operator sets them."""

from __future__ import annotations

from typing import Annotated, NoReturn

import typer

__all__ = ["portal_app"]

portal_app = typer.Typer(
    name="portal",
    help="The patient portal: reminder times of a program.",
    no_args_is_help=True,
    add_completion=False,
)


def _fail(option: str, message: str) -> NoReturn:
    typer.echo(f"Error: {option}: {message}", err=True)
    raise typer.Exit(code=2)


@portal_app.command("reminder-times")
def reminder_times(
    program: Annotated[str, typer.Argument(help="program code")],
    check_in: Annotated[
        str | None,
        typer.Option("--check-in", help="remind a patient with no check-in after this (HH:MM)"),
    ] = None,
    session_hours: Annotated[
        int | None,
        typer.Option("--session-hours", help="remind of a session this many hours before it"),
    ] = None,
) -> None:
    """Show a program's reminder times, or set them (on the program's clock)."""
    from sqlalchemy import select

    from tandem.access import audit
    from tandem.platform_cli import CLI_ORIGIN
    from tandem.recovery.reminders_core import parse_clock
    from tandem.recovery.reminders_service import program_times, set_program_times
    from tandem.settings import Settings
    from tandem.storage.db import make_engine, make_sessionmaker, session_scope
    from tandem.storage.migrate import upgrade
    from tandem.storage.models import Program

    try:
        settings = Settings()
    except Exception as exc:  # pydantic's ValidationError, told plainly
        _fail("TANDEM_DATABASE_URL", str(exc).splitlines()[0])
    engine = make_engine(settings.database_url)
    upgrade(engine)
    try:
        with session_scope(make_sessionmaker(engine)) as db:
            row = db.scalar(select(Program).where(Program.code == program.strip()))
            if row is None:
                _fail("PROGRAM", f"no program {program!r}")
            current_at, current_hours = program_times(db, row.id)
            if check_in is not None or session_hours is not None:
                at = check_in if check_in is not None else current_at
                try:
                    clock = parse_clock(at.strip())
                except ValueError:
                    _fail("--check-in", f"a time of day as HH:MM (such as 18:00), got {at!r}")
                hours = session_hours if session_hours is not None else current_hours
                if not 1 <= hours <= 24 * 7:
                    _fail("--session-hours", f"from 1 to 168 hours, got {hours}")
                set_program_times(db, row.id, f"{clock:%H:%M}", hours)
                db.add(
                    audit.entry(
                        None,
                        "update",
                        CLI_ORIGIN,
                        resource_type="Program",
                        resource_id=str(row.id),
                        detail=f"portal reminders: check-in {clock:%H:%M}, sessions {hours} h",
                    )
                )
                current_at, current_hours = f"{clock:%H:%M}", hours
            line = (
                f"{row.code}: check-in reminder after {current_at} ({row.time_zone}); "
                f"session reminder {current_hours} h before"
            )
    finally:
        engine.dispose()
    typer.echo(line)
