"""The yardstick every worker CPU figure is a multiple of: the bare endpoint's server CPU per
request (bench/baseline.py) under the intake bench's load, measured in the same run.

    .venv/bin/python -m bench.yardstick [--events 4000]

CPU per event moves with the machine (two days on one machine differed 2x), so the worker
benches (bench.enrichment, bench.pipeline) measure this beside their own figures and report
their CPU per job or event as a ratio to it. The load is the intake bench's: 32 keep-alive
connections of ~2 KB signed KeldairHR events from bench.loadgen, a warm-up first.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
from typing import Any

import orjson

from app.platform.embedded import free_port
from bench import procstat
from bench.intake import UVICORN_FLAGS, _start, _stop


async def measure(events: int = 4000, warmup: int = 500, concurrency: int = 32) -> dict[str, Any]:
    """One round: the bare endpoint's server CPU per request and its requests per second."""
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "bench.baseline:app", "--port", str(port)]
    server = await _start([*argv, *UVICORN_FLAGS], dict(os.environ), port)
    try:
        load = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.loadgen",
            "--sync",
            "--port",
            str(port),
            "--secret",
            # The bare endpoint checks no signature; any secret signs the bodies.
            "whsec_" + "A" * 32,
            "--events",
            str(events),
            "--warmup",
            str(warmup),
            "--concurrency",
            str(concurrency),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert load.stdin is not None and load.stdout is not None
        if not await load.stdout.readline():
            raise SystemExit("the load generator failed against the bare endpoint")
        before = procstat.cpu_seconds([server.pid])
        load.stdin.write(b"go\n")
        await load.stdin.drain()
        line = await load.stdout.readline()
        after = procstat.cpu_seconds([server.pid])
        await load.wait()
        if load.returncode != 0 or not line:
            raise SystemExit("the load generator failed against the bare endpoint")
    finally:
        await _stop(server)
    result = orjson.loads(line)
    sent = max(int(result["sent"]), 1)
    return {
        "server_cpu_ms_per_request": round((after - before) * 1000 / sent, 4),
        "events_per_s": result["events_per_s"],
        "requests": sent,
    }


def median(rounds: list[dict[str, Any]]) -> float:
    """The yardstick of several rounds: their median server CPU per request (ms)."""
    return float(statistics.median(r["server_cpu_ms_per_request"] for r in rounds))


def main() -> None:
    """Print one round as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=4000)
    args = parser.parse_args()
    print(orjson.dumps(asyncio.run(measure(args.events))).decode())


if __name__ == "__main__":
    main()
