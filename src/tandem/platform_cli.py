"""Platform commands: init, serve, worker, demo, token, client, user, backup, restore, audit
verify."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import Engine, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from tandem.access import accounts, audit, audit_chain
from tandem.access.credentials import CredentialError, actor_for, create_token, revoke_token
from tandem.access.scopes import ScopeError
from tandem.errors import InvalidInput
from tandem.settings import Settings
from tandem.storage import backups
from tandem.storage.db import (
    make_engine,
    make_sessionmaker,
    refresh_planner_statistics,
    session_scope,
    utcnow,
)
from tandem.storage.migrate import upgrade
from tandem.storage.models import ApiToken, User
from tandem.storage.roles import check_for_restore, set_up_roles
from tandem.storage.roles import missing_roles as roles_missing

if TYPE_CHECKING:
    from fastapi import FastAPI

err = Console(stderr=True)
out = Console()
token_app = typer.Typer(help="API tokens with SMART scopes.", no_args_is_help=True)
CLI_ORIGIN = audit.Origin(channel="cli")


def fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(2)


def _settings() -> Settings:
    try:
        return Settings()
    except Exception as exc:  # pydantic's ValidationError, told plainly
        raise fail(str(exc)) from None


def _migrated_sessions(settings: Settings):  # type: ignore[no-untyped-def]
    engine = make_engine(settings.database_url)
    upgrade(engine)
    return engine, make_sessionmaker(engine)


# The record fields `init` fills, named as the flags the operator typed.
_INIT_FLAGS = {
    "email": "--admin-email",
    "display_name": "--admin-name",
    "password": "--admin-password",
    "code": "--program-code",
    "name": "--program-name",
    "time_zone": "--time-zone",
}


def init(
    admin_email: str = typer.Option(..., prompt="Administrator e-mail"),
    admin_name: str = typer.Option(..., prompt="Administrator name"),
    admin_password: str = typer.Option(..., prompt=True, hide_input=True, confirmation_prompt=True),
    program_code: str = typer.Option("main", help="Short code of the first program"),
    program_name: str = typer.Option("Main program", help="Name of the first program"),
    time_zone: str = typer.Option(
        "UTC", help="IANA time zone of the program, e.g. America/New_York"
    ),
    owner_role: str | None = typer.Option(
        None, help="PostgreSQL: the role that owns the tables (see README, PostgreSQL roles)"
    ),
    app_role: str | None = typer.Option(
        None,
        help="PostgreSQL: the role `tandem serve` connects as (INSERT, SELECT on the audit trail)",
    ),
) -> None:
    """Create the database (run migrations) and the first administrator and program; with
    --owner-role and --app-role (PostgreSQL), give the tables to the owner and grant the
    application role what it needs (again on every run: safe to repeat)."""
    settings = _settings()
    if (owner_role is None) != (app_role is None):
        raise fail("--owner-role and --app-role go together")
    if owner_role is not None and settings.is_sqlite:
        raise fail("--owner-role: roles are a PostgreSQL feature; SQLite has none")
    engine, sessions = _migrated_sessions(settings)
    with sessions() as db:
        initialised = (
            db.scalar(select(User.id).where(User.email == admin_email.strip().lower())) is not None
        )
    if initialised:
        if owner_role is None:
            raise fail(f"{admin_email} already exists; the database is initialised")
        _set_up_roles(engine, owner_role, app_role or "")
        out.print(f"{admin_email} already exists; the roles are set up again.")
        return
    try:
        with session_scope(sessions) as db:
            program = accounts.create_program(db, program_code, program_name, time_zone=time_zone)
            user = accounts.create_user(
                db, admin_email, admin_name, "admin", admin_password, [program.id]
            )
            db.add(
                audit.entry(
                    actor_for(user),
                    "create",
                    CLI_ORIGIN,
                    resource_type="User",
                    resource_id=str(user.id),
                )
            )
    except InvalidInput as exc:
        raise fail(
            f"{_INIT_FLAGS.get(exc.field, '--' + exc.field.replace('_', '-'))}: {exc.message}"
        ) from None
    if owner_role is not None:
        _set_up_roles(engine, owner_role, app_role or "")
    out.print(
        f"Initialised {make_url(settings.database_url).render_as_string()}: "
        f"administrator {admin_email}, program {program_code}."
    )


def _set_up_roles(engine: Engine, owner: str, app: str) -> None:
    try:
        schema = set_up_roles(engine, owner, app)
    except InvalidInput as exc:
        raise fail(f"--{exc.field.replace('_', '-')}: {exc.message}") from None
    out.print(
        f"Schema {schema}: owned by {owner}; {app} may read and add to the audit trail, "
        "never change it."
    )


def served_app() -> FastAPI:
    """The app as `tandem serve` runs it in each worker process: settings from the environment
    (TANDEM_*, inherited from the parent), the scheduler started by its lifespan. Migrations and
    planner statistics are the parent's, done once before any worker starts."""
    from tandem.web.app import create_app

    settings = Settings()
    return create_app(settings, run_jobs=settings.serve_jobs)


