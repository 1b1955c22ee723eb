"""Enrichment throughput and API calls per event, with real worker processes.

    .venv/bin/python -m bench.enrichment [--events 600] [--storm 500] [--repeats 3]

Starts an embedded PostgreSQL and Redis (or uses HIREHOOK_BENCH_DATABASE_URL and
HIREHOOK_BENCH_REDIS_URL), a fake HR Manager API on loopback answering every call after 50 ms,
and ``hirehook worker`` processes. Each run records its events first (jobs not yet published),
waits until the workers are polling, publishes every job at once and times until the last
outbox row is done. Figures are medians of ``--repeats`` runs; see bench/README.md.

1. Throughput: N events naming N distinct candidates (one call each), 1 and 2 processes.
2. Duplicate storm: M events naming 5 candidates, with caching and coalescing on, against the
   same storm on a connection that opts out of both (``options.coalesce = false``).

Worker CPU per job is reported against the yardstick measured in the same run (bench/yardstick.py:
the bare endpoint's server CPU per request, before each repeat).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psutil
from sqlalchemy import text

from app.intake.core import Event, json_answer
from app.platform.embedded import EmbeddedPostgres, EmbeddedRedis
from app.platform.migrate import upgrade_async
from app.platform.settings import Settings
from app.services import Services
from app.sources import create_services
from app.store.models import Base
from bench import procstat, yardstick
from tests.support.fake_ats import FakeATS, serve
from tests.support.workers import add_source, log_events

API_LATENCY_S = 0.05
SECRET_KEY = "bench-secret-key-for-credentials-at-rest"
UNLIMITED = {"rate_per_s": 100000, "burst": 100000, "concurrency": 10000}


@dataclass(frozen=True)
class Run:
    """One timed run."""

    processes: int
    events: int
    seconds: float
    api_calls: int
    # CPU time of the worker process trees from the moment the jobs are published until the
    # last is done: start-up excluded, so it is what the jobs themselves cost.
    worker_cpu_s: float
    # Cores the whole machine kept busy meanwhile (workers, PostgreSQL, Redis, the fake API and
    # this process): what a second worker process has left to take.
    machine_cores: float = 0.0

    @property
    def jobs_per_s(self) -> float:
        """Events enriched per second."""
        return self.events / self.seconds

    @property
    def cpu_ms_per_job(self) -> float:
        """Worker CPU per job."""
        return self.worker_cpu_s * 1000 / self.events

    @property
    def calls_per_event(self) -> float:
        """ATS API calls per event."""
        return self.api_calls / self.events


def _settings(database_url: str, redis_url: str) -> Settings:
    return Settings(
        _env_file=None,
        environment="test",
        database_url=database_url,  # type: ignore[arg-type]
        redis_url=redis_url,  # type: ignore[arg-type]
        secret_key=SECRET_KEY,  # type: ignore[arg-type]
        log_format="json",
    )


def _env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIREHOOK_")}
    env.update(
        {
            "HIREHOOK_ENVIRONMENT": "test",
            "HIREHOOK_DATABASE_URL": str(settings.database_url),
            "HIREHOOK_REDIS_URL": str(settings.redis_url),
            "HIREHOOK_SECRET_KEY": SECRET_KEY,
            "HIREHOOK_LOG_FORMAT": "json",
            # The bench publishes the jobs itself; the sweeper must not do it first.
            "HIREHOOK_OUTBOX_GRACE_S": "600",
        }
    )
    return env


async def _reset(services: Services) -> None:
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    async with services.engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    await services.queue.redis.flushdb()
    services.connections.invalidate()


async def _record(
    services: Services, fake: FakeATS, ids: list[str], options: dict[str, Any]
) -> list[uuid.UUID]:
    connection = await add_source(
        services, fake, "hrmanager", options={"limits": UNLIMITED, **options}
    )
    recorded = []
    # Recorded in the bench's own transaction: nothing is published until the timer starts
    # (on the request path a committed batch is published at once, or under load with the
    # batches of the next 20 ms: app/intake/publisher.py).
    async with services.engine.begin() as conn:
        for cid in ids:
            payload = {"CandidateId": cid}
            outcome = await services.intake.record(
                Event(
                    connection=connection,
                    dedupe_key=uuid.uuid4().hex,
                    event_type="CandidateUpdated",
                    known=True,
                    payload=payload,
                    raw_body=orjson.dumps(payload),
                    headers={},
                    # As the route derives them at intake: the worker reads the ids, it
                    # does not parse the payload again.
                    subjects={"candidate": cid},
                ),
                answer_for=lambda rid: json_answer(202, {"record_id": str(rid)}),
                conn=conn,
            )
            recorded.append(outcome.record_id)
    return recorded


async def _done(services: Services) -> int:
    async with services.engine.connect() as conn:
        count = await conn.execute(text("SELECT count(*) FROM outbox WHERE done_at IS NOT NULL"))
        return int(count.scalar_one())


async def run_once(
    services: Services,
    fake: FakeATS,
    *,
    processes: int,
    ids: list[str],
    options: dict[str, Any],
    workdir: Path,
    batched: bool = True,
) -> Run:
    """Time one batch of events through ``processes`` worker processes."""
    await _reset(services)
    fake.calls.clear()
    records = await _record(services, fake, ids, options)
    logs = [workdir / f"worker-{i}.log" for i in range(processes)]
    workers = []
    for log in logs:
        with log.open("wb") as out:
            workers.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "app.cli",
                    "worker",
                    env=_env(services.settings),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
    try:
        while not all(log_events(log, "worker.started") for log in logs):
            if any(w.returncode is not None for w in workers):
                raise RuntimeError("a worker exited:\n" + logs[0].read_text()[-2000:])
            await asyncio.sleep(0.05)
        pids = [w.pid for w in workers]
        cpu_before = procstat.cpu_seconds(pids)
        machine_before = _busy_seconds()
        started = time.monotonic()
        if batched:
            # As the API publishes a group-committed burst: jobs of up to 64 records each.
            await services.queue.enqueue_batch(records)
        else:
            for rid in records:
                await services.queue.enqueue_record(rid)
        # Polling the outbox is the measurement: done means committed in PostgreSQL.
        while await _done(services) < len(records):  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        seconds = time.monotonic() - started
        cpu = procstat.cpu_seconds(pids) - cpu_before
        machine = (_busy_seconds() - machine_before) / seconds
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            await asyncio.wait_for(worker.wait(), 30)
    return Run(processes, len(records), seconds, len(fake.calls_to("/hrm")), cpu, machine)


def _busy_seconds() -> float:
    """CPU seconds every core of the machine has spent busy since boot (not idle, not waiting
    for I/O)."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def _storm_ids(events: int, resources: int) -> list[str]:
    rng = random.Random(42)
    return [f"storm-{rng.randrange(resources)}" for _ in range(events)]


