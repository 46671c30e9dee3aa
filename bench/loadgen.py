"""A small HTTP/1.1 load generator, run as a process of its own beside the server.

    .venv/bin/python bench/loadgen.py PLAN.json > RESULT.json

bench/api.py writes the plan and reads the result; this file needs nothing but the standard
library (and uvloop when installed). Each connection keeps its socket alive and sends ready-made
request bytes, so the client spends tens of microseconds a request rather than the milliseconds
an HTTP library would: on a small machine the load generator must not eat the server's CPU.

The plan (JSON):

    host, port          where the server listens
    connections         how many at once (each has one request in flight at a time)
    seconds             timed window, at most (after the warm-up)
    limit               timed requests per connection, at most (0: no limit)
    warmup              untimed requests per connection before the window opens
    seed                the kind each request is (weighted) and where each list starts
    kinds               [{name, weight, expect: [status...], requests: [raw request text...]}]

Every connection warms up, then all wait for one another and the window opens. A connection takes
the next request of the kind it drew, round-robin through that kind's list (connection i starts
at i), so runs with the same plan send the same requests. The result (JSON on stdout) has, per
kind, every timed latency in ms, the status counts and up to three sample error bodies; the
window's wall time; and this process's CPU seconds.
"""

from __future__ import annotations

import asyncio
import json
import random
import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Kind:
    name: str
    weight: float
    expect: set[int]
    requests: list[bytes]
    latencies: list[float] = field(default_factory=list)
    status: dict[str, int] = field(default_factory=dict)
    samples: list[str] = field(default_factory=list)

    def count(self, key: str) -> None:
        self.status[key] = self.status.get(key, 0) + 1


class Closed(Exception):
    pass


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool, bytes]:
    """Status, whether the server closes the connection, and the body."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length, chunked, close = 0, False, False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        key = name.strip().lower()
        if key == b"content-length":
            length = int(value)
        elif key == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif key == b"connection":
            close = b"close" in value.lower()
    if not chunked:
        return status, close, await reader.readexactly(length) if length else b""
    body = bytearray()
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return status, close, bytes(body)
        body += await reader.readexactly(size + 2)
        del body[-2:]


async def run(plan: dict[str, Any]) -> dict[str, Any]:
    host, port = plan["host"], int(plan["port"])
    connections = int(plan["connections"])
    seconds, limit, warmup = float(plan["seconds"]), int(plan["limit"]), int(plan["warmup"])
    kinds = [
        Kind(k["name"], float(k["weight"]), set(k["expect"]), [r.encode() for r in k["requests"]])
        for k in plan["kinds"]
    ]
    weights = [k.weight for k in kinds]
    ready = 0
    window_open = asyncio.Event()
    clock = time.perf_counter
    opened = [0.0]
    ended: list[float] = []
    transport_errors = [0]

    def arrive() -> None:
        nonlocal ready
        ready += 1
        if ready == connections:
            opened[0] = clock()
            window_open.set()

    async def connection(index: int) -> None:
        rng = random.Random(f"{plan['seed']}-{index}")
        cursor = {k.name: index for k in kinds}
        done = 0
        timed = False
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            arrive()  # the others must not wait for this one
            raise
        try:
            while True:
                if not timed and done >= warmup:
                    arrive()
                    await window_open.wait()
                    timed, done = True, 0
                if timed and ((limit and done >= limit) or clock() - opened[0] >= seconds):
                    break
                kind = kinds[0] if len(kinds) == 1 else rng.choices(kinds, weights)[0]
                request = kind.requests[cursor[kind.name] % len(kind.requests)]
                cursor[kind.name] += connections
                start = clock()
                try:
                    writer.write(request)
                    status, close, body = await read_response(reader)
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
                    transport_errors[0] += 1
                    if timed:
                        kind.count(type(exc).__name__)
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                    done += 1
                    continue
                elapsed = clock() - start
                done += 1
                if timed:
                    kind.latencies.append(elapsed * 1000)
                    kind.count(str(status))
                    if status not in kind.expect and len(kind.samples) < 3:
                        kind.samples.append(f"{status}: {body[:300].decode(errors='replace')}")
                if close:
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
        finally:
            if not timed:
                arrive()
            ended.append(clock())
            writer.close()

    await asyncio.gather(*(connection(i) for i in range(connections)))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "wall": max(ended) - opened[0],
        "transport_errors": transport_errors[0],
        "client_cpu": usage.ru_utime + usage.ru_stime,
        "kinds": {
            k.name: {
                "latencies_ms": k.latencies,
                "status": k.status,
                "errors": sum(
                    n for s, n in k.status.items() if not s.isdigit() or int(s) not in k.expect
                ),
                "samples": k.samples,
            }
            for k in kinds
        },
    }


def main() -> None:
    with open(sys.argv[1]) as f:
        plan = json.load(f)
    try:
        import uvloop  # type: ignore[import-not-found,unused-ignore]

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    json.dump(runner(run(plan)), sys.stdout)


if __name__ == "__main__":
    main()