def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on"),
    port: int = typer.Option(8000, help="Port to listen on"),
    workers: int = typer.Option(
        os.cpu_count() or 1, min=1, help="Worker processes (default: one per CPU)"
    ),
    jobs: bool = typer.Option(
        True,
        "--jobs/--no-jobs",
        help="Run the scheduled sweeps in the web processes (--no-jobs when `tandem worker` "
        "runs them)",
    ),
) -> None:
    """Run migrations, then serve the web UI and the FHIR API from WORKERS processes."""
    import uvicorn

    if not jobs:
        os.environ["TANDEM_SERVE_JOBS"] = "false"  # read by each worker's settings
    settings = _settings()
    engine, _ = _migrated_sessions(settings)
    refresh_planner_statistics(engine)
    engine.dispose()  # each worker is a new process with a pool of its own
    out.print(
        f"Tandem on http://{host}:{port}  (database {make_url(settings.database_url).render_as_string()}, "
        f"{workers} worker{'s' if workers > 1 else ''}"
        f"{'' if settings.serve_jobs else ', scheduled jobs off: run `tandem worker`'})"
    )
    uvicorn.run(
        "tandem.platform_cli:served_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        access_log=False,
        # The client address is Tandem's to work out (TANDEM_TRUSTED_PROXIES, counted from the
        # right of X-Forwarded-For); uvicorn's own reading would trust the leftmost entry.
        proxy_headers=False,
        # A new worker answers the supervisor's health check only once it has imported the
        # `tandem` script (the whole CLI); on a busy machine that takes more than uvicorn's
        # default 5 s, and the worker is killed and started again, for ever.
        timeout_worker_healthcheck=60,
    )


def demo(
    patients: int = typer.Option(200, min=1, max=200_000, help="How many synthetic patients"),
    seed: int = typer.Option(1, help="Same seed, same program"),
) -> None:
    """Load a synthetic treatment program and print the demo logins as `email password` lines."""
    from tandem import demo as demo_data
    from tandem.domains import demo_steps

    settings = _settings()
    engine, sessions = _migrated_sessions(settings)
    with session_scope(sessions) as db:
        if demo_data.already_loaded(db):
            err.print(
                "The demo program is already loaded; its logins are reset to these passwords."
            )
            logins = demo_data.reset_logins(db, seed)
        else:
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=err,
                transient=False,
            ) as progress:
                task = progress.add_task("Synthetic patients", total=patients)
                world = demo_data.build_platform(
                    db, patients, seed, progress=lambda n: progress.advance(task, n)
                )
                logins = demo_data.create_logins(db, world, seed)
                for label, step in demo_steps():
                    step_task = progress.add_task(label, total=1)
                    step(db, world)
                    progress.advance(step_task)
            db.add(
                audit.entry(
                    None,
                    "create",
                    CLI_ORIGIN,
                    resource_type="Patient",
                    actor_label="tandem demo",
                    detail=f"synthetic demo program: {patients} patients, seed {seed}",
                )
            )
    refresh_planner_statistics(engine)
    err.print("Demo logins (synthetic data only):")
    for login in logins:
        print(f"{login.email} {login.password}")


