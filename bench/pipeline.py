"""End to end: events recorded, processed by the worker and delivered, signed, to a destination.

    .venv/bin/python -m bench.pipeline [--seconds 15] [--backlog 4000] [--repeats 2] [--json F]

Starts its own PostgreSQL, Redis, `hirehook api`, `hirehook worker` and a delivery receiver on
loopback (bench.stack), with one KeldairHR tenant whose destination is the receiver. Two runs,
each ``--repeats`` times, medians reported:

1. burst: 32 senders flat out for ``--seconds`` with the worker running. The pipeline's rate
   counts the acknowledged events until the last of them reached the destination; the
   intake's until the last was acknowledged. The gap is the backlog the worker leaves.
2. drain: ``--backlog`` events recorded with the worker stopped (published as the API
   publishes them), then one worker process started and timed until the destination has every
   one. CPU per event is the worker's own (from /proc) from when the queue is handed to it
   (it starts with the queue held aside), what one worker process costs per event processed
   and delivered.

Before each repeat the yardstick is measured (bench/yardstick.py: the bare endpoint's server
CPU per request under the intake bench's load), and the drain's worker CPU per event is
reported as a multiple of it (the target: at most 4).

Every run checks its ledger (sent = acknowledged = recorded = processed = delivered, nothing
doubled); a failed ledger exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

from bench import yardstick
from bench.procstat import cpu_seconds
from bench.soak import peak
from bench.stack import Senders, Stack, new_events, write_result

_PENDING = (
    "SELECT (SELECT count(*) FROM outbox WHERE done_at IS NULL) "
    "+ (SELECT count(*) FROM delivery WHERE done_at IS NULL) AS n"
)


def _ledger_failures(ledger: dict[str, int]) -> list[str]:
    failures = []
    if not (
        ledger["sent"]
        == ledger["acknowledged"]
        == ledger["recorded"]
        == ledger["processed"]
        == ledger["delivered"]
        == ledger["received"]
    ):
        failures.append(f"ledger does not balance: {ledger}")
    if ledger["lost"] or ledger["doubled_records"] or ledger["doubled_deliveries"]:
        failures.append(f"lost or doubled: {ledger}")
    return failures


async def _settle(stack: Stack, timeout_s: float = 300) -> None:
    """Wait until no outbox or delivery row is left undone (or the time is up: the ledger
    then shows what is missing)."""
    end = time.monotonic() + timeout_s
    while (await stack.query(_PENDING))[0]["n"] and time.monotonic() < end:  # noqa: ASYNC110 - polls the database
        await asyncio.sleep(0.2)


async def burst(seconds: float) -> dict[str, Any]:
    """One flat-out burst with the worker running (see the module docstring)."""
    stack = Stack()
    try:
        await stack.start()
        delivered, acknowledged, acked = await peak(stack, seconds, 32)
        await _settle(stack)
        return {
            "delivered_per_s": round(delivered, 1),
            "acknowledged_per_s": round(acknowledged, 1),
            "ledger": await stack.ledger(acked),
        }
    finally:
        await stack.close()


async def drain(backlog: int) -> dict[str, Any]:
    """``backlog`` events recorded first, then drained by one worker process."""
    stack = Stack()
    try:
        await stack.start(worker=False)
        events = new_events(backlog)
        await Senders(stack.api_port, concurrency=32).send(events, deadline_s=300)
        acked = [e for e in events if e.acked_at is not None]
        # The worker's start-up (imports, connections) is not what a running worker costs
        # per event: it starts with the queue held aside, and is timed from when the queue is
        # handed to it. (Timing from the first delivery instead left out whatever processing
        # ran before it: with the processing jobs queued ahead of the delivery jobs they
        # publish, often all of it.)
        start_up_cpu = await stack.start_worker_on_held_queue()
        assert stack.worker is not None
        started = time.time()
        await stack.wait_done(acked, 600)
        cpu = cpu_seconds([stack.worker.pid]) - start_up_cpu
        last = max(stack.receiver.first_at.values())
        await _settle(stack)
        ledger = await stack.ledger(events)
        return {
            "events": len(events),
            "delivered_per_s": round(len(acked) / max(last - started, 1e-6), 1),
            "worker_cpu_ms_per_event": round(cpu * 1000 / len(acked), 3),
            "ledger": ledger,
        }
    finally:
        await stack.close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Alternate burst and drain runs; medians."""
    bursts: list[dict[str, Any]] = []
    drains: list[dict[str, Any]] = []
    failures: list[str] = []
    yardsticks: list[dict[str, Any]] = []
    for _ in range(args.repeats):
        measured = await yardstick.measure()
        yardsticks.append(measured)
        print(f"yardstick: {measured}", flush=True)
        for kind, runs in (("burst", bursts), ("drain", drains)):
            result = await (burst(args.seconds) if kind == "burst" else drain(args.backlog))
            failures += [f"{kind}: {f}" for f in _ledger_failures(result["ledger"])]
            runs.append(result)
            print(f"{kind}: {result}", flush=True)

    def median(runs: list[dict[str, Any]], key: str) -> float:
        return round(float(statistics.median(r[key] for r in runs)), 3)

    stick = yardstick.median(yardsticks)
    cpu = median(drains, "worker_cpu_ms_per_event")
    return {
        "yardstick_ms": round(stick, 4),
        "yardsticks": yardsticks,
        "burst": {
            "delivered_per_s": median(bursts, "delivered_per_s"),
            "acknowledged_per_s": median(bursts, "acknowledged_per_s"),
            "runs": bursts,
        },
        "drain": {
            "delivered_per_s": median(drains, "delivered_per_s"),
            "worker_cpu_ms_per_event": cpu,
            "worker_cpu_x_yardstick": round(cpu / stick, 2),
            "runs": drains,
        },
        "ledger_failures": failures,
    }


def main() -> None:
    """Run, print, write the JSON."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each burst")
    parser.add_argument("--backlog", type=int, default=4000, help="events per drain run")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", help="write the results here as well")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    print(
        f"burst: {result['burst']['delivered_per_s']} events/s delivered "
        f"({result['burst']['acknowledged_per_s']}/s acknowledged); drain: "
        f"{result['drain']['delivered_per_s']} events/s, "
        f"{result['drain']['worker_cpu_ms_per_event']} ms worker CPU per event = "
        f"{result['drain']['worker_cpu_x_yardstick']}x the yardstick "
        f"({result['yardstick_ms']} ms, the bare endpoint's server CPU per request)",
        flush=True,
    )
    path = write_result("pipeline", result)
    if args.json:
        Path(args.json).write_bytes(path.read_bytes())
    if result["ledger_failures"]:
        raise SystemExit("\n".join(result["ledger_failures"]))


if __name__ == "__main__":
    main()
