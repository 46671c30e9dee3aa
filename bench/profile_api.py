"""Where a request's CPU goes: py-spy on `tandem serve --workers N` under load, by layer.

    .venv/bin/pip install py-spy                       # once
    .venv/bin/python bench/profile_api.py              # SQLite, 10,000 patients, 20 s a scenario
    .venv/bin/python bench/profile_api.py --engine postgresql --quick

For each scenario (FHIR read by id, the chart page, the patient list) it drives the server from
bench/loadgen.py with one kind of request while `py-spy record --subprocesses` samples every
worker, then sorts each sampled stack into a layer (rules in LAYERS, first match wins) and
divides the CPU seen in each layer by the requests served: milliseconds of CPU per request.
py-spy runs with --gil (only the thread holding the GIL is sampled: Python's CPU time; py-spy's
own idle detection counted threads blocked in epoll or a pipe as busy) and --nonblocking (a
paused worker misses uvicorn's 5 s health check and is killed). CPU spent with the GIL released
(inside SQLite, the kernel's fsync, psycopg's wait) is not sampled: the /proc figure printed
beside the total includes it, so the difference is that time.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from api import (
    DEFAULT_PG,
    Loaded,
    fhir_requests,
    load_postgres,
    load_sqlite,
    page_requests,
    workload,
)
from harness import Served, serve
from harness import load as run_load
from rich.console import Console
from rich.table import Table

console = Console(width=None if sys.stdout.isatty() else 160)
PY_SPY = str(Path(sys.executable).with_name("py-spy"))

FRAMEWORK = "uvicorn / starlette / fastapi / anyio"
FRAMEWORK_CODE = (
    "uvicorn/",
    "starlette/",
    "fastapi/",
    "anyio/",
    "h11/",
    "httptools/",
    "asyncio/",
    "uvloop/",
    "threading.py",
    "queue.py",
    "concurrent/",
    "pydantic",
    "opentelemetry/",
)
DRIVER_LEAVES = ("do_execute (", "do_executemany (", "do_commit (", "psycopg/", "sqlite3")


def _has(stack: str, *needles: str) -> bool:
    return any(needle in stack for needle in needles)


def classify(frames: list[str]) -> str:
    """The layer a sampled stack (frames "function (file)", outermost first) belongs to: the
    first rule that matches, from the most specific step of a request to the least."""
    stack = ";".join(frames)
    sql = _has(stack, "sqlalchemy/", "psycopg/", "sqlite3")
    if _has(
        stack,
        "api_access (",
        "page_access (",
        "_session_for (",
        "find_token (",
        "find_session (",
        "actor_for (",
    ):
        return "auth: token / session lookup (incl. its SQL)"
    if _has(stack, "Session.commit (", "Session.flush (", "Session._autoflush ("):
        return "audit INSERT + COMMIT (flush, commit)"
    if "to_fhir (" in stack:
        if sql:
            return "ORM: lazy loads while mapping to FHIR"
        if _has(stack, "fhir/resources/", "fhir_core/", "pydantic"):
            return "fhir.resources validation + dump (pydantic)"
        return "FHIR mapping (to_fhir dicts)"
    if _has(stack, "jinja2/", "tandem/web/rendering.py"):
        return "ORM: lazy loads from templates" if sql else "Jinja rendering"
    if sql:
        return "ORM queries (route's own, incl. driver)"
    if _has(stack, "/json/", "JSONResponse.render ("):
        return "JSON encoding"
    leaf = frames[-1] if frames else ""
    if _has(leaf, *FRAMEWORK_CODE):  # incl. what our plumbing (the unit of work) calls
        return FRAMEWORK
    if "/tandem/" in stack:
        return "our route / service code"
    if _has(stack, *FRAMEWORK_CODE):
        return FRAMEWORK
    return "other (interpreter, GC, imports)"


def framework_part(frames: list[str]) -> str:
    """Which part of the framework a framework sample was in, by its innermost frame."""
    stack = ";".join(frames)
    leaf = frames[-1] if frames else ""
    if _has(stack, "run_sync_in_worker_thread (", "WorkerThread.", "run_in_threadpool (") or _has(
        leaf, "/threading.py", "/queue.py", "CapacityLimiter", "to_thread.py"
    ):
        return "thread-pool hops (each sync dependency and endpoint: anyio to_thread)"
    if _has(leaf, "starlette/middleware/base.py", "anyio/streams/memory.py", "_streams.py"):
        return "BaseHTTPMiddleware (@app.middleware('http'): security headers)"
    if _has(leaf, "starlette/routing.py") or ("fastapi/routing.py" in leaf and "match" in leaf):
        return "route matching"
    if _has(leaf, "fastapi/dependencies/", "pydantic"):
        return "dependency injection, parameter parsing"
    if "uvicorn/" in leaf:
        return "uvicorn: HTTP parsing and writing"
    if _has(leaf, "asyncio/", "anyio/", "contextlib.py", "uvloop"):
        return "event loop, tasks, cancel scopes (asyncio, anyio)"
    return "other framework (fastapi/starlette request plumbing, telemetry hooks)"


def read_raw(path: Path) -> tuple[Counter[tuple[str, bool]], Counter[str]]:
    """(layer, leaf in the DB driver) -> samples, and the framework layer's samples by leaf,
    from py-spy's raw (collapsed) output."""
    found: Counter[tuple[str, bool]] = Counter()
    framework: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        leaf = frames[-1] if frames else ""
        layer = classify(frames)
        found[(layer, any(d in leaf for d in DRIVER_LEAVES))] += int(count)
        if layer == FRAMEWORK:
            framework[framework_part(frames)] += int(count)
    return found, framework


