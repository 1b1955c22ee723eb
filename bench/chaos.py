"""Faults under load: real signals to real processes while senders retry until acknowledged.

    .venv/bin/python -m bench.chaos [--quick] [--only api-kill,pg-pause,...] [--senders 24]

Starts its own PostgreSQL, Redis, `hirehook api`, `hirehook worker` and a delivery receiver on
loopback (bench.stack), runs each scenario against them, prints a result table, writes
``bench/results/chaos.json`` and exits 1 if any check failed. Every scenario sends its own
events, so each ledger (sent / acknowledged / recorded / processed / delivered, lost, doubled)
is its own.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from bench.stack import (
    POISON,
    Check,
    Event,
    Senders,
    Stack,
    new_events,
    percentile,
    print_table,
    write_result,
)

# Deliveries that fail are retried on this schedule here (seconds), so a poison record reaches
# its dead letter within the run instead of after a day.
DELIVERY_SCHEDULE = "[0.5, 1, 1]"


@dataclass
class Params:
    """Sizes and durations of one run."""

    events: int
    senders: int
    rate: float
    fault_s: float
    drain_s: float
    flood_s: float


def _acked(events: list[Event]) -> int:
    return sum(1 for e in events if e.acked_at is not None)


async def _until(predicate: Callable[[], bool], timeout_s: float) -> None:
    end = time.monotonic() + timeout_s
    while not predicate() and time.monotonic() < end:  # noqa: ASYNC110 - polls another process's state
        await asyncio.sleep(0.05)


def _ledger_checks(name: str, ledger: dict[str, int], *, resend_limit: int = 0) -> list[Check]:
    """The ledger's checks; ``resend_limit`` > 0 where the fault can strike between a
    delivery's send and its being marked done (the worker or PostgreSQL dies in between): the
    event is then sent again with the same webhook-id (at-least-once), never more often than
    the deliveries that were in flight."""
    sent = ledger["sent"]
    checks = [
        Check(
            name,
            "every event acknowledged",
            ledger["acknowledged"] == sent,
            f"{ledger['acknowledged']}/{sent}",
        ),
        Check(name, "lost = 0", ledger["lost"] == 0, str(ledger["lost"])),
        Check(
            name,
            "doubled records = 0",
            ledger["doubled_records"] == 0,
            str(ledger["doubled_records"]),
        ),
        Check(
            name,
            "every record processed",
            ledger["processed"] == sent,
            f"{ledger['processed']}/{sent}",
        ),
        Check(
            name,
            "every record delivered",
            ledger["received"] == sent,
            f"{ledger['received']}/{sent}",
        ),
    ]
    resent = ledger["doubled_deliveries"]
    if resend_limit:
        checks.append(
            Check(
                name,
                f"re-sent deliveries <= {resend_limit} in flight",
                resent <= resend_limit,
                f"{resent} re-sent with the same webhook-id",
            )
        )
    else:
        checks.append(Check(name, "doubled deliveries = 0", resent == 0, str(resent)))
    return checks


def _in_flight(stack: Stack) -> int:
    return int(stack.env.get("HIREHOOK_WORKER_CONCURRENCY", "20"))


async def api_kill(stack: Stack, p: Params) -> tuple[list[Check], dict[str, Any]]:
    """SIGKILL the API a third of the way through, restart it; senders keep retrying."""
    events = new_events(p.events)
    senders = Senders(stack.api_port, concurrency=p.senders)
    task = asyncio.create_task(senders.send(events, deadline_s=p.drain_s))
    await _until(lambda: _acked(events) >= len(events) // 3, 120)
    stack.kill(stack.api)
    killed = time.time()
    await asyncio.sleep(1)
    await asyncio.to_thread(stack.start_api)
    await task
    ledger = await stack.wait_done(events, p.drain_s)
    refused = sum(1 for a in senders.answers if a.started >= killed and not a.status.isdigit())
    return _ledger_checks("api-kill", ledger), {"ledger": ledger, "refused_while_down": refused}


def _last_delivery(stack: Stack, events: list[Event], since: float) -> float | None:
    """Seconds from ``since`` to the first delivery of the last of ``events`` delivered."""
    seen = [stack.receiver.first_at.get(e.record_id or "") for e in events]
    times = [t for t in seen if t is not None]
    return round(max(times) - since, 1) if times else None


def _fault_checks(
    name: str, senders: Senders, start: float, end: float, bound_s: float
) -> tuple[list[Check], dict[str, Any]]:
    during = [a for a in senders.answers if start <= a.started and a.ended <= end]
    statuses = Counter(a.status for a in during)
    ok_2xx = sum(n for s, n in statuses.items() if s.startswith("2"))
    allowed = all(s == "503" or not s.isdigit() for s in statuses)
    shape = all(a.shape_ok for a in during)
    answered = [a.seconds for a in senders.answers if start <= a.started <= end]
    worst = max(answered, default=0.0)
    figures = {
        "answers_during_fault": dict(statuses),
        "max_answer_s": round(worst, 3),
        "p99_answer_ms": percentile(answered, 99),
        "answers_started_during_fault": len(answered),
    }
    return [
        Check(name, "no 2xx during the fault", ok_2xx == 0, f"{ok_2xx} of {len(during)}"),
        Check(
            name,
            "only 503 or refused during the fault",
            allowed,
            ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items())) or "none",
        ),
        Check(name, "503s in the KeldairHR error shape", shape, "yes" if shape else "no"),
        Check(name, f"max answer time <= {bound_s:g} s", worst <= bound_s, f"{worst:.2f} s"),
    ], figures


async def pg_pause(stack: Stack, p: Params) -> tuple[list[Check], dict[str, Any]]:
    """SIGSTOP every PostgreSQL process for ``fault_s``: connections accepted, never answered."""
    events = new_events(int(p.rate * (p.fault_s + 8)))
    senders = Senders(stack.api_port, concurrency=p.senders)
    task = asyncio.create_task(senders.send(events, deadline_s=p.drain_s, rate_per_s=p.rate))
    await asyncio.sleep(3)
    paused = await asyncio.to_thread(stack.pg_pause)
    start = time.time()
    await asyncio.sleep(p.fault_s)
    end = time.time()
    stack.pg_resume(paused)
    await task
    # The budget is HIREHOOK_DB_REQUEST_TIMEOUT_S (2 s); half a second for a loaded machine.
    checks, figures = _fault_checks("pg-pause", senders, start, end, 2.5)
    ledger = await stack.wait_done(events, p.drain_s)
    figures["ledger"] = ledger
    figures["last_delivery_after_resume_s"] = _last_delivery(stack, events, end)
    return checks + _ledger_checks("pg-pause", ledger, resend_limit=_in_flight(stack)), figures


async def pg_stop(stack: Stack, p: Params) -> tuple[list[Check], dict[str, Any]]:
    """`pg_ctl stop -m immediate`, then start again; Hirehook is not restarted."""
    events = new_events(int(p.rate * (p.fault_s + 8)))
    senders = Senders(stack.api_port, concurrency=p.senders)
    api_pid, worker_pid = stack.api and stack.api.pid, stack.worker and stack.worker.pid
    task = asyncio.create_task(senders.send(events, deadline_s=p.drain_s, rate_per_s=p.rate))
    await asyncio.sleep(3)
    start = time.time()
    await asyncio.to_thread(stack.pg_stop_immediate)
    await asyncio.sleep(p.fault_s)
    stopped_until = time.time()
    await asyncio.to_thread(stack.pg_start)
    restarted = time.time()
    await task
    checks, figures = _fault_checks("pg-stop", senders, start, stopped_until, 2.5)
    first_ok = min(
        (a.ended for a in senders.answers if a.started >= restarted and a.status.startswith("2")),
        default=None,
    )
    ledger = await stack.wait_done(events, p.drain_s)
    same = (
        stack.api is not None
        and stack.api.pid == api_pid
        and stack.api.poll() is None
        and stack.worker is not None
        and stack.worker.pid == worker_pid
        and stack.worker.poll() is None
    )
    recovery = round(first_ok - restarted, 2) if first_ok else None
    figures |= {
        "ledger": ledger,
        "first_2xx_after_restart_s": recovery,
        "last_delivery_after_restart_s": _last_delivery(stack, events, restarted),
    }
    checks.append(
        Check(
            "pg-stop",
            "recovered without restarting Hirehook",
            same and bool(first_ok),
            f"first 2xx {recovery} s after PostgreSQL was back",
        )
    )
    return checks + _ledger_checks("pg-stop", ledger, resend_limit=_in_flight(stack)), figures


async def redis_restart(stack: Stack, p: Params) -> tuple[list[Check], dict[str, Any]]:
    """SIGKILL Redis, keep sending, start it again empty; the sweeper must republish."""
    events = new_events(int(p.rate * (p.fault_s + 6)))
    senders = Senders(stack.api_port, concurrency=p.senders)
    task = asyncio.create_task(senders.send(events, deadline_s=p.drain_s, rate_per_s=p.rate))
    await asyncio.sleep(3)
    stack.redis_kill()
    start = time.time()
    await asyncio.sleep(p.fault_s)
    end = time.time()
    await asyncio.to_thread(stack.redis.start)
    back = time.monotonic()
    pending_at_return = 0
    await task
    during = [a for a in senders.answers if start <= a.started and a.ended <= end]
    not_2xx = Counter(a.status for a in during if not a.status.startswith("2"))
    ledger = await stack.ledger(events)
    pending_at_return = ledger["sent"] - ledger["processed"]
    while ledger["processed"] < ledger["sent"] and time.monotonic() - back < p.drain_s:
        await asyncio.sleep(0.2)
        ledger = await stack.ledger(events)
    drain_s = round(time.monotonic() - back, 2)
    ledger = await stack.wait_done(events, p.drain_s)
    rate = round(pending_at_return / drain_s, 1) if drain_s else 0.0
    checks = [
        Check(
            "redis-restart",
            "intake answered 2xx throughout",
            not not_2xx and bool(during),
            f"{len(during) - sum(not_2xx.values())}/{len(during)} 2xx while Redis was down",
        ),
        Check(
            "redis-restart",
            "drained after Redis returned",
            ledger["processed"] == ledger["sent"],
            f"{drain_s} s for the backlog, {rate} records/s",
        ),
    ]
    figures = {
        "ledger": ledger,
        "drain_s": drain_s,
        "records_per_s": rate,
        "backlog_when_redis_returned": pending_at_return,
    }
    return checks + _ledger_checks("redis-restart", ledger), figures


async def worker_kill(stack: Stack, p: Params) -> tuple[list[Check], dict[str, Any]]:
    """SIGKILL the worker a third of the way through processing; start another."""
    events = new_events(p.events)
    senders = Senders(stack.api_port, concurrency=p.senders)
    task = asyncio.create_task(senders.send(events, deadline_s=p.drain_s))
    target = len(events) // 3

    async def processed() -> int:
        return (await stack.ledger(events))["processed"]

    end = time.monotonic() + 120
    while await processed() < target and time.monotonic() < end:  # noqa: ASYNC110 - polls another process's state
        await asyncio.sleep(0.1)
    in_flight = _in_flight(stack)
    stack.kill(stack.worker)
    await asyncio.sleep(1)
    stack.start_worker()
    await task
    ledger = await stack.wait_done(events, p.drain_s)
    rows = await stack.query(
        "SELECT count(*) AS n FROM (SELECT record_id FROM outbox WHERE task = 'process_record' "
        "GROUP BY record_id HAVING count(*) > 1) AS t"
    )
    doubled_outbox = int(rows[0]["n"])
    checks = [
        Check("worker-kill", "one outbox row per record", doubled_outbox == 0, str(doubled_outbox))
    ]
    checks += _ledger_checks("worker-kill", ledger, resend_limit=in_flight)
    resent = ledger["doubled_deliveries"]
    return checks, {"ledger": ledger, "redelivered_same_webhook_id": resent}


def _latencies(stack: Stack, events: list[Event]) -> list[float]:
    out = []
    for e in events:
        seen = stack.receiver.first_at.get(e.record_id or "")
        if e.acked_at is not None and seen is not None:
            out.append(seen - e.acked_at)
    return out


async def poison(stack: Stack, p: Params) -> tuple[list[Check], dict[str, Any]]:
    """A record whose delivery always fails, among normal ones: dead-lettered, delays nobody."""
    n = max(50, p.events // 4)
    before = new_events(n)
    await Senders(stack.api_port, concurrency=p.senders).send(
        before, deadline_s=p.drain_s, rate_per_s=p.rate
    )
    await stack.wait_done(before, p.drain_s)
    poisoned = new_events(max(5, n // 20), marker=POISON)
    mixed = new_events(n)
    interleaved = [e for pair in zip(mixed, poisoned + mixed, strict=False) for e in pair]
    interleaved = list({id(e): e for e in interleaved + mixed}.values())
    await Senders(stack.api_port, concurrency=p.senders).send(
        interleaved, deadline_s=p.drain_s, rate_per_s=p.rate
    )
    ledger = await stack.wait_done(mixed, p.drain_s)
    ids = [e.record_id for e in poisoned]
    letters: list[Any] = []
    end = time.monotonic() + p.drain_s
    while time.monotonic() < end:
        letters = await stack.query(
            "SELECT stage, attempts FROM dead_letter WHERE record_id::text = ANY($1::text[])", ids
        )
        if len(letters) >= len(ids):
            break
        await asyncio.sleep(0.5)
    without = _latencies(stack, before)
    with_poison = _latencies(stack, mixed)
    p99_without, p99_with = percentile(without, 99), percentile(with_poison, 99)
    stages = Counter(row["stage"] for row in letters)
    figures = {
        "ledger": ledger,
        "poison_records": len(poisoned),
        "dead_letters": dict(stages),
        "tries": sorted({int(row["attempts"]) for row in letters}),
        "others_p50_ms": {"without": percentile(without, 50), "with": percentile(with_poison, 50)},
        "others_p99_ms": {"without": p99_without, "with": p99_with},
    }
    checks = [
        Check(
            "poison",
            "every poison record in dead letters (delivery)",
            stages.get("delivery", 0) == len(poisoned),
            f"{stages.get('delivery', 0)}/{len(poisoned)} after {figures['tries']} tries",
        ),
        Check(
            "poison",
            "others' p99 ack→delivered <= 2x without poison",
            p99_with <= 2 * max(p99_without, 50.0),
            f"{p99_without:.0f} ms without, {p99_with:.0f} ms with",
        ),
    ]
    return checks + _ledger_checks("poison", ledger), figures


async def _flood_phase(
    stack: Stack, p: Params, good_rate: float, addresses: list[str], kinds: str
) -> tuple[Senders, list[Event], dict[str, Any]]:
    during = new_events(int(good_rate * p.flood_s))
    loud = Senders(stack.api_port, concurrency=8)
    flooder = await asyncio.create_subprocess_exec(
        *[
            sys.executable,
            "-m",
            "bench.flood",
            "--port",
            str(stack.api_port),
            "--seconds",
            str(p.flood_s + 3),
            "--connections",
            "32",
            "--addresses",
            ",".join(addresses),
            "--kinds",
            kinds,
        ],
        stdout=asyncio.subprocess.PIPE,
    )
    assert flooder.stdout is not None
    # Good traffic starts once the flood is flooding: the flood process's own start (imports,
    # building a gzip bomb) takes CPU that is not the flood's.
    await flooder.stdout.readline()
    await asyncio.sleep(1)
    await loud.send(during, deadline_s=p.drain_s, rate_per_s=good_rate)
    out, _ = await flooder.communicate()
    return loud, during, orjson.loads(out)


async def flood(stack: Stack, p: Params) -> tuple[list[Check], dict[str, Any]]:
    """Bad requests flat out from other addresses while good traffic runs at a steady rate:
    from 4 addresses (every kind of bad request), then unknown tenants and wrong secrets
    spread over 250 addresses, so the per-address guard blocks late."""
    good_rate = min(p.rate, 50.0)
    # Not measured: the first requests of a fresh stack open pooled connections and fill
    # caches, which says nothing about a flood.
    warm = new_events(int(good_rate * 3))
    await Senders(stack.api_port, concurrency=8).send(
        warm, deadline_s=p.drain_s, rate_per_s=good_rate
    )
    before = new_events(int(good_rate * p.flood_s))
    quiet = Senders(stack.api_port, concurrency=8)
    await quiet.send(before, deadline_s=p.drain_s, rate_per_s=good_rate)
    p99_before = percentile([a.seconds for a in quiet.answers], 99)
    figures: dict[str, Any] = {
        "good_rate_per_s": good_rate,
        "good_before_ms": {
            "p50": percentile([a.seconds for a in quiet.answers], 50),
            "p90": percentile([a.seconds for a in quiet.answers], 90),
            "p99": p99_before,
        },
    }
    checks: list[Check] = []
    everything = warm + before
    phases = {
        "4 addresses, all kinds": (
            [f"127.0.0.{i}" for i in range(2, 6)],
            "unknown-tenant,wrong-signature,oversized,gzip-bomb",
        ),
        "250 addresses, bad credentials": (
            [f"127.0.{i // 250 + 1}.{i % 250 + 2}" for i in range(250)],
            "unknown-tenant,wrong-signature",
        ),
    }
    for label, (addresses, kinds) in phases.items():
        loud, during, result = await _flood_phase(stack, p, good_rate, addresses, kinds)
        everything += during
        p99 = percentile([a.seconds for a in loud.answers], 99)
        refused = sum(1 for a in loud.answers if not a.status.startswith("2"))
        ratio = round(p99 / p99_before, 2) if p99_before else 0.0
        figures[label] = {
            "good_p50_ms": percentile([a.seconds for a in loud.answers], 50),
            "good_p90_ms": percentile([a.seconds for a in loud.answers], 90),
            "good_p99_ms": p99,
            "ratio": ratio,
            "good_refused": refused,
            "flood": result,
        }
        checks += [
            Check(
                "flood",
                f"{label}: good p99 <= 2x before",
                ratio <= 2.0,
                f"{p99_before} -> {p99} ms (x{ratio}), flood {result['per_s']}/s",
            ),
            Check("flood", f"{label}: good traffic all 2xx", refused == 0, f"{refused} refused"),
        ]
    ledger = await stack.wait_done(everything, p.drain_s)
    figures["ledger"] = ledger
    return checks + _ledger_checks("flood", ledger), figures


SCENARIOS: dict[str, Callable[[Stack, Params], Awaitable[tuple[list[Check], dict[str, Any]]]]] = {
    "api-kill": api_kill,
    "pg-pause": pg_pause,
    "pg-stop": pg_stop,
    "redis-restart": redis_restart,
    "worker-kill": worker_kill,
    "poison": poison,
    "flood": flood,
}


async def run(params: Params, names: list[str]) -> tuple[list[Check], dict[str, Any]]:
    """Run the scenarios on one stack; stop everything however it ends."""
    stack = Stack(env={"HIREHOOK_DELIVERY_RETRY_SCHEDULE_S": DELIVERY_SCHEDULE})
    checks: list[Check] = []
    figures: dict[str, Any] = {}
    try:
        await stack.start()
        for name in names:
            started = time.monotonic()
            print(f"scenario {name} ...", flush=True)
            try:
                found, figures[name] = await SCENARIOS[name](stack, params)
            except Exception as exc:  # noqa: BLE001 - a broken scenario is a failed check, not a crash
                found, figures[name] = [Check(name, "ran to the end", False, repr(exc))], {}
            figures[name]["seconds"] = round(time.monotonic() - started, 1)
            checks += found
            print_table(name, found)
    finally:
        await stack.close(keep_logs="chaos" if any(not c.ok for c in checks) else None)
    return checks, figures


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small counts, short faults")
    parser.add_argument("--only", help="comma-separated scenarios: " + ",".join(SCENARIOS))
    parser.add_argument("--senders", type=int, default=24, help="concurrent senders (16-32)")
    parser.add_argument("--events", type=int, help="events per scenario")
    parser.add_argument("--fault-s", type=float, help="how long a fault lasts")
    args = parser.parse_args()
    params = (
        Params(events=300, senders=args.senders, rate=60, fault_s=4, drain_s=90, flood_s=6)
        if args.quick
        else Params(
            events=2000, senders=args.senders, rate=100, fault_s=10, drain_s=240, flood_s=15
        )
    )
    if args.events:
        params.events = args.events
    if args.fault_s:
        params.fault_s = args.fault_s
    names = args.only.split(",") if args.only else list(SCENARIOS)
    unknown = set(names) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    checks, figures = asyncio.run(run(params, names))
    print_table("chaos: all scenarios", checks)
    failed = [c for c in checks if not c.ok]
    name = ("chaos-quick" if args.quick else "chaos") + ("-" + "-".join(names) if args.only else "")
    path = write_result(
        name,
        {"params": asdict(params), "checks": [asdict(c) for c in checks], "figures": figures},
    )
    print(f"\n{len(checks) - len(failed)}/{len(checks)} checks passed; wrote {path}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
