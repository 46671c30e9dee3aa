"""`tandem withdrawal`: a program's withdrawal-monitoring protocol, versioned.

    tandem withdrawal protocol-show PROGRAM            the current version, its hash, what to check
    tandem withdrawal protocol-set PROGRAM FILE.yaml   validate and make FILE the current version

Every version is kept; each assessment records the version it was scored under. A protocol
that does not validate, or that leaves a monitored patient with no due time (a reassessment row
with no interval) or a late reassessment with no escalation (no overdue threshold), is refused
with the field path of each problem and exit status 2.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tandem.access import audit
from tandem.storage.models import Program
from tandem.withdrawal.protocol import ProtocolError, load_protocol, monitoring_gaps
from tandem.withdrawal.protocols import program_protocol, set_program_protocol
from tandem.withdrawal.storage import ProtocolVersionRow

withdrawal_app = typer.Typer(
    name="withdrawal",
    help="Withdrawal-monitoring protocols per program.",
    no_args_is_help=True,
    add_completion=False,
)
out = Console()
err = Console(stderr=True)


def _program(db: Session, code: str) -> Program:
    program = db.scalar(select(Program).where(Program.code == code.strip().lower()))
    if program is None:
        err.print(f"[bold red]error:[/] PROGRAM: no program with code {code!r}")
        raise typer.Exit(2)
    return program


def _sessions() -> sessionmaker[Session]:
    """Sessions on the configured database, migrated to the current schema first."""
    from tandem.platform_cli import _settings
    from tandem.storage.db import make_engine, make_sessionmaker
    from tandem.storage.migrate import upgrade

    engine = make_engine(_settings().database_url)
    upgrade(engine)
    return make_sessionmaker(engine)


@withdrawal_app.command("protocol-show")
def protocol_show(program: str = typer.Argument(..., help="program code")) -> None:
    """The program's current protocol version and every earlier one."""
    from tandem.storage.db import session_scope

    with session_scope(_sessions()) as db:
        row = _program(db, program)
        current = program_protocol(db, row.id)
        protocol = current.protocol
        out.print(
            f"{row.code}: {protocol.id} version {protocol.version} ({current.origin}), "
            f"sha256 {protocol.content_hash}"
        )
        for gap in monitoring_gaps(protocol):
            out.print(f"  not set: {gap.path}: {escape(gap.message)}")
        for item in protocol.unverified_items():
            out.print(f"  check: {item.path}: {escape(item.note)}")
        for version in db.scalars(
            select(ProtocolVersionRow)
            .where(ProtocolVersionRow.program_id == row.id)
            .order_by(ProtocolVersionRow.id)
        ):
            mark = "*" if version.is_current else " "
            out.print(
                f"  {mark} {version.version} {version.origin} {version.content_hash[:12]} "
                f"{version.created_at:%Y-%m-%d %H:%M} UTC"
            )


@withdrawal_app.command("protocol-set")
def protocol_set(
    program: str = typer.Argument(..., help="program code"),
    path: Path = typer.Argument(..., help="the protocol YAML file", exists=True, dir_okay=False),
) -> None:
    """Validate FILE and make it the program's current protocol version."""
    from tandem.platform_cli import CLI_ORIGIN
    from tandem.storage.db import session_scope

    try:
        protocol = load_protocol(path)
    except ProtocolError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
    gaps = monitoring_gaps(protocol)
    if gaps:
        lines = "\n".join(f"  {g.path}: {g.message}" for g in gaps)
        err.print(
            f"[bold red]error:[/] {escape(str(path))} leaves monitored patients with no due time "
            f"or no overdue escalation; set these before monitoring can start:\n{escape(lines)}"
        )
        raise typer.Exit(2)
    with session_scope(_sessions()) as db:
        row = _program(db, program)
        stored = set_program_protocol(db, row.id, protocol, origin="program")
        db.add(
            audit.entry(
                None,
                "update",
                CLI_ORIGIN,
                resource_type="PlanDefinition",
                resource_id=f"withdrawal-protocol-{stored.version_id}",
                actor_label="tandem withdrawal",
                detail=f"program {row.code}: protocol {protocol.id} v{protocol.version} "
                f"sha256 {protocol.content_hash}",
            )
        )
    out.print(
        f"{row.code}: protocol {protocol.id} version {protocol.version} is current "
        f"(sha256 {protocol.content_hash}); {len(protocol.unverified_items())} entries to check."
    )
