"""`tandem caseload`: a program's caseload risk-flag rules, versioned.

    tandem caseload flags-show PROGRAM            the current rules, their hash, what to confirm
    tandem caseload flags-set PROGRAM FILE.yaml   validate FILE and make it the current version

Every version is kept. A program without its own reads Tandem's example
(src/tandem/recovery/data/risk_flags.yaml), whose thresholds are marked unverified.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tandem.access import audit
from tandem.recovery.caseload import program_rules, set_program_rules
from tandem.recovery.caseload_rules import RiskFlagsError, load_rules
from tandem.storage.db import session_scope
from tandem.storage.models import Program

caseload_app = typer.Typer(help="The caseload's risk-flag rules per program.", no_args_is_help=True)
err = Console(stderr=True)
ORIGIN = audit.Origin(channel="cli", user_agent="tandem caseload")


def _sessions() -> sessionmaker[Session]:
    from tandem.platform_cli import _settings
    from tandem.storage.db import make_engine, make_sessionmaker
    from tandem.storage.migrate import upgrade

    engine = make_engine(_settings().database_url)
    upgrade(engine)
    return make_sessionmaker(engine)


def _program(db: Session, code: str) -> Program:
    row = db.scalar(select(Program).where(Program.code == code))
    if row is None:
        err.print(f"No program with code {code!r}.")
        raise typer.Exit(2)
    return row


@caseload_app.command("flags-show")
def flags_show(program: str = typer.Argument(..., help="program code")) -> None:
    """The program's current risk-flag rules."""
    with session_scope(_sessions()) as db:
        row = _program(db, program)
        current = program_rules(db, row.id)
        rules = current.rules
        print(
            f"{row.code}: {rules.id} version {rules.version} ({current.origin}), sha256 {rules.content_hash}"
        )
        for f in rules.flags:
            window = f" within {f.window_days} days" if f.window_days else ""
            state = "" if f.enabled else " [off]"
            print(
                f"  {f.kind}: severity {f.severity}, at least {f.at_least:g} {f.unit}{window}{state}"
            )
        for f in rules.unverified():
            print(f"  to confirm: {f.kind}: {f.source.note}")


@caseload_app.command("flags-set")
def flags_set(
    program: str = typer.Argument(..., help="program code"),
    path: Path = typer.Argument(..., help="the rules YAML file", exists=True, dir_okay=False),
) -> None:
    """Validate FILE and make it the program's current risk-flag rules."""
    try:
        rules = load_rules(path)
    except RiskFlagsError as exc:
        err.print(f"Not stored: {exc}")
        raise typer.Exit(1) from None
    with session_scope(_sessions()) as db:
        row = _program(db, program)
        stored = set_program_rules(db, row.id, rules)
        db.add(
            audit.entry(
                None,
                "update",
                ORIGIN,
                resource_type="PlanDefinition",
                resource_id=f"risk-flags-{stored.version_id}",
                actor_label="tandem caseload",
                detail=f"program {row.code}: risk flags {rules.id} v{rules.version} sha256 {rules.content_hash}",
            )
        )
        print(
            f"{row.code}: risk flags {rules.id} version {rules.version} are current "
            f"(sha256 {rules.content_hash}); {len(rules.unverified())} thresholds to confirm."
        )
