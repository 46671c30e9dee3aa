"""What consent (42 CFR Part 2) costs the FHIR API: reads and searches with the consent checks
beside the same requests without them, at 10,000 patients with several consents each.

    .venv/bin/python bench/consent.py            # 10,000 patients x 3 consents, both engines
    .venv/bin/python bench/consent.py --quick    # 2,000 patients, 60 requests a kind: a smoke run

For each engine: a freshly migrated database; program A (the patients' program, 90 %) and B;
every patient with `--consents` consents (one naming program B for treatment, valid for two of
three patients and revoked or expired for the others; the rest naming someone outside, or for
payment), bulk-loaded. The real app in-process (TestClient), with bearer tokens of a nurse of A
and a nurse of B. The requests, per patient drawn at random:

  GET /fhir/Patient/{id}                    read by id
  GET /fhir/Observation?patient={id}        search by patient (the policy, visible(), audit)
  GET /fhir/MedicationRequest?patient={id}  search by patient (a status per program)

Arms, interleaved request by request on the same patients (medians reported, wall and CPU):

  own, consent off    nurse of A, the access layer as before consent (no consent input at all)
  own, consent on     nurse of A: decisions about their own patients load no consent
  other, under consent  nurse of B reading A's patients that consented (one indexed query per
                      request loads the patient's consents; the policy judges them)
  bare lookup         that query alone through the bare driver (sqlite3 / psycopg)

Ratios: own on / own off (the price every request pays), other under consent / own off (the
price of a decision that turns on consent). Target: both within 1.10.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
from fastapi.testclient import TestClient
from sqlalchemy import insert, text
from sqlalchemy.engine import make_url

from tandem.access import accounts, queries
from tandem.access.credentials import create_token
from tandem.access.guard import Access
from tandem.access.policy import NO_CONSENTS, Consents, PatientRef, Visibility
from tandem.access.policy import visibility as policy_visibility
from tandem.choice.consent_storage import ConsentRow
from tandem.settings import Settings
from tandem.storage.db import make_engine, make_sessionmaker, session_scope
from tandem.storage.migrate import upgrade
from tandem.storage.models import Patient, User
from tandem.web.app import create_app

DEFAULT_PG = os.environ.get(
    "TANDEM_BENCH_POSTGRES_URL",
    "postgresql+psycopg://postgres@127.0.0.1:5432/tandem_bench_consent",
)
NOW = datetime.now(UTC)
LOOKUP = (
    "SELECT id, purpose, signed_at, recipient_program_id, recipient_name, information, "
    "expires_at, revoked_at, ended_at FROM consents WHERE patient_id = {p} "
    "ORDER BY signed_at DESC, id DESC"
)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Loaded:
    url: str
    consented: list[str]  # patients of A whose consent names program B (valid)
    nurse_a: str
    nurse_b: str


def load(url: str, patients: int, consents: int, seed: int) -> Loaded:
    rng = random.Random(seed)
    engine = make_engine(url)
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    with session_scope(sessions) as db:
        a = accounts.create_program(db, "alpha", "Alpha", time_zone="America/New_York")
        b = accounts.create_program(db, "bravo", "Bravo", time_zone="America/New_York")
        tokens = []
        for name, program in (("a", a), ("b", b)):
            user = accounts.create_user(
                db,
                f"nurse-{name}@bench.test",
                f"Nurse {name}",
                "nurse",
                "bench-password-1",
                [program.id],
            )
            db.flush()
            secret, _ = create_token(db, user, ["user/*.rs"], "bench", NOW)
            tokens.append(secret)
        program_a, program_b = a.id, b.id
        recorder = db.query(User.id).filter(User.email == "nurse-a@bench.test").scalar()
    patient_rows, consent_rows, consented = [], [], []
    for i in range(patients):
        pid = f"00000000-0000-4000-8000-{i:012d}"
        program = program_a if i % 10 else program_b
        patient_rows.append(
            {
                "id": pid,
                "program_id": program,
                "family": f"Family{i}",
                "given": "Pat",
                "family_lower": f"family{i}",
                "given_lower": "pat",
                "active": True,
                "synthetic": True,
                "version_id": 1,
                "created_at": NOW,
                "updated_at": NOW,
            }
        )
        for k in range(consents):
            signed = NOW - timedelta(days=rng.randint(1, 300))
            row: dict[str, Any] = {
                "patient_id": pid,
                "program_id": program,
                "recipient_program_id": None,
                "recipient_name": f"Clinic {rng.randint(1, 50)}",
                "purpose": "TREAT" if k % 2 == 0 else "HPAYMT",
                "purpose_text": "",
                "information": "all" if rng.random() < 0.5 else "medications,assessments",
                "expires_on": None,
                "expires_at": NOW + timedelta(days=rng.randint(1, 300)),
                "expiry_event": "",
                "ended_at": None,
                "signed_on": date(signed.year, signed.month, signed.day),
                "signed_at": signed,
                "signed_by": "Pat",
                "signer_role": "patient",
                "recorded_by": recorder,
                "recorded_at": signed,
                "revoked_at": None,
                "revoked_by": None,
                "revocation_note": "",
            }
            if k == 0 and program == program_a:
                row.update(
                    recipient_program_id=program_b,
                    recipient_name="Bravo",
                    purpose="TREAT",
                    information="all",
                )
                fate = i % 3
                if fate == 1:
                    row["revoked_at"] = NOW - timedelta(days=1)
                elif fate == 2:
                    row["expires_at"] = NOW - timedelta(days=1)
                else:
                    consented.append(pid)
            consent_rows.append(row)
    with engine.begin() as conn:
        patient_columns = set(Patient.__table__.columns.keys())
        conn.execute(
            insert(Patient.__table__),
            [{k: v for k, v in r.items() if k in patient_columns} for r in patient_rows],
        )
        for start in range(0, len(consent_rows), 5000):
            conn.execute(insert(ConsentRow.__table__), consent_rows[start : start + 5000])
        if engine.dialect.name == "postgresql":
            conn.execute(text("ANALYZE"))
    engine.dispose()
    return Loaded(url, consented, tokens[0], tokens[1])


@contextmanager
def consent_off() -> Iterator[None]:
    """The access layer as it was before consent: no consent input to any decision, and a
    search's patient looked up as before (the ORM row, no consents with it)."""
    saved = Access.consents_for, Access.visibility, queries.locate_patient

    def locate(access: Access, patient_id: str) -> PatientRef | None:
        patient = access.db.get(Patient, patient_id)
        return queries.patient_ref(patient) if patient is not None else None

    def no_consents(self: Access, patient: PatientRef | None) -> Consents:
        return NO_CONSENTS

    def plain_visibility(self: Access, resource_type: str = "Patient") -> Visibility:
        return policy_visibility(self.actor, resource_type)

    Access.consents_for = no_consents  # type: ignore[method-assign]
    Access.visibility = plain_visibility  # type: ignore[method-assign]
    queries.locate_patient = locate
    try:
        yield
    finally:
        Access.consents_for, Access.visibility, queries.locate_patient = saved  # type: ignore[method-assign]