async def main(args: argparse.Namespace) -> None:
    """Run every scenario and print the figures."""
    yardsticks: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="hirehook-bench-") as tmp:
        workdir = Path(tmp)
        servers: list[EmbeddedPostgres | EmbeddedRedis] = []
        database_url = os.environ.get("HIREHOOK_BENCH_DATABASE_URL")
        redis_url = os.environ.get("HIREHOOK_BENCH_REDIS_URL")
        if not database_url:
            pg = EmbeddedPostgres(workdir / "postgres")
            database_url = pg.start()
            servers.append(pg)
        if not redis_url:
            redis = EmbeddedRedis(workdir / "redis")
            redis_url = redis.start()
            servers.append(redis)
        settings = _settings(database_url, redis_url)
        await upgrade_async(settings.database_dsn)
        services = create_services(settings)
        try:
            with serve(FakeATS(delay_s=API_LATENCY_S)) as fake:
                distinct = [f"c-{i}" for i in range(args.events)]
                for cid in distinct + [f"storm-{i}" for i in range(args.resources)]:
                    fake.add_hrm_candidate(cid)
                storm = _storm_ids(args.storm, args.resources)
                scenarios: dict[str, list[Run]] = {}
                plan = [
                    ("throughput, 1 process", 1, distinct, {}),
                    ("throughput, 2 processes", 2, distinct, {}),
                    ("storm, coalescing off (baseline)", 1, storm, {"coalesce": False}),
                    ("storm, coalescing on", 1, storm, {}),
                    ("storm, coalescing on, 2 processes", 2, storm, {}),
                ]
                for repeat in range(args.repeats):
                    stick = await yardstick.measure(args.yardstick_events)
                    yardsticks.append(stick)
                    print(
                        f"[{repeat + 1}/{args.repeats}] yardstick: bare endpoint "
                        f"{stick['server_cpu_ms_per_request']:.3f} ms server CPU per request "
                        f"({stick['events_per_s']:,.0f}/s)",
                        flush=True,
                    )
                    for name, processes, ids, options in plan:
                        result = await run_once(
                            services,
                            fake,
                            processes=processes,
                            ids=ids,
                            options=options,
                            workdir=workdir,
                            batched=not args.per_record_jobs,
                        )
                        scenarios.setdefault(name, []).append(result)
                        print(
                            f"[{repeat + 1}/{args.repeats}] {name}: {result.events} events in "
                            f"{result.seconds:.2f}s = {result.jobs_per_s:.0f} jobs/s, "
                            f"{result.api_calls} API calls, worker CPU {result.worker_cpu_s:.1f}s "
                            f"({result.cpu_ms_per_job:.1f} ms/job)",
                            flush=True,
                        )
        finally:
            await services.close()
            for server in reversed(servers):
                server.stop()
    _report(scenarios, yardsticks, args)


