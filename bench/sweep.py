"""One scheduler sweep at hospital size, beside the same SQL run bare (issue 9, speed).

    .venv/bin/python bench/sweep.py              # 10,000 monitored patients, 50,000 plans, both engines
    .venv/bin/python bench/sweep.py --quick      # 2,000 and 10,000: a smoke run
    .venv/bin/python bench/sweep.py --load-only  # build (or check) the cached loads, time nothing

The two sweeps the scheduler runs on its own (`tandem serve` / `tandem worker`):

  overdue       withdrawal.census.raise_overdue_everywhere: reassessments overdue past the
                protocol's grace on every detox unit reach the prescriber
  missed doses  medications.missed_doses.sweep_missed_doses_everywhere: plans whose doses went
                missed (or unrecorded) in a run as long as the monograph's threshold

Each is timed as the job runs it, in a transaction that is rolled back after each run (so every
run finds the same rows due), beside the SELECTs it issued replayed through the bare driver
(sqlite3 / psycopg) in the same run. The first run in the process is reported apart: it parses
the plans it reads for the first time (`plans.stored_plan` keeps them), and stores each plan's
next-check time (`medication_missed_checks`) where none holds yet. The missed-dose sweep is
also timed after a busy quarter of an hour (one plan in 20 with a record written since: their
stored checks no longer hold) and with no stored check at all (the first sweep after the
upgrade that adds them); what is changed for that, in the same rolled-back transaction, is not
timed.

The data (loaded once through the bare driver, executemany on SQLite and COPY on PostgreSQL, and
kept under --cache-dir keyed by the schema's head revision; a cache made under an older head is
migrated, one that cannot be is loaded again): one program, 20 detox units with the monitored
patients (each with a CIWA-Ar reassessment due from 3 hours ago to 4 hours ahead, one in 20
past the protocol's overdue grace and not yet escalated), and the dose plans (baclofen
titrations and fixed doses, acamprosate three times daily) on other patients too, started up to
two weeks ago, with the last `--days` days of doses recorded: nine plans in ten given as
planned (a few held, some reported by the patient), one in twenty-five recorded patchily, one
in sixteen not recorded for the last one to three days (a run of missed doses). The overdue
grace is unset in the shipped example protocol, so the bench stores a copy with a synthetic
60-minute grace for CIWA-Ar (marked as such): the bench's value, not a clinical one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from alembic.script import ScriptDirectory
from harness import Bare, Capture, Writer, libpq, quantile
from sqlalchemy import insert, text
from sqlalchemy.engine import make_url

from tandem.access import accounts
from tandem.access.guard import system_access
from tandem.clock import zone
from tandem.medications.dose_plan import DosePlan, maintenance, titration
from tandem.medications.missed_doses import sweep_missed_doses
from tandem.medications.schedule import planned_through
from tandem.medications.storage import plan_digest
from tandem.storage.db import (
    make_engine,
    make_sessionmaker,
    refresh_planner_statistics,
    session_scope,
)
from tandem.storage.migrate import alembic_config, upgrade
from tandem.storage.models import Patient
from tandem.withdrawal.census import raise_overdue
from tandem.withdrawal.protocol import load_protocol, protocol_from_mapping
from tandem.withdrawal.protocols import set_program_protocol

DEFAULT_PG = os.environ.get(
    "TANDEM_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/tandem_bench_sweep"
)
ZONE = "America/New_York"
CACHE_VERSION = 1
UNITS = 20
TARGET_SECONDS = 2.0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def schema_head() -> str:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head() or ""


@dataclass
class Loaded:
    key: str
    head: str
    url: str
    anchor: str  # the "now" the data was built for; every timing uses it
    monitored: int
    plans: int
    rows: int
    load_seconds: float

    @property
    def now(self) -> datetime:
        return datetime.fromisoformat(self.anchor)


# --------------------------------------------------------------------------- the data


def _bench_protocol() -> Any:
    """The shipped example with a synthetic overdue grace for CIWA-Ar, so that the overdue sweep
    has escalations to raise. A benchmark's value, marked unverified; not a clinical one."""
    document = load_protocol().model_dump(mode="json")
    for rule in document["instruments"]["ciwa_ar"]["escalations"]:
        if rule["kind"] == "overdue":
            rule["minutes"] = 60
            rule["source"] = {
                **(rule.get("source") or {}),
                "unverified": True,
                "note": "bench/sweep.py: a synthetic 60-minute grace to time the sweep; "
                "not a clinical threshold",
            }
    document["id"] = "bench-sweep"
    return protocol_from_mapping(document, "bench/sweep.py")