@token_app.command("create")
def token_create(
    user: str = typer.Option(..., "--user", help="E-mail of the user the token acts for"),
    scope: list[str] = typer.Option(
        ..., "--scope", help="SMART scope, e.g. user/Patient.rs (repeatable)"
    ),
    more_scopes: list[str] = typer.Argument(None, help="More scopes", show_default=False),
    label: str = typer.Option("", help="What the token is for"),
    expires_days: int | None = typer.Option(None, min=1, help="Expire after this many days"),
) -> None:
    """Create an API token; prints it once on stdout."""
    scopes = [s for item in [*scope, *(more_scopes or [])] for s in item.replace(",", " ").split()]
    settings = _settings()
    _, sessions = _migrated_sessions(settings)
    now = utcnow()
    try:
        with session_scope(sessions) as db:
            owner = db.scalar(select(User).where(User.email == user.strip().lower()))
            if owner is None or not owner.active:
                raise fail(f"--user: no active user {user}")
            secret, token = create_token(
                db,
                owner,
                scopes,
                label,
                now,
                now + timedelta(days=expires_days) if expires_days else None,
            )
            db.add(
                audit.entry(
                    actor_for(owner),
                    "create",
                    CLI_ORIGIN,
                    resource_type="ApiToken",
                    resource_id=str(token.id),
                    detail=token.scopes,
                )
            )
    except (ScopeError, CredentialError) as exc:
        raise fail(f"--scope: {exc}") from None
    err.print(f"Token {token.id} for {owner.email} with scopes: {token.scopes}")
    print(secret)


@token_app.command("revoke")
def token_revoke(
    token: str = typer.Argument(..., help="The token itself, or its id from `tandem token list`"),
) -> None:
    """Revoke a token: it stops working at once."""
    settings = _settings()
    _, sessions = _migrated_sessions(settings)
    with session_scope(sessions) as db:
        found = revoke_token(db, token, utcnow())
        if found is None:
            raise fail("no such token")
        db.add(
            audit.entry(
                actor_for(found.user),
                "update",
                CLI_ORIGIN,
                resource_type="ApiToken",
                resource_id=str(found.id),
                detail="revoked",
            )
        )
    out.print(f"Token {found.id} revoked.")


@token_app.command("list")
def token_list() -> None:
    """List tokens (never the secrets)."""
    settings = _settings()
    _, sessions = _migrated_sessions(settings)
    with session_scope(sessions) as db:
        for token in db.scalars(select(ApiToken).order_by(ApiToken.id)):
            state = "revoked" if token.revoked_at else "active"
            # Plain print: tab-separated for scripts (Rich would expand tabs, wrap and read [markup]).
            print(f"{token.id}\t{token.prefix}…\t{token.user.email}\t{token.scopes}\t{state}")


user_app = typer.Typer(
    help="Accounts the operator manages: system administrators.", no_args_is_help=True
)


def _set_system_admin(email: str, granted: bool) -> None:
    settings = _settings()
    _, sessions = _migrated_sessions(settings)
    word = "granted" if granted else "revoked"
    with session_scope(sessions) as db:
        user = db.scalar(select(User).where(User.email == email.strip().lower()))
        if user is None:
            raise fail(f"no user {email}")
        try:
            accounts.grant_system_admin(user, granted)
        except InvalidInput as exc:
            raise fail(exc.message) from None
        db.add(
            audit.entry(
                None,
                "update",
                CLI_ORIGIN,
                resource_type="User",
                resource_id=str(user.id),
                detail=f"system administrator {word}",
                actor_label=f"tandem user ({os.environ.get('USER', 'operator')})",
            )
        )
    out.print(f"{user.email}: system administrator {word}.")


@user_app.command("grant-system-admin")
def grant_system_admin(
    email: str = typer.Argument(..., help="E-mail of an administrator"),
) -> None:
    """Let an administrator manage every program, not only their own (audited)."""
    _set_system_admin(email, True)


@user_app.command("revoke-system-admin")
def revoke_system_admin(email: str = typer.Argument(..., help="E-mail of the user")) -> None:
    """Limit a system administrator to their own programs again (audited)."""
    _set_system_admin(email, False)