SCENARIOS = {
    "read": "FHIR read by id: GET /fhir/Patient/{id}",
    "chart": "page: GET /patients/{id} (chart)",
    "list": "page: GET /patients (list, first pages and name searches)",
    "search": "FHIR search: GET /fhir/Patient?name=<prefix>",
}


def scenario_kinds(name: str, loaded: Loaded, seed: int) -> list[dict[str, object]]:
    rng = random.Random(f"{seed}-profile-{name}")
    creds, rows = loaded.credentials, loaded.rows
    if name == "read":
        requests = fhir_requests(workload("read", rows, 2_000, rng), creds.read_token)
    elif name == "search":
        requests = fhir_requests(workload("name", rows, 2_000, rng), creds.read_token)
    elif name == "chart":
        requests = page_requests(
            [f"/patients/{rng.choice(rows.home_ids)}" for _ in range(2_000)], creds.session_cookie
        )
    else:
        prefixes = [f"/patients?q={p}" for p in {w[1][:3] for w in rows.name_words[:400]}]
        requests = page_requests(["/patients", "/patients?page=2", *prefixes], creds.session_cookie)
    return [{"name": name, "weight": 1, "expect": [200], "requests": requests}]


def profile(
    served: Served, loaded: Loaded, name: str, args: argparse.Namespace, workdir: Path
) -> None:
    raw = workdir / f"{loaded.engine.lower()}-{name}.txt"
    spy = subprocess.Popen(
        [
            PY_SPY,
            "record",
            "--pid",
            str(served.process.pid),
            "--subprocesses",
            "--rate",
            str(args.rate),
            "--format",
            "raw",
            "--full-filenames",
            "--nolineno",
            "--gil",
            "--nonblocking",
            "--duration",
            str(int(args.seconds + 15)),
            "--output",
            str(raw),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(2)  # attached to every worker before the first request
    warmup = 3
    result = run_load(
        served,
        scenario_kinds(name, loaded, args.seed),
        args.clients,
        args.seconds,
        warmup=warmup,
        seed=args.seed,
    )
    _, errors = spy.communicate(timeout=args.seconds + 120)
    if spy.returncode != 0 or not raw.exists():
        raise SystemExit(f"py-spy failed ({spy.returncode}): {errors[-2000:]}")
    requests = result.total + warmup * args.clients
    samples, framework = read_raw(raw)
    per_request = 1000 / args.rate / requests  # ms of CPU a sample stands for, per request
    layers: Counter[str] = Counter()
    in_driver: Counter[str] = Counter()
    for (layer, driver), count in samples.items():
        layers[layer] += count
        if driver:
            in_driver[layer] += count
    total = sum(layers.values())
    table = Table(
        title=f"{loaded.engine}: {SCENARIOS[name]} — {args.clients} clients, {args.seconds:g} s, "
        f"{requests:,} requests ({result.total / result.wall:,.0f} req/s while sampled, "
        f"{result.errors} errors), py-spy {args.rate} Hz on {args.workers} workers"
    )
    for column, justify in (
        ("Layer", "left"),
        ("CPU ms/req", "right"),
        ("share", "right"),
        ("of which in DB driver ms/req", "right"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for layer, count in layers.most_common():
        table.add_row(
            layer,
            f"{count * per_request:.2f}",
            f"{100 * count / total:.0f}%",
            f"{in_driver[layer] * per_request:.2f}" if in_driver[layer] else "",
        )
    table.add_section()
    table.add_row(
        "total (py-spy samples)",
        f"{total * per_request:.2f}",
        "100%",
        f"{sum(in_driver.values()) * per_request:.2f}",
        style="bold",
    )
    table.add_row(
        "server CPU from /proc (user+system)", f"{result.server_cpu * 1000 / requests:.2f}", "", ""
    )
    console.print(table)
    detail = Table(
        title=f"{FRAMEWORK}: where its {layers[FRAMEWORK] * per_request:.2f} ms/req go (innermost frame)"
    )
    detail.add_column("Part (by innermost frame)")
    detail.add_column("CPU ms/req", justify="right")
    for part, count in framework.most_common():
        detail.add_row(part, f"{count * per_request:.2f}")
    console.print(detail)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--engine", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument(
        "--scenarios",
        default="read,chart,list",
        help=f"comma-separated, of {', '.join(SCENARIOS)} (default read,chart,list)",
    )
    parser.add_argument("--quick", action="store_true", help="2,000 patients, 8 s a scenario")
    parser.add_argument("--postgres-url", default=DEFAULT_PG)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep-raw", type=Path, help="keep py-spy's raw stacks in this folder")
    args = parser.parse_args()
    if args.quick:
        args.patients, args.seconds = 2_000, 8.0
    if not Path(PY_SPY).exists():
        sys.exit(f"no {PY_SPY}: install it with `.venv/bin/pip install py-spy`")
    now = datetime.now(UTC)
    workdir = Path(tempfile.mkdtemp(prefix="tandem-profile-"))
    try:
        if args.engine == "sqlite":
            loaded = load_sqlite(str(workdir), args.patients, args.seed, now)
        else:
            result = load_postgres(args.postgres_url, args.patients, args.seed, now, False)
            if isinstance(result, str):
                sys.exit(f"PostgreSQL: {result}")
            loaded = result
        try:
            with serve(loaded.url, args.workers) as served:
                for name in args.scenarios.split(","):
                    profile(served, loaded, name.strip(), args, workdir)
        finally:
            loaded.cleanup()
        if args.keep_raw:
            args.keep_raw.mkdir(parents=True, exist_ok=True)
            for raw in workdir.glob("*.txt"):
                shutil.copy(raw, args.keep_raw / raw.name)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    console.print(f"{os.cpu_count()} CPUs, load average {load} at the end.")


if __name__ == "__main__":
    main()
