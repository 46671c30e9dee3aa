"""PostgreSQL roles: an owner role owns Tandem's tables; the application role may only read and
add to the audit trail.

`tandem init --owner-role O --app-role A`, run as a superuser (or a member of O), makes O the
owner of every table, sequence and function in the schema and grants A:

- on the audit tables (audit_entries, audit_entry_patients, audit_chain): SELECT and INSERT only,
  so A cannot UPDATE, DELETE, TRUNCATE, ALTER (disable a trigger) or DROP them;
- on every other table: SELECT, INSERT, UPDATE, DELETE; on alembic_version: SELECT;
- USAGE on the schema and the sequences; EXECUTE on audit_horizon() (the sealer's lock).

O gets USAGE and CREATE on the schema (it runs later migrations; foreign keys are checked as O).

Idempotent: run it again after a release's migrations or a restore. Both roles must exist (the
database administrator creates them, with their passwords); A must be neither a superuser nor a
member of O, since either could undo all of the above.
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine, text

from tandem.errors import InvalidInput
from tandem.storage.registry import full_metadata

AUDIT_TABLES = ("audit_entries", "audit_entry_patients", "audit_chain")
READ_ONLY_TABLES = ("alembic_version",)


def set_up_roles(engine: Engine, owner: str, app: str) -> str:
    """Ownership and grants as above; returns the schema they apply to."""
    if engine.dialect.name != "postgresql":
        raise InvalidInput("owner_role", "roles are a PostgreSQL feature; SQLite has none")
    if owner == app:
        raise InvalidInput("app_role", "must differ from the owner role")
    with engine.begin() as conn:
        _check_roles(conn, owner, app)
        schema = str(conn.execute(text("SELECT current_schema()")).scalar_one())
        ours = {*full_metadata().tables, *READ_ONLY_TABLES}
        tables = [
            table
            for table in conn.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = :s ORDER BY 1"),
                {"s": schema},
            ).scalars()
            if table in ours  # another application's tables in the schema are left alone
        ]
        functions = list(
            conn.execute(
                text(
                    "SELECT p.oid::regprocedure::text FROM pg_proc p "
                    "JOIN pg_namespace n ON n.oid = p.pronamespace "
                    "WHERE n.nspname = :s AND (p.proname LIKE 'audit%' OR p.prorettype = "
                    "'trigger'::regtype) ORDER BY 1"
                ),
                {"s": schema},
            ).scalars()
        )
        o, a, s = _ident(conn, owner), _ident(conn, app), _ident(conn, schema)
        for table in tables:  # the sequences a table owns move with it
            conn.execute(text(f"ALTER TABLE {s}.{_ident(conn, table)} OWNER TO {o}"))
        for function in functions:  # regprocedure text is already quoted and schema-qualified
            conn.execute(text(f"ALTER FUNCTION {function} OWNER TO {o}"))
        # The owner runs later migrations, and foreign-key checks run as the tables' owner.
        conn.execute(text(f"GRANT USAGE, CREATE ON SCHEMA {s} TO {o}"))
        conn.execute(text(f"GRANT USAGE ON SCHEMA {s} TO {a}"))
        for table in tables:
            name = f"{s}.{_ident(conn, table)}"
            conn.execute(text(f"REVOKE ALL ON {name} FROM {a}"))
            if table in AUDIT_TABLES:
                conn.execute(text(f"REVOKE ALL ON {name} FROM PUBLIC"))
                conn.execute(text(f"GRANT SELECT, INSERT ON {name} TO {a}"))
            elif table in READ_ONLY_TABLES:
                conn.execute(text(f"GRANT SELECT ON {name} TO {a}"))
            else:
                conn.execute(text(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {name} TO {a}"))
        conn.execute(text(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {s} FROM {a}"))
        conn.execute(text(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA {s} TO {a}"))
        horizon = f"{s}.audit_horizon()"
        conn.execute(text(f"ALTER FUNCTION {horizon} SET search_path = {s}, pg_temp"))
        conn.execute(text(f"REVOKE ALL ON FUNCTION {horizon} FROM PUBLIC"))
        conn.execute(text(f"GRANT EXECUTE ON FUNCTION {horizon} TO {a}"))
    return schema


def missing_roles(engine: Engine, *names: str) -> list[str]:
    """Those of `names` that are not roles of the server."""
    with engine.connect() as conn:
        found = set(
            conn.execute(
                text("SELECT rolname FROM pg_roles WHERE rolname = ANY(:n)"), {"n": list(names)}
            ).scalars()
        )
    return [name for name in names if name not in found]


def check_for_restore(engine: Engine, owner: str, app: str) -> None:
    """Before a restore replaces anything: the roles are fit (as for `set_up_roles`), and the
    role restoring may give the tables to the owner (a superuser or a member of it)."""
    if owner == app:
        raise InvalidInput("app_role", "must differ from the owner role")
    with engine.connect() as conn:
        _check_roles(conn, owner, app)
        me, may = conn.execute(
            text(
                "SELECT current_user, rolsuper OR pg_has_role(current_user, :o, 'MEMBER') "
                "FROM pg_roles WHERE rolname = current_user"
            ),
            {"o": owner},
        ).one()
        if not may:
            raise InvalidInput(
                "owner_role",
                f"restoring as {me!r}, which can give no table to {owner!r}: restore as a "
                f"superuser or a member of {owner!r} (not as the application role)",
            )


def _check_roles(conn: Connection, owner: str, app: str) -> None:
    found = {
        name: superuser
        for name, superuser in conn.execute(
            text("SELECT rolname, rolsuper FROM pg_roles WHERE rolname IN (:o, :a)"),
            {"o": owner, "a": app},
        )
    }
    for field, name in (("owner_role", owner), ("app_role", app)):
        if name not in found:
            raise InvalidInput(field, f"no role {name!r}: create it first (CREATE ROLE ... LOGIN)")
    if found[app]:
        raise InvalidInput("app_role", f"{app!r} is a superuser: it could alter the audit trail")
    if conn.execute(
        text("SELECT pg_has_role(:a, :o, 'MEMBER')"), {"a": app, "o": owner}
    ).scalar_one():
        raise InvalidInput(
            "app_role", f"{app!r} is a member of {owner!r}: it could act as the owner"
        )


def _ident(conn: Connection, name: str) -> str:
    return str(conn.execute(text("SELECT quote_ident(:n)"), {"n": name}).scalar_one())
