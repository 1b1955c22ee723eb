"""A long steady run at half the measured peak rate, with the worker processing and delivering.

    .venv/bin/python -m bench.soak [--minutes 10] [--quick] [--rate N]

Starts its own PostgreSQL, Redis, `hirehook api`, `hirehook worker` and a delivery receiver on
loopback (bench.stack); measures the pipeline's peak (events recorded, processed and delivered
per second) in a short flat-out burst, then sends at half of it for ``--minutes``, sampling
every few seconds: answers that were not 2xx, API and worker resident memory (from /proc), the
outbox backlog and PostgreSQL's client connections (pg_stat_activity). Checks zero errors,
memory flat within ±10 % of the first sample after warm-up, a bounded backlog and a flat
connection count; prints a table, writes ``bench/results/soak.json`` and exits 1 on a failed
check.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections import Counter
from dataclasses import asdict
from typing import Any

from bench.stack import Check, Conn, Event, Senders, Stack, new_events, print_table, write_result

_BACKLOG = "SELECT count(*) AS n FROM outbox WHERE done_at IS NULL"
_CONNECTIONS = (
    "SELECT count(*) AS n FROM pg_stat_activity WHERE backend_type = 'client backend' "
    "AND pid <> pg_backend_pid()"
)


async def peak(stack: Stack, seconds: float, concurrency: int) -> tuple[float, float, list[Event]]:
    """The pipeline's peak and the intake's, in events per second, from a flat-out burst of
    ``seconds``, and the events sent: the first counts events until the last of them was
    delivered (recorded, processed by the worker and received by the destination), the second
    until the last was acknowledged. The soak runs at half the first: half of what the API
    alone can take is more than the worker can process on the same cores."""
    senders = Senders(stack.api_port, concurrency=concurrency)
    events = new_events(int(seconds * 1500))
    started = time.time()
    await senders.send(events, deadline_s=seconds)
    acked = [e for e in events if e.acked_at is not None]
    intake = len(acked) / (time.time() - started)
    await stack.wait_done(acked, 300)
    last = max(stack.receiver.first_at.get(e.record_id or "", started) for e in acked)
    return len(acked) / (last - started), intake, acked


async def steady(
    stack: Stack,
    rate: float,
    seconds: float,
    concurrency: int,
    samples: list[dict[str, Any]],
    every_s: float,
) -> tuple[list[Event], Counter[str], list[float]]:
    """Send at ``rate`` for ``seconds``, sampling the processes every ``every_s``."""
    senders = Senders(stack.api_port, concurrency=concurrency)
    ids: list[str] = []
    done: list[Event] = []
    statuses: Counter[str] = Counter()
    latencies: list[float] = []
    end = time.monotonic() + seconds
    interval = concurrency / rate

    async def sender() -> None:
        conn = Conn(stack.api_port)
        next_at = time.monotonic()
        while time.monotonic() < end:
            [event] = new_events(1)
            ids.append(event.event_id)
            while not await senders.attempt(conn, event) and time.monotonic() < end + 60:  # noqa: ASYNC110 - a sender retrying
                await asyncio.sleep(senders.retry_s)
            # Only the id and the outcome are kept: a long run must not hold every body.
            done.append(Event(event.event_id, {}, acked_at=event.acked_at))
            answer = senders.answers.pop()
            latencies.append(answer.seconds)
            statuses.update(event.statuses)
            senders.answers.clear()
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        conn.close()

    async def sampler() -> None:
        started = time.monotonic()
        while time.monotonic() < end:
            await asyncio.sleep(every_s)
            backlog = (await stack.query(_BACKLOG))[0]["n"]
            connections = (await stack.query(_CONNECTIONS))[0]["n"]
            samples.append(
                {
                    "t_s": round(time.monotonic() - started),
                    "api_rss_mb": stack.rss_mb(stack.api),
                    "worker_rss_mb": stack.rss_mb(stack.worker),
                    "outbox_backlog": int(backlog),
                    "pg_connections": int(connections),
                    "sent": len(ids),
                }
            )
            print(samples[-1], flush=True)

    await asyncio.gather(sampler(), *(sender() for _ in range(concurrency)))
    return done, statuses, latencies


def _flat(values: list[float], tolerance: float) -> tuple[bool, str]:
    base = values[0]
    worst = max(values, key=lambda v: abs(v - base))
    change = (worst - base) / base if base else 0.0
    return abs(change) <= tolerance, f"{base:g} -> {values[-1]:g} (worst {change:+.1%})"


async def run(args: argparse.Namespace) -> tuple[list[Check], dict[str, Any]]:
    """Measure the peak, soak at half of it, check the samples."""
    stack = Stack()
    samples: list[dict[str, Any]] = []
    try:
        await stack.start()
        measured, intake, _ = await peak(stack, 5 if args.quick else 15, 32)
        rate = args.rate or round(measured / 2, 1)
        # The burst leaves a backlog; the soak starts from an idle pipeline.
        drain_end = time.monotonic() + 180
        while (await stack.query(_BACKLOG))[0]["n"] > 0 and time.monotonic() < drain_end:  # noqa: ASYNC110 - polls the database
            await asyncio.sleep(1)
        print(
            f"peak {measured:.0f} events/s delivered ({intake:.0f}/s acknowledged); "
            f"soaking at {rate}/s for {args.minutes} min",
            flush=True,
        )
        every = max(2.0, args.minutes * 60 / 40)
        events, statuses, latencies = await steady(
            stack, rate, args.minutes * 60, 16, samples, every
        )
        ledger = await stack.wait_done(events, 120)
        final_backlog = int((await stack.query(_BACKLOG))[0]["n"])
    finally:
        # Logged at WARNING and above only: small, and what explains an error after the fact.
        await stack.close(keep_logs="soak")
    errors = sum(n for s, n in statuses.items() if not s.startswith("2"))
    # The first fifth is warm-up: caches fill, pools open, the allocator settles.
    steady_samples = samples[len(samples) // 5 :] or samples
    checks = [Check("soak", "zero errors", errors == 0, f"{errors} of {sum(statuses.values())}")]
    for key, label in (("api_rss_mb", "API RSS"), ("worker_rss_mb", "worker RSS")):
        ok, figure = _flat([s[key] for s in steady_samples], 0.10)
        checks.append(Check("soak", f"{label} flat within 10 %", ok, f"{figure} MB"))
    backlogs = [s["outbox_backlog"] for s in steady_samples]
    bound = max(50, int(rate * 5))
    checks.append(
        Check(
            "soak",
            f"outbox backlog bounded (<= {bound}, 5 s of traffic)",
            max(backlogs, default=0) <= bound,
            f"max {max(backlogs, default=0)}, {final_backlog} after draining",
        )
    )
    connections = [s["pg_connections"] for s in steady_samples]
    checks.append(
        Check(
            "soak",
            "PostgreSQL connections flat",
            max(connections) - min(connections) <= 2,
            f"{min(connections)}-{max(connections)}",
        )
    )
    checks.append(
        Check(
            "soak",
            "ledger: lost 0, doubled 0, all delivered",
            ledger["lost"] == 0
            and ledger["doubled_records"] == 0
            and ledger["received"] == ledger["sent"],
            f"{ledger['sent']} sent, {ledger['received']} delivered, lost {ledger['lost']}",
        )
    )
    latencies.sort()
    figures = {
        "peak_events_per_s": round(measured, 1),
        "intake_peak_events_per_s": round(intake, 1),
        "rate_per_s": rate,
        "minutes": args.minutes,
        "statuses": dict(statuses),
        "p50_ms": round(statistics.median(latencies) * 1000, 1) if latencies else 0,
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 1) if latencies else 0,
        "ledger": ledger,
        "samples": samples,
    }
    return checks, figures


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--quick", action="store_true", help="one minute")
    parser.add_argument("--rate", type=float, help="events/s instead of half the measured peak")
    args = parser.parse_args()
    if args.quick:
        args.minutes = 1.0
    checks, figures = asyncio.run(run(args))
    print_table("soak", checks)
    path = write_result(
        "soak-quick" if args.quick else "soak", {"checks": [asdict(c) for c in checks], **figures}
    )
    print(f"\nwrote {path}")
    sys.exit(0 if all(c.ok for c in checks) else 1)


if __name__ == "__main__":
    main()