_PLAN_JSON: dict[tuple[str, date], tuple[str, str, DosePlan]] = {}


def _plan(kind: str, start: date) -> tuple[str, str, DosePlan]:
    """A plan from the real plan core (one per kind and start day, as JSON text), with the
    digest the app stores beside it."""
    key = (kind, start)
    if key not in _PLAN_JSON:
        if kind == "titration":
            plan = titration("baclofen", "5mg-tid", 5, 3, "20mg-tid", start)
        elif kind == "fixed":
            plan = maintenance("baclofen", "10mg-tid", start)
        else:
            plan = maintenance("acamprosate", "666mg-tid", start)
        stored = plan.to_dict()
        _PLAN_JSON[key] = (json.dumps(stored), plan_digest(stored), plan)
    return _PLAN_JSON[key]


def load(url: str, args: argparse.Namespace, anchor: datetime, key: str) -> Loaded:
    started = time.perf_counter()
    engine = make_engine(url)
    upgrade(engine)
    rng = random.Random(args.seed)  # noqa: S311 - synthetic data
    sessions = make_sessionmaker(engine)
    with session_scope(sessions) as db:
        program = accounts.create_program(
            db, "bench", "Bench hospital (synthetic)", time_zone=ZONE, synthetic=True
        )
        program_id = program.id
        prescriber = accounts.create_user(
            db,
            "prescriber@bench.tandem.test",
            "Bench Prescriber",
            "prescriber",
            "x" * 16,
            [program_id],
        )
        nurse = accounts.create_user(
            db, "nurse@bench.tandem.test", "Bench Nurse", "nurse", "x" * 16, [program_id]
        )
        prescriber_id, nurse_id = prescriber.id, nurse.id
        version_id = set_program_protocol(db, program_id, _bench_protocol()).version_id
    n_patients = max(args.monitored, args.plans // 2)
    patient_ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(n_patients)]
    with engine.begin() as conn:
        conn.execute(
            insert(Patient.__table__),
            [
                {
                    "id": pid,
                    "program_id": program_id,
                    "family": f"Sweep{i:05d}",
                    "given": "Sam",
                    "family_lower": f"sweep{i:05d}",
                    "given_lower": "sam",
                    "synthetic": True,
                }
                for i, pid in enumerate(patient_ids)
            ],
        )
    engine.dispose()
    writer = Writer(url)
    now = anchor
    tz = zone(ZONE)
    today = now.astimezone(tz).date()
    # Detox units, the monitored patients' episodes and their monitoring rows.
    writer.write(
        "units",
        ("id", "program_id", "code", "name", "kind"),
        [
            (u, program_id, f"detox{u}", f"Detox {u} (synthetic)", "detox")
            for u in range(1, UNITS + 1)
        ],
    )
    episodes, monitoring = [], []
    for i, pid in enumerate(patient_ids[: args.monitored]):
        unit = 1 + i % UNITS
        admitted = now - timedelta(hours=rng.randint(4, 96))
        episodes.append((i + 1, pid, program_id, unit, "detox", admitted, admitted))
        due = now + timedelta(minutes=rng.randint(-180, 240))
        overdue_at = due + timedelta(minutes=60)
        if rng.random() < 0.05:  # past the grace, not escalated yet: the sweep's work
            due = now - timedelta(minutes=rng.randint(61, 180))
            overdue_at = due + timedelta(minutes=60)
        elif overdue_at <= now:
            overdue_at = now + timedelta(minutes=rng.randint(1, 60))
        monitoring.append(
            (i + 1, i + 1, pid, program_id, unit, True, admitted, "ciwa_ar", 1000 + i, 9, "mild",
             "Mild", 1, due - timedelta(hours=2), due, 120, overdue_at, False, False, "[]", -1, 0,
             version_id, now)
        )  # fmt: skip
    writer.write(
        "episodes",
        ("id", "patient_id", "program_id", "unit_id", "phase", "admitted_at", "phase_started_at"),
        episodes,
    )
    writer.write(
        "withdrawal_monitoring",
        ("id", "episode_id", "patient_id", "program_id", "unit_id", "active", "admitted_at",
         "instrument_id", "last_assessment_id", "last_total", "band_id", "band_label",
         "band_rank", "last_assessed_at", "due_at", "interval_minutes", "overdue_alert_at",
         "overdue_alerted", "may_end", "trend", "alert_rank", "alert_count",
         "protocol_version_id", "updated_at"),
        monitoring,
    )  # fmt: skip
    writer.commit()
    log(f"  {args.monitored:,} monitored patients on {UNITS} units")
    # The dose plans, two a patient, with the last days of doses recorded.
    plan_cols = ("id", "patient_id", "program_id", "medication_id", "kind", "status",
                 "status_reason", "start_date", "plan", "plan_digest", "inputs", "prescriber_id",
                 "created_at")  # fmt: skip
    admin_cols = ("id", "patient_id", "program_id", "medication_id", "medication_text",
                  "dose_value", "dose_unit", "route", "status", "status_reason", "indication",
                  "administered_at", "performer_id", "dose_plan_id", "note", "recorded_at",
                  "override_reason")  # fmt: skip
    due_cols = ("administration_id", "dose_plan_id", "due_at")
    statement_cols = ("id", "patient_id", "program_id", "dose_plan_id", "medication_id", "due_at",
                      "time_slot", "dose_mg", "taken", "reason", "reported_at", "recorded_by")  # fmt: skip
    plan_id = admin_id = statement_id = 0
    since = now - timedelta(days=args.days)
    batch: dict[str, list[tuple[Any, ...]]] = {"p": [], "a": [], "d": [], "s": []}

    def flush() -> None:
        writer.write("medication_dose_plans", plan_cols, batch["p"])
        writer.write("medication_administrations", admin_cols, batch["a"])
        writer.write("medication_administration_dues", due_cols, batch["d"])
        writer.write("medication_statements", statement_cols, batch["s"])
        writer.commit()
        for rows in batch.values():
            rows.clear()

    for n in range(args.plans):
        pid = patient_ids[n // 2]
        roll = rng.random()
        kind = "titration" if roll < 0.35 else "fixed" if roll < 0.6 else "acamprosate"
        start = today - timedelta(days=rng.randint(0, 14))
        plan_text, digest, plan = _plan(kind, start)
        plan_id += 1
        written = datetime.combine(start, datetime.min.time(), tz) + timedelta(hours=7)
        batch["p"].append(
            (plan_id, pid, program_id, plan.medication_id,
             "maintenance" if kind != "titration" else "titration", "active", "", start,
             plan_text, digest, '{"bench": true}', prescriber_id, written)
        )  # fmt: skip
        habit = rng.random()
        silent_from = now - timedelta(hours=rng.randint(24, 72)) if habit < 0.0625 else None
        for dose in planned_through(plan, today, tz):
            if dose.due_at < since or dose.due_at < written:
                continue
            if dose.due_at > now - timedelta(minutes=rng.randint(20, 300)):
                break  # the latest doses are still to be recorded
            if silent_from is not None and dose.due_at >= silent_from:
                break
            if 0.0625 <= habit < 0.1025 and rng.random() < 0.5:
                continue  # patchy: half the doses not recorded
            if rng.random() < 0.05:
                statement_id += 1
                batch["s"].append(
                    (statement_id, pid, program_id, plan_id, plan.medication_id, dose.due_at,
                     dose.time_slot, dose.mg, True, "", dose.due_at + timedelta(hours=1), nurse_id)
                )  # fmt: skip
                continue
            given = rng.random() < 0.97
            at = dose.due_at + timedelta(minutes=rng.randint(-20, 60))
            admin_id += 1
            batch["a"].append(
                (admin_id, pid, program_id, plan.medication_id,
                 f"{plan.medication_id} {dose.mg:g} mg", dose.mg, "mg", "oral",
                 "completed" if given else "not-done", "" if given else "Held: asleep", "", at,
                 nurse_id, plan_id, "", at, "")
            )  # fmt: skip
            batch["d"].append((admin_id, plan_id, dose.due_at))
        if plan_id % 2000 == 0:
            flush()
            if plan_id % 10000 == 0:
                log(f"  {plan_id:,} plans, {writer.count:,} rows")
    flush()
    writer.finish(
        (
            "units",
            "episodes",
            "withdrawal_monitoring",
            "medication_dose_plans",
            "medication_administrations",
            "medication_statements",
        )  # fmt: skip
    )
    rows = writer.count
    writer.close()
    engine = make_engine(url)
    if url.startswith("postgresql"):
        with psycopg.connect(libpq(url), autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
    else:
        refresh_planner_statistics(engine)
    engine.dispose()
    return Loaded(
        key, schema_head(), url, anchor.isoformat(), args.monitored, args.plans, rows,
        time.perf_counter() - started,
    )  # fmt: skip


def _drop(url: str) -> str | None:
    """An empty database at `url` (the file removed, or the database dropped and created)."""
    if url.startswith("sqlite"):
        path = Path(make_url(url).database or "")
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return None
    name = make_url(url).database
    try:
        server = make_engine(
            make_url(url).set(database="postgres").render_as_string(hide_password=False),
            isolation_level="AUTOCOMMIT",
            connect_args={"connect_timeout": 3},
        )
        with server.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        server.dispose()
    except Exception as exc:  # no server or no rights: say so, carry on with SQLite
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    return None


def cached_or_load(url: str, args: argparse.Namespace, label: str) -> Loaded | str:
    """The cached load when it was built for the same sizes and seed: migrated first when the
    schema's head has moved on since (rebuilt if that fails); else a fresh load."""
    cache = Path(args.cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    key = f"v{CACHE_VERSION}-{args.monitored}-{args.plans}-{args.days}-{args.seed}"
    meta = cache / f"{label}.json"
    head = schema_head()
    if not args.fresh and meta.exists():
        found = Loaded(**json.loads(meta.read_text()))
        if found.key == key and found.url == url:
            try:
                engine = make_engine(url)
                if found.head != head:
                    log(f"{label}: cache built at {found.head}; migrating to {head}")
                    upgrade(engine)
                    # As after a load: a migration that rewrites rows leaves the planner's
                    # statistics stale (and, on PostgreSQL, dead rows to vacuum).
                    if url.startswith("postgresql"):
                        with psycopg.connect(libpq(url), autocommit=True) as conn:
                            conn.execute("VACUUM ANALYZE")
                    else:
                        refresh_planner_statistics(engine)
                    found.head = head
                    meta.write_text(json.dumps(asdict(found), indent=1))
                with engine.connect() as conn:
                    plans = conn.execute(
                        text("SELECT count(*) FROM medication_dose_plans")
                    ).scalar()
                engine.dispose()
                if plans == args.plans:
                    log(f"{label}: reusing the load in {url} (built for {found.anchor})")
                    return found
                log(f"{label}: cache holds {plans} plans, not {args.plans}; loading afresh")
            except Exception as exc:  # a missing, broken or unmigratable cache: build it again
                log(f"{label}: cache not usable ({type(exc).__name__}: {exc}); loading afresh")
    failed = _drop(url)
    if failed is not None:
        return failed
    anchor = datetime.now(UTC).replace(microsecond=0)
    log(f"{label}: loading {args.monitored:,} monitored patients and {args.plans:,} plans")
    loaded = load(url, args, anchor, key)
    meta.write_text(json.dumps(asdict(loaded), indent=1))
    log(f"{label}: {loaded.rows:,} rows in {loaded.load_seconds:.0f} s")
    return loaded


# --------------------------------------------------------------------------- timing


@dataclass
class Timing:
    label: str
    seconds: list[float]
    cpu: list[float]

    def p(self, q: float) -> float:
        return quantile(self.seconds, q) * 1000

    def cpu_p(self, q: float) -> float:
        return quantile(self.cpu, q) * 1000


def _timed(label: str, runs: int, run: Callable[[], None]) -> Timing:
    wall, cpu = [], []
    for _ in range(runs):
        started, cpu_started = time.perf_counter(), time.process_time()
        run()
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
    return Timing(label, wall, cpu)


def run_engine(label: str, loaded: Loaded, args: argparse.Namespace) -> list[str]:
    engine = make_engine(loaded.url)
    sessions = make_sessionmaker(engine)
    now = loaded.now
    counts: dict[str, int] = {}

    def overdue(keep: bool = False) -> None:
        # As `raise_overdue_everywhere` runs it; rolled back unless `keep`, so that every timed
        # run finds the same rows due.
        with sessions() as db:
            access = system_access(db, sessions, "withdrawal.overdue")
            units = db.scalars(text("SELECT id FROM units WHERE kind = 'detox' ORDER BY id")).all()
            counts["overdue"] = sum(len(raise_overdue(access, u, now)) for u in units)
            db.commit() if keep else db.rollback()

    def missed(keep: bool = False, before: str | None = None) -> None:
        with sessions() as db:
            if before is not None:
                db.execute(text(before))
                # Timed from here: what `before` changed is not the sweep's work.
                timer.update(wall=time.perf_counter(), cpu=time.process_time())
            counts["missed"] = len(sweep_missed_doses(system_access(db, sessions, "bench"), now))
            db.commit() if keep else db.rollback()

    timer: dict[str, float] = {}

    def timed_after(label: str, before: str) -> Timing:
        """The missed-dose sweep after `before` ran in its transaction (not timed)."""
        wall, cpu = [], []
        for _ in range(args.runs):
            missed(before=before)
            wall.append(time.perf_counter() - timer["wall"])
            cpu.append(time.process_time() - timer["cpu"])
        return Timing(label, wall, cpu)

    def both() -> None:
        overdue()
        missed()

    def first_sweep() -> None:
        overdue(keep=True)
        missed(keep=True)

    # The first sweep raises every escalation the load left due, and keeps them (on a cached
    # load they were raised by an earlier run: it finds none); the steady state that follows,
    # every minute and every 15 minutes, finds the rows due and nothing new to raise.
    first = _timed("first sweep (raises and commits)", 1, first_sweep)
    first_counts = dict(counts)
    timings = [
        first,
        _timed("overdue escalations", args.runs, overdue),
        _timed("missed doses", args.runs, missed),
        _timed("one sweep (both)", args.runs, both),
        # A busy quarter of an hour: doses recorded against one plan in 20 since the last
        # sweep (their stored checks no longer hold); and no stored check at all (the first
        # sweep after the upgrade that adds them, or after the rules change).
        timed_after(
            "missed, 1 plan in 20 recorded since",
            "UPDATE medication_plan_records SET records_version = records_version + 1 "
            "WHERE dose_plan_id % 20 = 0",
        ),
        timed_after("missed, no stored checks (cold)", "DELETE FROM medication_missed_checks"),
    ]
    statements: dict[str, Any] = {}
    for name, job in (("overdue", overdue), ("missed", missed)):
        with Capture(engine, selects_only=True) as capture:
            job()
        statements[name] = capture.found
    with engine.connect() as conn:
        candidates = conn.execute(
            text("SELECT count(*) FROM medication_dose_plans WHERE status = 'active'")
        ).scalar()
    engine.dispose()
    bare = Bare(loaded.url)
    bare_timings = [
        _timed(f"same {len(statements['overdue'])} SELECTs, bare", args.runs,
               lambda: bare.run(statements["overdue"], commit=False)),
        _timed(f"same {len(statements['missed'])} SELECTs, bare", args.runs,
               lambda: bare.run(statements["missed"], commit=False)),
    ]  # fmt: skip
    bare.close()

    def line(t: Timing, base: Timing | None = None) -> str:
        out = (
            f"  {t.label:<36} p50 {t.p(0.5):8.1f} ms   p95 {t.p(0.95):8.1f} ms   "
            f"(CPU p50 {t.cpu_p(0.5):7.1f} ms; n={len(t.seconds)})"
        )
        if base is not None:
            out += f"   x{t.p(0.5) / base.p(0.5):.1f} of bare at p50"
        return out

    sweep = timings[3]
    verdict = "MET" if sweep.p(0.95) < TARGET_SECONDS * 1000 else "NOT MET"
    load_now = os.getloadavg()[0]
    return [
        f"{label}: {loaded.monitored:,} monitored patients, {loaded.plans:,} plans "
        f"({candidates:,} active; {loaded.rows:,} rows; built for {loaded.anchor})",
        f"  escalations raised by the first sweep: {first_counts['overdue']} overdue, "
        f"{first_counts['missed']} missed-dose; by each later sweep: {counts['overdue']} and "
        f"{counts['missed']}",
        line(timings[0]),
        line(timings[1], bare_timings[0]),
        line(bare_timings[0]),
        line(timings[2], bare_timings[1]),
        line(bare_timings[1]),
        line(timings[3]),
        line(timings[4]),
        line(timings[5]),
        f"  target: one sweep < {TARGET_SECONDS:g} s -> {verdict} ({sweep.p(0.95):.0f} ms p95 "
        f"wall, {sweep.cpu_p(0.95):.0f} ms CPU; load average {load_now:.1f} after)",
    ]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--monitored", type=int, default=10000)
    parser.add_argument("--plans", type=int, default=50000)
    parser.add_argument("--days", type=int, default=4, help="days of doses recorded (default 4)")
    parser.add_argument("--runs", type=int, default=10, help="timed sweeps (default 10)")
    parser.add_argument("--engine", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--postgres-url", default=DEFAULT_PG)
    parser.add_argument(
        "--cache-dir",
        default=os.path.join(os.environ.get("TMPDIR", tempfile.gettempdir()), "tandem-bench-sweep"),
    )
    parser.add_argument("--fresh", action="store_true", help="load again even if cached")
    parser.add_argument("--load-only", action="store_true")
    parser.add_argument(
        "--quick", action="store_true", help="2,000 monitored, 10,000 plans, 3 runs"
    )
    parser.add_argument("--seed", type=int, default=9)
    args = parser.parse_args(argv)
    if args.quick:
        args.monitored, args.plans, args.runs = 2000, 10000, 3
    load_avg = os.getloadavg()
    report: list[str] = []
    targets: list[tuple[str, str]] = []
    if args.engine in ("sqlite", "both"):
        path = Path(args.cache_dir) / f"sweep-{args.monitored}-{args.plans}.db"
        Path(args.cache_dir).mkdir(parents=True, exist_ok=True)
        targets.append(("SQLite", f"sqlite:///{path}"))
    if args.engine in ("postgresql", "both"):
        targets.append(("PostgreSQL", args.postgres_url))
    for name, url in targets:
        found = cached_or_load(url, args, f"{name.lower()}-{args.monitored}-{args.plans}")
        if isinstance(found, str):
            report.append(f"{name}: SKIPPED ({found})")
            continue
        if not args.load_only:
            log(f"{name}: timing")
            report += run_engine(name, found, args)
    print(
        f"bench/sweep.py  Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"load average {load_avg[0]:.1f} at start, schema {schema_head()}"
    )
    print("\n".join(report))


if __name__ == "__main__":
    main()