def backup(path: Path = typer.Argument(..., help="File to write")) -> None:
    """Back up the database while it runs (SQLite online backup; pg_dump for PostgreSQL).
    The file is readable by its owner only."""
    settings = _settings()
    if path.exists():
        raise fail(f"{path} exists; choose a new file")
    if settings.is_sqlite:
        source = make_url(settings.database_url).database or ""
        if not Path(source).exists():
            raise fail(f"no database at {source}")
    elif shutil.which("pg_dump") is None:
        raise fail("pg_dump is not installed")
    try:
        backups.create_private(path)
    except OSError as exc:
        raise fail(f"cannot create {path}: {exc.strerror}") from None
    try:
        if settings.is_sqlite:
            with sqlite3.connect(source) as src, sqlite3.connect(path) as dst:
                src.backup(dst)
        else:
            with backups.pg_client(settings.database_url) as (conninfo, env):
                result = subprocess.run(  # noqa: S603 - fixed argv, no shell
                    ["pg_dump", "--format=custom", f"--file={path}", conninfo],  # noqa: S607
                    capture_output=True,
                    text=True,
                    check=False,
                    env=env,
                )
            if result.returncode != 0:
                raise fail(f"pg_dump failed: {result.stderr.strip()}")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    out.print(f"Backed up to {path}.")


def restore(
    path: Path = typer.Argument(..., help="A file made by `tandem backup`"),
    yes: bool = typer.Option(False, "--yes", help="Do not ask before replacing the database"),
    owner_role: str | None = typer.Option(
        None, help="PostgreSQL: the role to own the tables (default: the backup's)"
    ),
    app_role: str | None = typer.Option(
        None,
        help="PostgreSQL: the role `tandem serve` connects as (default: the backup's)",
    ),
) -> None:
    """Replace the database with a backup. The credentials stay as they were before it:
    passwords, deactivations, roles, and only the sessions and tokens live then stay live. Lists
    what was written after the backup and is now gone, and what was kept. On PostgreSQL the
    tables go to the backup's owner role and application role (checked first)."""
    settings = _settings()
    if not path.exists():
        raise fail(f"{path} does not exist")
    if (owner_role is None) != (app_role is None):
        raise fail("--owner-role and --app-role go together")
    if owner_role is not None and settings.is_sqlite:
        raise fail("--owner-role: roles are a PostgreSQL feature; SQLite has none")
    roles: tuple[str, str] | None = None
    if settings.is_sqlite:
        try:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as src:
                src.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.DatabaseError:
            raise fail(f"{path} is not a Tandem SQLite backup") from None
    elif shutil.which("pg_restore") is None:
        raise fail("pg_restore is not installed")
    else:
        try:
            found = backups.archive_roles(path)
        except backups.NotAnArchive as exc:
            raise fail(f"{path} is not a Tandem PostgreSQL backup: {exc}") from None
        if owner_role is not None and app_role is not None:
            roles = (owner_role, app_role)
        elif found.owner is not None and found.app is not None:
            roles = (found.owner, found.app)
    engine = make_engine(settings.database_url)
    try:
        if roles is not None:
            _check_restore_roles(engine, *roles, named=owner_role is not None)
        else:
            with engine.connect():
                pass
    except OperationalError as exc:
        raise fail(f"cannot reach the database: {str(exc.orig).strip()}") from None
    finally:
        engine.dispose()
    if not yes:
        if not sys.stdin.isatty():  # a script without --yes must not replace the database unasked
            raise fail("restore replaces the whole database; add --yes to do it without a prompt")
        typer.confirm(f"Replace {settings.database_url} with {path}?", abort=True)
    before = backups.capture(engine)
    engine.dispose()
    if settings.is_sqlite:
        target = make_url(settings.database_url).database or ""
        with (
            sqlite3.connect(f"file:{path}?mode=ro", uri=True) as src,
            sqlite3.connect(target) as dst,
        ):
            src.backup(dst)
    else:
        with backups.pg_client(settings.database_url) as (conninfo, env):
            result = subprocess.run(  # noqa: S603 - fixed argv, no shell
                [  # noqa: S607
                    "pg_restore",
                    "--clean",
                    "--if-exists",
                    # Ownership and grants are given after, by `set_up_roles`: the backup's
                    # statements would fail on a server without its roles.
                    "--no-owner",
                    "--no-acl",
                    "--single-transaction",
                    f"--dbname={conninfo}",
                    str(path),
                ],
                capture_output=True,
                text=True,
                check=False,
                env=env,
            )
        if result.returncode != 0:
            raise fail(f"pg_restore failed: {result.stderr.strip()}")
    engine, sessions = _migrated_sessions(settings)
    now = utcnow()
    kept = backups.keep_revocations(engine, before, now)
    gone = backups.rolled_back(engine, before)
    told = _rolled_back_lines(gone) + _kept_lines(kept)
    with session_scope(sessions) as db:
        db.add(
            audit.entry(
                None,
                "restore",
                CLI_ORIGIN,
                resource_type="Database",
                actor_label="tandem restore",
                detail=f"restored from {path.name}. " + " ".join(told),
                now=now,
            )
        )
    engine.dispose()
    out.print(f"Restored from {path}.")
    for line in told:
        (err if kept.failed_closed and line is told[-1] else out).print(line)
    if roles is not None:
        engine = make_engine(settings.database_url)
        try:
            _set_up_roles(engine, *roles)
        finally:
            engine.dispose()


