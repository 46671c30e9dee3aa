"""How fast can the chosen stack serve one audited FHIR read on this machine? The floor under
`bench/api.py`'s targets, measured in the same run as Tandem itself.

    .venv/bin/python bench/floor.py                      # SQLite and PostgreSQL, 2,000 patients
    .venv/bin/python bench/floor.py --engine sqlite --seconds 10 --concurrency 1,8,32

Each rung is served the way Tandem is (uvicorn, `--workers N`, the same loopback port handling)
and driven by the same load generator (bench/loadgen.py, another process) with the same reads
of patients by id, so the rows can be compared directly:

1. `asgi`: a bare ASGI callable answering a fixed body: uvicorn alone.
2. `fastapi`: an `async def` FastAPI route answering the fixed body: the framework.
3. `audited`: a plain `def` FastAPI route (thread pool, as Tandem's) doing the least a Tandem
   read must: the bearer token and its user, the user's programs, the patient, the audit row,
   a durable commit, JSON by hand, through SQLAlchemy Core (no ORM, no FHIR models).
4. `Tandem`: `tandem serve`, `GET /fhir/Patient/{id}`.

It prints req/s, latencies and the server's CPU per request (from /proc) for each rung at each
concurrency, and what a 1,000 req/s target at 8 clients would need in CPU per request.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from typing import Any

from api import DEFAULT_PG, Loaded, fhir_requests, load_postgres, load_sqlite, workload
from harness import load, quantile, serve
from rich.console import Console
from rich.table import Table

console = Console(width=None if sys.stdout.isatty() else 160)

RUNGS = (
    ("asgi", "floor_app:asgi"),
    ("fastapi", "floor_app:fastapi"),
    ("audited", "floor_app:audited"),
    ("Tandem", None),
)


def measure(
    loaded: Loaded, args: argparse.Namespace
) -> list[tuple[str, int, float, float, float, float, int]]:
    rng = random.Random(args.seed)
    requests = fhir_requests(workload("read", loaded.rows, 2_000, rng), loaded.token)
    kinds: list[dict[str, Any]] = [
        {"name": "read", "weight": 1, "expect": [200], "requests": requests}
    ]
    rows = []
    for rung, app in RUNGS:
        with serve(loaded.url, args.workers, app=app) as served:
            for clients in args.concurrency:
                result = load(served, kinds, clients, args.seconds, warmup=5, seed=args.seed)
                latencies = result.latencies()
                rate = len(latencies) / result.wall
                cpu = result.server_cpu * 1000 / max(1, result.total)
                rows.append(
                    (
                        rung,
                        clients,
                        rate,
                        quantile(latencies, 0.5),
                        quantile(latencies, 0.95),
                        cpu,
                        result.errors + result.transport_errors,
                    )
                )
                console.print(
                    f"  {loaded.engine}: {rung:<8} {clients:>3} clients {rate:8.0f} req/s"
                    f"  p95 {quantile(latencies, 0.95):7.2f} ms  server CPU {cpu:.2f} ms/req"
                    f"  {result.errors + result.transport_errors} errors"
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=2_000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--concurrency", type=lambda v: [int(x) for x in v.split(",")], default=[1, 8, 32]
    )
    parser.add_argument("--engine", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--postgres-url", default=DEFAULT_PG)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    now = datetime.now(UTC)
    workdir = tempfile.mkdtemp(prefix="tandem-floor-")
    table = Table(
        title=f"One audited read by id, {args.seconds:g} s per row, `--workers {args.workers}`"
    )
    for column in ("Engine", "Rung", "Clients", "req/s", "p50 ms", "p95 ms", "CPU ms/req"):
        table.add_column(column, justify="left" if column in ("Engine", "Rung") else "right")
    table.add_column("errors", justify="right")
    try:
        engines: list[Loaded] = []
        if args.engine in ("sqlite", "both"):
            engines.append(load_sqlite(workdir, args.patients, args.seed, now))
        if args.engine in ("postgresql", "both"):
            pg = load_postgres(args.postgres_url, args.patients, args.seed, now, False)
            if isinstance(pg, str):
                console.print(f"PostgreSQL skipped: {pg}")
            else:
                engines.append(pg)
        for loaded in engines:
            try:
                for rung, clients, rate, p50, p95, cpu, errors in measure(loaded, args):
                    table.add_row(
                        loaded.engine,
                        rung,
                        str(clients),
                        f"{rate:,.0f}",
                        f"{p50:.2f}",
                        f"{p95:.2f}",
                        f"{cpu:.2f}",
                        str(errors),
                    )
                table.add_section()
            finally:
                loaded.cleanup()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    console.print(table)
    cpus = os.cpu_count() or 1
    console.print(
        f"{cpus} CPUs (load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}): 1,000 req/s"
        f" needs at most {cpus * 1000 / 1000:.1f} ms of server CPU a request, less what the load"
        " generator takes."
    )


if __name__ == "__main__":
    main()
