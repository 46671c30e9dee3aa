"""`tandem score`: score an instrument from ITEM=VALUE answers, or list the instruments."""

from __future__ import annotations

import json
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy import select

from tandem.instruments.engine import (
    AnswerError,
    InvalidAnswers,
    Score,
    UnknownInstrument,
    UnknownScheme,
    get_instrument,
    load_instruments,
    parse_value,
    score,
)
from tandem.instruments.models import Instrument
from tandem.storage.models import Program
from tandem.withdrawal.protocol import Protocol, load_protocol
from tandem.withdrawal.protocols import program_protocol

USAGE_ERROR = 2


def score_command(
    instrument: Annotated[
        str | None,
        typer.Argument(help="Instrument id, e.g. cows (see --list).", show_default=False),
    ] = None,
    answers: Annotated[
        list[str] | None,
        typer.Argument(metavar="ITEM=VALUE...", help="One answer per item.", show_default=False),
    ] = None,
    list_: Annotated[
        bool, typer.Option("--list", help="List instruments, their items and allowed values.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    scheme: Annotated[
        str | None,
        typer.Option("--scheme", help="Band scheme id (default: the program's protocol's scheme)."),
    ] = None,
    program: Annotated[
        str | None,
        typer.Option(
            "--program",
            help="Program code: band by its protocol's scheme (default: the shipped protocol).",
        ),
    ] = None,
) -> None:
    """Score a withdrawal or mood instrument, e.g. `tandem score cows resting_pulse=2 ...`.

    Bands follow one scheme per program: the program's withdrawal protocol's (--program), else
    the shipped example protocol's (what a program without its own uses), else the
    instrument's default; --scheme names another. The output says which scheme and why."""
    if list_:
        _print_list(list(load_instruments().values()), as_json)
        return
    if instrument is None:
        _fail(["give an INSTRUMENT to score, or --list to see them"])
    try:
        chosen = get_instrument(instrument)
    except UnknownInstrument as exc:
        _fail([exc.message])
    given, parse_errors = _parse(chosen, answers or [])
    scheme, scheme_from = _scheme(chosen, scheme, program)
    try:
        result = score(chosen, given, scheme)
    except UnknownScheme as exc:
        _fail([str(exc)])
    except InvalidAnswers as exc:
        # An unparseable ITEM=VALUE is already reported; don't also call that item missing.
        named = {e.item_id for e in parse_errors}
        rest = [e for e in exc.errors if not (e.problem == "missing" and e.item_id in named)]
        _fail([e.message for e in parse_errors + rest])
    if parse_errors:
        _fail([e.message for e in parse_errors])
    if as_json:
        typer.echo(
            json.dumps({**_score_json(chosen, result), "scheme_from": scheme_from}, indent=2)
        )
    else:
        _print_score(chosen, result)
        Console().print(
            f"[bold]Band scheme[/] {escape(str(result.scheme_id))}: {escape(scheme_from)}"
        )


def _scheme(
    instrument: Instrument, scheme: str | None, program: str | None
) -> tuple[str | None, str]:
    """The band scheme to use and where it comes from."""
    if scheme is not None:
        return scheme, "given with --scheme"
    if program is not None:
        protocol, whose = _program_protocol(program)
    else:
        protocol = load_protocol()
        whose = "the shipped example protocol"
    chosen = protocol.scheme_for(instrument.id)
    if chosen is not None:
        hint = "" if program else " (used by programs without their own; --program CODE for one)"
        return chosen, f"from {whose}, {protocol.id} v{protocol.version}{hint}"
    return (
        instrument.default_scheme,
        f"the instrument's default ({whose} does not cover {instrument.id})",
    )


def _program_protocol(code: str) -> tuple[Protocol, str]:
    from tandem.platform_cli import _settings
    from tandem.storage.db import make_engine, make_sessionmaker
    from tandem.storage.migrate import upgrade

    engine = make_engine(_settings().database_url)
    try:
        upgrade(engine)
        with make_sessionmaker(engine)() as db:
            found = db.scalar(select(Program).where(Program.code == code.strip().lower()))
            if found is None:
                _fail([f"--program: no program with code {code!r}"])
            current = program_protocol(db, found.id)
            return current.protocol, f"program {found.code}'s protocol ({current.origin})"
    finally:
        engine.dispose()


def _parse(instrument: Instrument, args: list[str]) -> tuple[dict[str, object], list[AnswerError]]:
    given: dict[str, object] = {}
    errors: list[AnswerError] = []
    allowed = {i.id: i.allowed_values for i in instrument.items}
    for arg in args:
        item_id, sep, raw = arg.partition("=")
        item_id = item_id.strip()
        if not sep or not item_id or not raw.strip():
            errors.append(
                AnswerError(
                    instrument.id, item_id or arg, "malformed", arg, allowed.get(item_id, ())
                )
            )
        elif item_id in given:
            errors.append(
                AnswerError(instrument.id, item_id, "repeated", arg, allowed.get(item_id, ()))
            )
        else:
            given[item_id] = parse_value(raw)
    return given, errors


def _fail(messages: list[str]) -> NoReturn:
    for message in messages:
        typer.echo(f"error: {message}", err=True)
    raise typer.Exit(USAGE_ERROR)


def _score_json(instrument: Instrument, result: Score) -> dict[str, Any]:
    return {
        "instrument": instrument.id,
        "instrument_version": instrument.version,
        "total": result.total,
        "min": instrument.total.min,
        "max": instrument.total.max,
        "band": result.band.id if result.band else None,
        "band_label": result.band.label if result.band else None,
        "band_severity": result.band.severity if result.band else None,
        "scheme": result.scheme_id,
        "flags": [f.model_dump() for f in result.flags],
        "items": result.item_values,
        "verified": instrument.verified,
    }


def _print_score(instrument: Instrument, result: Score) -> None:
    console = Console()
    table = Table(title=escape(instrument.name))
    for column in ("item", "value", "meaning"):
        table.add_column(column)
    for item in instrument.items:
        value = result.item_values[item.id]
        table.add_row(item.id, str(value), escape(item.anchors[value].label(value)))
    console.print(table)
    console.print(
        f"[bold]Total[/] {result.total} (range {instrument.total.min}-{instrument.total.max})"
    )
    if result.band:
        band = f"{result.band.label} ({result.band.id}; scheme {result.scheme_id})"
        console.print(f"[bold]Band[/] {escape(band)}")
    else:
        console.print(f"[bold]Band[/] none: {escape(instrument.band_note or '')}")
    for flag in result.flags:
        console.print(f"[bold red]Flag {flag.id}[/]: {escape(flag.message)}")
    if not instrument.verified:
        console.print("[yellow]Some text of this instrument is unverified (see --list).[/]")


def _print_list(instruments: list[Instrument], as_json: bool) -> None:
    if as_json:
        listing = [
            {
                "id": inst.id,
                "name": inst.name,
                "respondent": inst.respondent,
                "band_schemes": [s.id for s in inst.band_schemes],
                "default_scheme": inst.default_scheme,
                "items": [
                    {"id": i.id, "text": i.text, "allowed_values": list(i.allowed_values)}
                    for i in inst.items
                ],
            }
            for inst in instruments
        ]
        typer.echo(json.dumps(listing, indent=2))
        return
    console = Console()
    for inst in instruments:
        schemes = ", ".join(s.id for s in inst.band_schemes) or "none"
        table = Table(title=escape(f"{inst.id}: {inst.name}"), caption=f"band schemes: {schemes}")
        for column in ("item", "allowed values", "text"):
            table.add_column(column)
        for item in inst.items:
            mark = " (unverified text)" if item.unverified else ""
            if any(a.unverified for a in item.anchors.values()):
                mark += " (unverified anchors)"
            allowed = ", ".join(map(str, item.allowed_values))
            table.add_row(item.id, allowed, escape(item.text) + mark)
        console.print(table)