def _check_restore_roles(engine: Engine, owner: str, app: str, named: bool) -> None:
    """Refuse before replacing anything when the roles the tables go to are missing or unfit,
    saying what to run first."""
    missing = roles_missing(engine, owner, app)
    if missing:
        create = " ".join(
            f'-c "CREATE ROLE {name} NOLOGIN"'
            if name == owner
            else f"-c \"CREATE ROLE {name} LOGIN PASSWORD '...'\""
            for name in missing
        )
        source = "named" if named else "of the backup"
        raise fail(
            f"the roles {source} are missing on this server: the owner role {owner} owns the "
            f"tables, and the application role {app} may only SELECT and INSERT on the audit "
            f"trail; this server has no role {', '.join(missing)}. Create "
            f"{'it' if len(missing) == 1 else 'them'} first, as the database administrator: "
            f"psql {create}, then run tandem restore again (or name roles this server has with "
            "--owner-role and --app-role). Nothing was changed."
        )
    try:
        check_for_restore(engine, owner, app)
    except InvalidInput as exc:
        raise fail(
            f"--{exc.field.replace('_', '-')}: {exc.message}. Nothing was changed."
        ) from None


def _when(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S")


def _span(gone: backups.RolledBack, table: str) -> str:
    if table not in gone.first:
        return ""
    first, last = gone.first[table], gone.last[table]
    return f" (at {_when(first)})" if first == last else f" ({_when(first)} to {_when(last)})"


def _rolled_back_lines(gone: backups.RolledBack) -> list[str]:
    """What the restore took away: rows written after the backup, per table with when they were
    written, and rows changed back."""
    lines = []
    if gone.total:
        span = gone.span
        when = f" written between {_when(span[0])} and {_when(span[1])} UTC" if span else ""
        tables = ", ".join(
            f"{table} {count}" + _span(gone, table) for table, count in gone.removed.items()
        )
        lines.append(f"Rolled back: {gone.total} records{when}, now gone: {tables}.")
    else:
        lines.append("Rolled back: nothing (no record written after the backup was lost).")
    if gone.changed:
        changed = ", ".join(f"{table} {count}" for table, count in gone.changed.items())
        lines.append(f"Changed back to their state at the backup: {changed}.")
    return lines


def _kept_lines(kept: backups.Kept) -> list[str]:
    if kept.failed_closed:
        return [
            (
                "The database replaced held no Tandem data yet (a new server)"
                if kept.empty
                else "The database before the restore could not be read"
            )
            + ", so what was revoked or changed after the backup is unknown: every session was "
            f"ended ({kept.sessions}) and every API token "
            f"revoked ({kept.tokens}); passwords are those of the backup."
        ]

    def n(count: int, one: str, many: str) -> str:
        return f"{count} {one if count == 1 else many}"

    parts = [
        n(kept.passwords, "password changed", "passwords changed"),
        n(kept.users, "user stays deactivated", "users stay deactivated"),
        n(kept.sessions, "session stays ended", "sessions stay ended"),
        n(kept.tokens, "API token stays revoked", "API tokens stay revoked"),
    ] + [  # the rarer ones only when they happened
        n(count, one, many)
        for count, one, many in (
            (kept.reactivated, "user stays reactivated", "users stay reactivated"),
            (kept.roles, "role or program change", "role or program changes"),
            (kept.apps, "app stays disabled", "apps stay disabled"),
            (kept.devices, "device stays forgotten", "devices stay forgotten"),
        )
        if count
    ]
    return ["Credentials kept as they were before the restore: " + ", ".join(parts) + "."]


audit_app = typer.Typer(help="The audit trail.", no_args_is_help=True)


@audit_app.command("verify")
def audit_verify(
    anchor: list[str] = typer.Option(
        [],
        "--anchor",
        help="ID:HASH, a chain head printed by an earlier verify and kept elsewhere (repeatable)",
    ),
    seal_first: bool = typer.Option(True, "--seal/--no-seal", help="Seal new entries first"),
) -> None:
    """Check the audit trail's hash chain; exit 1 naming the first broken entry."""
    anchors = []
    for item in anchor:
        entry_id, _, chain_hash = item.partition(":")
        if not entry_id.isdigit() or len(chain_hash) != 64:
            raise fail(f"--anchor: {item!r} is not ID:HASH (as `tandem audit verify` prints it)")
        anchors.append((int(entry_id), chain_hash.lower()))
    settings = _settings()
    engine, sessions = _migrated_sessions(settings)
    if seal_first:
        try:
            audit_chain.seal(sessions, utcnow())
        except audit_chain.SealerBusy as exc:
            err.print(f"Not sealed now ({exc}); checking what is sealed.")
    verdict = audit_chain.verify(sessions, anchors)
    engine.dispose()
    if verdict.broken is not None:
        err.print(
            f"[bold red]Audit trail broken at entry {verdict.broken.entry_id}:[/] "
            f"{verdict.broken.problem}"
        )
        raise typer.Exit(1)
    out.print(
        f"Audit trail intact: {verdict.checked} entries checked"
        + (f", {verdict.unsealed} newer ones not sealed yet." if verdict.unsealed else ".")
    )
    if verdict.head is not None:
        out.print(f"Chain head {verdict.head[0]}:{verdict.head[1]} (keep it to pass as --anchor).")


def worker(
    poll: float = typer.Option(
        15.0, min=0.5, help="Seconds between looks for due jobs (default 15)"
    ),
    once: bool = typer.Option(False, "--once", help="Run the jobs due now once, then exit"),
) -> None:
    """Run the scheduled jobs (overdue-reassessment and missed-dose sweeps) in the foreground,
    without serving HTTP: for deployments that run `tandem serve --no-jobs`. Several workers
    (or servers) may run at once: each run is claimed once, through the database."""
    import signal

    from tandem import scheduler
    from tandem.domains import scheduled_jobs

    settings = _settings()
    engine, sessions = _migrated_sessions(settings)
    jobs = scheduled_jobs()
    if once:
        ran = scheduler.run_due(sessions, jobs, utcnow(), scheduler.process_name())
        for name in ran:
            with sessions() as db:
                run = scheduler.last_run(db, name)
            out.print(f"{name}: {run.last_status}")
        if not ran:
            out.print("no job was due")
        engine.dispose()
        return
    runner = scheduler.Scheduler(sessions, jobs, poll=poll)
    out.print(
        f"Tandem worker {runner.me}: {', '.join(j.name for j in jobs)} "
        f"(database {make_url(settings.database_url).render_as_string()}); Ctrl-C to stop"
    )
    signal.signal(signal.SIGTERM, lambda *_: runner.request_stop())
    try:
        runner.run()
    except KeyboardInterrupt:
        runner.request_stop()
    finally:
        engine.dispose()
    out.print("Tandem worker stopped.")


client_app = typer.Typer(
    help="SMART on FHIR apps: register, list and disable apps and backend services.",
    no_args_is_help=True,
)


@client_app.command("add")
def client_add(
    name: str = typer.Option(..., "--name", help="The name people see on the consent page"),
    program: str = typer.Option(..., "--program", help="Code of the program it belongs to"),
    kind: str = typer.Option(
        "public", "--kind", help="public | confidential (a secret) | backend (signed JWT)"
    ),
    redirect_uri: list[str] = typer.Option(
        None, "--redirect-uri", help="Where the app receives its code (repeatable; apps)"
    ),
    launch_url: str = typer.Option(
        "", "--launch-url", help="Where staff open the app from a patient's chart (apps)"
    ),
    jwks: Path | None = typer.Option(
        None, "--jwks", help="File with the service's public keys, a JWKS (backend)"
    ),
    jwks_uri: str = typer.Option(
        "", "--jwks-uri", help="Or the https address the service publishes its keys at (backend)"
    ),
    role: str = typer.Option("", "--role", help="The role a backend service acts as"),
    scope: list[str] = typer.Option(
        None, "--scope", help="system/ scope a backend service may ask for (repeatable)"
    ),
) -> None:
    """Register an app; prints its client id (and, for a confidential app, its secret, once)."""
    from tandem.access import smart
    from tandem.storage.models import Program

    settings = _settings()
    _, sessions = _migrated_sessions(settings)
    try:
        keys = jwks.read_text() if jwks is not None else ""
    except OSError as exc:
        raise fail(f"--jwks: {exc}") from None
    try:
        with session_scope(sessions) as db:
            found = db.scalar(select(Program).where(Program.code == program.strip()))
            if found is None:
                raise fail(f"--program: no program with code {program}")
            done = smart.register_app(
                db,
                name=name,
                kind=kind,
                program_id=found.id,
                now=utcnow(),
                created_by=None,
                redirect_uris="\n".join(redirect_uri or []),
                jwks=keys,
                jwks_uri=jwks_uri,
                role=role,
                scopes=" ".join(scope or []),
                launch_url=launch_url,
            )
            db.add(
                audit.entry(
                    None,
                    "create",
                    CLI_ORIGIN,
                    resource_type="SmartApp",
                    resource_id=done.client.client_id,
                    detail=f"{done.client.kind} app {done.client.name}",
                    actor_label="tandem client add",
                )
            )
            client_id = done.client.client_id
    except InvalidInput as exc:
        flag = {
            "redirect_uris": "redirect-uri",
            "scopes": "scope",
            "launch_url": "launch-url",
            "jwks_uri": "jwks-uri",
        }.get(exc.field, exc.field)
        raise fail(f"--{flag}: {exc.message}") from None
    err.print(f"Registered {name} ({kind}) for program {program}.")
    print(client_id)
    if done.secret:
        print(done.secret)


@client_app.command("list")
def client_list() -> None:
    """List registered apps (never their secrets)."""
    from tandem.storage.models import SmartClient

    settings = _settings()
    _, sessions = _migrated_sessions(settings)
    with session_scope(sessions) as db:
        for client in db.scalars(select(SmartClient).order_by(SmartClient.id)):
            state = "disabled" if client.disabled_at else "active"
            print(f"{client.client_id}\t{client.kind}\t{client.name}\t{state}")


@client_app.command("disable")
def client_disable(
    client_id: str = typer.Argument(..., help="The app's client id"),
) -> None:
    """Disable an app: its tokens stop working at once."""
    from tandem.access import smart
    from tandem.storage.models import SmartClient

    settings = _settings()
    _, sessions = _migrated_sessions(settings)
    with session_scope(sessions) as db:
        client = db.scalar(select(SmartClient).where(SmartClient.client_id == client_id))
        if client is None:
            raise fail(f"no app with client id {client_id}")
        revoked = smart.disable_app(db, client, utcnow())
        db.add(
            audit.entry(
                None,
                "update",
                CLI_ORIGIN,
                resource_type="SmartApp",
                resource_id=client.client_id,
                detail=f"disabled; {revoked} tokens revoked",
                actor_label="tandem client disable",
            )
        )
    out.print(f"App {client_id} disabled; {revoked} tokens revoked.")


@client_app.command("rotate-key")
def client_rotate_key() -> None:
    """Sign id_tokens with a new key from now on (the old ones stay published until the
    id_tokens they signed expire). Also after changing TANDEM_KEY_SECRET or TANDEM_KEY_FILE."""
    from tandem.access import smart

    settings = _settings()
    _, sessions = _migrated_sessions(settings)
    try:
        sealer = settings.sealer()
    except ValueError as exc:
        raise fail(str(exc)) from None
    with session_scope(sessions) as db:
        key = smart.new_signing_key(db, utcnow(), sealer)
        db.add(
            audit.entry(
                None,
                "update",
                CLI_ORIGIN,
                resource_type="SmartApp",
                detail=f"new id_token signing key {key.kid}",
                actor_label="tandem client rotate-key",
            )
        )
    out.print(f"id_tokens are signed with key {key.kid} from now on (sealed with {sealer.source}).")


COMMANDS: tuple[tuple[str, object], ...] = (
    ("init", init),
    ("serve", serve),
    ("worker", worker),
    ("demo", demo),
    ("token", token_app),
    ("client", client_app),
    ("user", user_app),
    ("backup", backup),
    ("restore", restore),
    ("audit", audit_app),
)
