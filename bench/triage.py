"""The counselors' triage queue with 1,000 open questions, beside the same SQL run bare.

    .venv/bin/python bench/triage.py            # both engines, 100 timed runs each
    .venv/bin/python bench/triage.py --quick    # 20 runs: a smoke run

For each engine: a freshly migrated database; a program with `--open` open questions (one in
ten urgent, one in five from a patient of the program, a third of them call-back requests) and
`--closed` closed ones; another program with as many open questions, to be filtered out. Then,
in the same run and on the same database:

  page       GET /questions signed in as the program's counselor (the real app in-process:
             session, policy, the queue, its audit entry and commit, the rendered HTML with
             every open question)
  bare SQL   every SELECT that one page request issued (captured from the app's engine),
             replayed through the bare driver (sqlite3 / psycopg) with the same parameters

Target (issue 11): the page renders in under 100 ms at p95.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from fastapi.testclient import TestClient
from sqlalchemy import event, insert
from unit_mar import Timing, _libpq, _timed, drop_postgres, recreate_postgres

from tandem.access import accounts
from tandem.counseling.storage import MessageRow, QuestionRow
from tandem.settings import Settings
from tandem.storage.db import make_engine, make_sessionmaker, session_scope
from tandem.storage.migrate import upgrade
from tandem.storage.models import Patient
from tandem.web.app import create_app

DEFAULT_PG = os.environ.get(
    "TANDEM_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/tandem_bench_triage"
)
PASSWORD = "bench-password-1"  # noqa: S105 (a synthetic bench login)
TEXTS = [
    "How long do cravings last after detox?",
    "Can my family visit during the first week?",
    "I would like to talk about the outpatient program.",
    "Is it safe to drive while on baclofen?",
    "What happens if I miss a group session?",
]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load(url: str, args: argparse.Namespace, now: datetime) -> tuple[float, int]:
    started = time.perf_counter()
    engine = make_engine(url)
    upgrade(engine)
    rng = random.Random(args.seed)
    with session_scope(make_sessionmaker(engine)) as db:
        a = accounts.create_program(db, "alpha", "Alpha Counseling", time_zone="America/New_York")
        b = accounts.create_program(db, "bravo", "Bravo Counseling", time_zone="Europe/Paris")
        accounts.create_user(
            db, "counselor@bench.tandem.test", "Bench Counselor", "counselor", PASSWORD, [a.id]
        )
        patients = []
        for i in range(100):
            patient = Patient(
                program_id=a.id,
                family=f"Family{i}",
                given="Bench",
                family_lower=f"family{i}",
                given_lower="bench",
            )
            db.add(patient)
            patients.append(patient)
        db.flush()
        program_ids = [a.id, b.id]
    rows, messages = [], []
    next_id = 1
    for program_id in program_ids:
        count = args.open + (args.closed if program_id == program_ids[0] else 0)
        for i in range(count):
            closed = i >= args.open
            kind = "callback" if rng.random() < 0.33 else "question"
            text_ = rng.choice(TEXTS)
            asked = now - timedelta(minutes=rng.randint(1, 60 * 24 * 14))
            patient = (
                rng.choice(patients).id
                if program_id == program_ids[0] and rng.random() < 0.2
                else None
            )
            rows.append(
                {
                    "id": next_id,
                    "program_id": program_id,
                    "patient_id": patient,
                    "kind": kind,
                    "status": "closed" if closed else rng.choice(("new", "new", "assigned")),
                    "urgent": rng.random() < 0.1,
                    "crisis": "",
                    "preview": text_,
                    "name": rng.choice(("", "Sam", "A worried mother")),
                    "phone": "555 0100" if kind == "callback" else "",
                    "window_start": asked + timedelta(days=1) if kind == "callback" else None,
                    "window_end": asked + timedelta(days=1, hours=2)
                    if kind == "callback"
                    else None,
                    "token_hash": None if patient else f"{next_id:064x}",
                    "asked_at": asked,
                }
            )
            messages.append(
                {
                    "question_id": next_id,
                    "program_id": program_id,
                    "patient_id": patient,
                    "author": "asker",
                    "body": text_,
                    "sent_at": asked,
                }
            )
            next_id += 1
    with engine.begin() as conn:
        conn.execute(insert(QuestionRow), rows)
        conn.execute(insert(MessageRow), messages)
    engine.dispose()
    return time.perf_counter() - started, len(rows)


def run_engine(
    label: str, url: str, args: argparse.Namespace, sqlite_path: str | None
) -> list[str]:
    app = create_app(Settings(database_url=url, cookie_secure=True))
    captured: list[tuple[str, Any]] = []
    shown = 0
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as client:
        login = client.get("/login").text
        csrf = login.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        answer = client.post(
            "/login",
            data={
                "email": "counselor@bench.tandem.test",
                "password": PASSWORD,
                "csrf_token": csrf,
                "next": "/questions",
            },
        )
        assert answer.status_code == 303, answer.text

        def run() -> None:
            nonlocal shown
            page = client.get("/questions")
            assert page.status_code == 200
            shown = page.text.count('<li class="queue-row')

        def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *a: Any) -> None:
            if statement.lstrip().upper().startswith("SELECT"):
                captured.append((statement, parameters))

        run()
        event.listen(app.state.engine, "before_cursor_execute", capture)
        run()
        event.remove(app.state.engine, "before_cursor_execute", capture)
        page = _timed("page GET /questions", args.runs, run)
    app.state.engine.dispose()

    if sqlite_path is not None:
        conn: Any = sqlite3.connect(sqlite_path)

        def bare_run() -> None:
            for sql, params in captured:
                conn.execute(sql, params).fetchall()
    else:
        conn = psycopg.connect(_libpq(url))

        def bare_run() -> None:
            with conn.cursor() as cur:
                for sql, params in captured:
                    cur.execute(sql, params)
                    cur.fetchall()
            conn.commit()

    bare = _timed(f"same {len(captured)} SELECTs, bare driver", args.runs, bare_run)
    conn.close()

    def line(t: Timing) -> str:
        out = (
            f"  {t.label:<34} p50 {t.p(0.5):7.1f} ms   p95 {t.p(0.95):7.1f} ms   "
            f"(CPU p50 {t.cpu_p(0.5):6.1f} ms, p95 {t.cpu_p(0.95):6.1f} ms; n={len(t.seconds)})"
        )
        if t is not bare:
            out += (
                f"   x{t.p(0.5) / bare.p(0.5):.1f} of bare at p50, "
                f"x{t.p(0.95) / bare.p(0.95):.1f} at p95"
            )
        return out

    verdict = "MET" if page.p(0.95) < 100 else "NOT MET"
    load_now = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return [
        f"{label}: {shown} open questions shown in the queue",
        line(page),
        line(bare),
        f"  target: page p95 < 100 ms -> {verdict} ({page.p(0.95):.1f} ms wall, "
        f"{page.cpu_p(0.95):.1f} ms CPU; load average {load_now:.1f} after)",
    ]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--open", type=int, default=1000, help="open questions (default 1000)")
    parser.add_argument("--closed", type=int, default=2000, help="closed ones (default 2000)")
    parser.add_argument("--runs", type=int, default=100, help="timed runs (default 100)")
    parser.add_argument("--engine", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--postgres-url", default=DEFAULT_PG)
    parser.add_argument("--quick", action="store_true", help="20 runs")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    if args.quick:
        args.runs = min(args.runs, 20)
    now = datetime.now(UTC)
    report: list[str] = []
    load_avg = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    if args.engine in ("sqlite", "both"):
        workdir = tempfile.mkdtemp(prefix="tandem-triage-")
        path = os.path.join(workdir, "triage.db")
        seconds, total = load(f"sqlite:///{path}", args, now)
        log(f"SQLite: {total} questions loaded in {seconds:.1f} s; timing")
        report += run_engine(f"SQLite {sqlite3.sqlite_version}", f"sqlite:///{path}", args, path)
        shutil.rmtree(workdir, ignore_errors=True)
    if args.engine in ("postgresql", "both"):
        failed = recreate_postgres(args.postgres_url)
        if failed is not None:
            report.append(f"PostgreSQL: SKIPPED ({failed})")
        else:
            seconds, total = load(args.postgres_url, args, now)
            with psycopg.connect(_libpq(args.postgres_url), autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE")
                version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
            log(f"PostgreSQL: {total} questions loaded in {seconds:.1f} s; timing")
            report += run_engine(f"PostgreSQL {version}", args.postgres_url, args, None)
            drop_postgres(args.postgres_url)
    print(
        f"bench/triage.py  Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"load average {load_avg[0]:.1f} at start"
    )
    print("\n".join(report))


if __name__ == "__main__":
    main()