ARMS = ("own, consent off", "own, consent on", "other, under consent")
REQUESTS = (
    ("read", "/fhir/Patient/{p}"),
    ("search Observation", "/fhir/Observation?patient={p}"),
    ("search MedicationRequest", "/fhir/MedicationRequest?patient={p}"),
)


def one(client: TestClient, token: str, path: str) -> tuple[float, float]:
    """One request: its wall time and the CPU time this process spent on it (ms). The app runs
    in this process, so CPU time is Tandem's own work, steadier than wall time on a shared
    machine; the database server's work shows in the wall time only."""
    wall, cpu = time.perf_counter(), time.process_time()
    response = client.get(path, headers={"Authorization": f"Bearer {token}"})
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if response.status_code != 200:
        raise SystemExit(f"{path} answered {response.status_code}: {response.text[:200]}")
    return wall * 1000, cpu * 1000


def bare_lookup(url: str, patients: list[str]) -> float:
    if url.startswith("sqlite"):
        conn: Any = sqlite3.connect(make_url(url).database or "")
        query = LOOKUP.format(p="?")
        args: Callable[[str], Any] = lambda p: (p,)  # noqa: E731
    else:
        conn = psycopg.connect(
            make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        )
        query = LOOKUP.format(p="%s")
        args = lambda p: (p,)  # noqa: E731
    started = time.perf_counter()
    for p in patients:
        cursor = conn.execute(query, args(p))
        cursor.fetchall()
    elapsed = (time.perf_counter() - started) / len(patients) * 1000
    conn.close()
    return elapsed