def _report(
    scenarios: dict[str, list[Run]], yardsticks: list[dict[str, Any]], args: argparse.Namespace
) -> None:
    def median(name: str, attr: str) -> float:
        return float(statistics.median(getattr(r, attr) for r in scenarios[name]))

    stick = yardstick.median(yardsticks)
    one = median("throughput, 1 process", "jobs_per_s")
    off_rate = median("storm, coalescing off (baseline)", "jobs_per_s")
    off = median("storm, coalescing off (baseline)", "calls_per_event")
    rows = []
    for name in scenarios:
        storm = name.startswith("storm")
        rate = median(name, "jobs_per_s")
        calls = median(name, "calls_per_event")
        cpu = median(name, "cpu_ms_per_job")
        rows.append(
            {
                "scenario": name,
                "events": args.storm if storm else args.events,
                "jobs_per_s": round(rate, 1),
                "jobs_per_s_ratio": round(rate / (off_rate if storm else one), 3),
                "cpu_ms_per_job": round(cpu, 3),
                # Worker CPU per job in yardsticks (the target: at most 8).
                "cpu_x_yardstick": round(cpu / stick, 2),
                "machine_cores": round(median(name, "machine_cores"), 2),
                "calls_per_event": round(calls, 3),
                "calls_ratio": round(calls / off, 3) if storm else None,
            }
        )
    print()
    print(
        f"API latency {API_LATENCY_S * 1000:.0f} ms; medians of {args.repeats} runs; yardstick "
        f"(bare endpoint's server CPU per request, same run) {stick:.3f} ms"
    )
    print(
        "| scenario | events | jobs/s | jobs/s ratio | worker CPU ms/job | x yardstick "
        "| machine cores busy | API calls/event | calls ratio |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        ratio = "" if row["calls_ratio"] is None else f"{row['calls_ratio']:.3f}"
        print(
            f"| {row['scenario']} | {row['events']} | {row['jobs_per_s']:.0f} "
            f"| {row['jobs_per_s_ratio']:.2f} | {row['cpu_ms_per_job']:.2f} "
            f"| {row['cpu_x_yardstick']:.1f} | {row['machine_cores']:.2f} "
            f"| {row['calls_per_event']:.3f} | {ratio} |"
        )
    cores = os.cpu_count() or 1
    busy = rows[0]["machine_cores"]
    if busy:
        print(
            f"\nOne worker process kept {busy:.2f} of this machine's {cores} cores busy (workers, "
            f"PostgreSQL, Redis, the fake API, this bench), so two can go at most "
            f"{cores / busy:.2f}x as fast here."
        )
    if args.json:
        summary = {
            "api_latency_ms": API_LATENCY_S * 1000,
            "cores": cores,
            "repeats": args.repeats,
            "yardstick_ms": round(stick, 4),
            "yardsticks": yardsticks,
            "scenarios": rows,
            "runs": {
                name: [
                    {
                        "jobs_per_s": round(r.jobs_per_s, 1),
                        "cpu_ms_per_job": r.cpu_ms_per_job,
                        "machine_cores": round(r.machine_cores, 2),
                    }
                    for r in runs
                ]
                for name, runs in scenarios.items()
            },
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=600, help="distinct-candidate events")
    parser.add_argument("--storm", type=int, default=500, help="events in the duplicate storm")
    parser.add_argument("--resources", type=int, default=5, help="candidates the storm names")
    parser.add_argument("--repeats", type=int, default=3, help="runs per scenario")
    parser.add_argument("--json", type=Path, help="also write the medians here")
    parser.add_argument(
        "--yardstick-events", type=int, default=4000, help="requests per yardstick round"
    )
    parser.add_argument(
        "--per-record-jobs",
        action="store_true",
        help="publish one job per record (events arriving one by one) instead of the batch "
        "jobs the API publishes for a burst",
    )
    asyncio.run(main(parser.parse_args()))