def run_engine(
    name: str, url: str, args: argparse.Namespace
) -> list[tuple[str, str, float, float]]:
    log(f"[{name}] loading {args.patients} patients x {args.consents} consents ...")
    started = time.perf_counter()
    loaded = load(url, args.patients, args.consents, args.seed)
    log(
        f"[{name}] loaded in {time.perf_counter() - started:.1f}s; {len(loaded.consented)} patients consented to B"
    )
    app = create_app(Settings(database_url=url))
    rng = random.Random(args.seed + 1)
    results: list[tuple[str, str, float, float]] = []
    with TestClient(app, base_url="https://testserver") as client:
        for label, path in REQUESTS:
            walls: dict[str, list[float]] = {arm: [] for arm in ARMS}
            cpus: dict[str, list[float]] = {arm: [] for arm in ARMS}
            sample = rng.sample(loaded.consented, args.requests)
            for p in sample[:10]:  # warm
                one(client, loaded.nurse_a, path.format(p=p))
            for p in sample:
                order = list(ARMS)
                rng.shuffle(
                    order
                )  # request by request, so drift on a shared machine hits every arm
                for arm in order:
                    token = loaded.nurse_b if arm.startswith("other") else loaded.nurse_a
                    if arm == "own, consent off":
                        with consent_off():
                            wall, cpu = one(client, token, path.format(p=p))
                    else:
                        wall, cpu = one(client, token, path.format(p=p))
                    walls[arm].append(wall)
                    cpus[arm].append(cpu)
            for arm in ARMS:
                results.append(
                    (label, arm, statistics.median(walls[arm]), statistics.median(cpus[arm]))
                )
    app.state.engine.dispose()
    sample = rng.sample(loaded.consented, min(len(loaded.consented), 500))
    bare = bare_lookup(url, sample)
    results.append(("consent lookup", "bare driver", bare, bare))
    return results


def report(name: str, results: list[tuple[str, str, float, float]]) -> bool:
    print(f"\n## {name} (medians per request)\n")
    print(f"{'request':<26}{'arm':<24}{'wall ms':>9}{'ratio':>7}{'CPU ms':>9}{'ratio':>7}")
    met = True
    base: dict[str, tuple[float, float]] = {}
    for label, arm, wall, cpu in results:
        if arm == "own, consent off":
            base[label] = (wall, cpu)
        if label in base:
            ratios = (wall / base[label][0], cpu / base[label][1])
            print(f"{label:<26}{arm:<24}{wall:>9.2f}{ratios[0]:>7.2f}{cpu:>9.2f}{ratios[1]:>7.2f}")
            if arm != "own, consent off" and min(ratios) > 1.10:
                met = False
        else:
            print(f"{label:<26}{arm:<24}{wall:>9.3f}")
    print(
        f"\ntarget (with consent within 1.10 of without, wall or CPU): {'met' if met else 'NOT met'}"
    )
    return met


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--consents", type=int, default=3)
    parser.add_argument("--requests", type=int, default=300, help="patients drawn per request kind")
    parser.add_argument("--engine", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--postgres-url", default=DEFAULT_PG)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.patients, args.requests = 2_000, 60
    print(f"# Consent checks vs none: {args.patients} patients x {args.consents} consents")
    if args.engine in ("sqlite", "both"):
        folder = tempfile.mkdtemp(prefix="tandem-bench-consent-")
        try:
            report("SQLite", run_engine("sqlite", f"sqlite:///{folder}/bench.db", args))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    if args.engine in ("postgresql", "both"):
        problem = recreate_postgres(args.postgres_url)
        if problem:
            print(f"\nPostgreSQL skipped: {problem}")
            return
        try:
            report("PostgreSQL", run_engine("postgresql", args.postgres_url, args))
        finally:
            drop_postgres(args.postgres_url)


def _server(url: str) -> Any:
    return make_engine(
        make_url(url).set(database="postgres").render_as_string(hide_password=False),
        isolation_level="AUTOCOMMIT",
        connect_args={"connect_timeout": 3},
    )


def recreate_postgres(url: str) -> str | None:
    name = make_url(url).database
    try:
        server = _server(url)
        with server.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        server.dispose()
    except Exception as exc:  # no server or no rights: say so, carry on
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    return None


def drop_postgres(url: str) -> None:
    server = _server(url)
    with server.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
    server.dispose()


if __name__ == "__main__":
    main()
