"""Intake benchmark: signed events at the running service versus a bare baseline and a peer.

    .venv/bin/python -m bench.intake [--source keldair|icims] [--events 10000] [--rounds 3]
                                     [--no-worker] [--workers N] [--api-processes N]
                                     [--duplicates] [--prefill N] [--rss] [--no-hookspool]

Starts its own embedded PostgreSQL and Redis (or uses HIREHOOK_DATABASE_URL / _REDIS_URL),
runs `hirehook api` (+ `hirehook worker`), the bare baseline under identical uvicorn settings
and hookspool 0.2.0 (intake only, its own virtual environment), alternating rounds so all
see the same machine noise. For every round it reads the CPU time of each component's process
tree before and after the timed events (the worker's backlog drained at both points) and
reports CPU ms per delivery. It checks the ledgers: events sent = acknowledged = recorded
(= processed with a worker), hookspool's spool holds every distinct event, and with
--duplicates every redelivery got the same answer as its first copy.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.platform.crypto import generate_key
from app.platform.embedded import EmbeddedPostgres, free_port, start_missing
from app.platform.migrate import upgrade_async
from app.platform.settings import Settings
from bench import hookspool, procstat

SECRET = "whsec_YmVuY2gtc2lnbmluZy1zZWNyZXQtMDAwMDAwMDA="
ICIMS_SECRET = "bench-icims-hmac-secret-Vq7rT2mX9kLp4wZ8"
TENANTS = f"""
[[tenant]]
slug = "bench"
name = "Bench"

[[tenant.connection]]
source = "keldair"
secrets = {{ signing_secrets = ["{SECRET}"] }}

[[tenant.connection]]
source = "icims"
account = "bench"
secrets = {{ hmac_secrets = ["{ICIMS_SECRET}"] }}
options = {{ hmac_user = "bench", events = {{ WorkFlowStatusChangeEvent = {{}} }} }}
"""
UVICORN_FLAGS = [
    "--loop",
    "uvloop",
    "--http",
    "httptools",
    "--no-access-log",
    "--log-level",
    "warning",
]
PREFILL_CHUNK = 100_000


async def _wait(url: str) -> None:
    async with httpx.AsyncClient(timeout=1) as client:
        for _ in range(300):
            try:
                await client.get(url)
                return
            except httpx.HTTPError:
                await asyncio.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


async def _start(argv: list[str], env: dict[str, str], port: int) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(*argv, env=env)
    await _wait(f"http://127.0.0.1:{port}/docs")
    return proc


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), 15)
    except TimeoutError:
        proc.kill()
        await proc.wait()


@dataclass
class Target:
    """One thing under load: its ports, the process trees to charge, and its ledger hooks."""

    name: str
    ports: list[int]
    loadgen_args: list[str]
    # component name -> root pids whose trees are charged to it
    components: dict[str, list[int]]
    drain: Callable[[], Any] | None = None
    rounds: list[dict[str, Any]] = field(default_factory=list)


class Bench:
    """Owns the servers, processes and database handle of one benchmark run."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.workdir = Path(tempfile.mkdtemp(prefix="hirehook-bench-"))
        self.env = dict(os.environ)
        self.processes: list[asyncio.subprocess.Process] = []
        self.servers: list[Any] = []
        self.engine: AsyncEngine | None = None
        self.api_pids: list[int] = []
        self.api_ports: list[int] = []
        self.worker_pids: list[int] = []
        self.notes: list[str] = []
        self.spool: hookspool.Hookspool | None = None

    # ---- set-up ---------------------------------------------------------------------------

    async def setup_env(self) -> Settings:
        self.servers = start_missing(self.env, self.workdir)
        tenants = self.workdir / "tenants.toml"
        tenants.write_text(TENANTS)
        self.env |= {
            "HIREHOOK_ENVIRONMENT": "production",
            # The receivers and fake APIs listen on loopback over http: the outbound-URL policy
            # allows that in production only when listed (docs/operations.md, "Outbound URLs").
            "HIREHOOK_OUTBOUND_ALLOW": "127.0.0.1",
            "HIREHOOK_SECRET_KEY": generate_key(),
            "HIREHOOK_TENANTS_FILE": str(tenants),
            "HIREHOOK_LOG_LEVEL": "WARNING",
        }
        os.environ.update(self.env)
        settings = Settings()
        await upgrade_async(settings.database_dsn)
        self.engine = create_async_engine(settings.database_dsn, pool_size=1, max_overflow=0)
        return settings

    async def infra_pids(self) -> dict[str, list[int]]:
        """The bench's own PostgreSQL (postmaster tree) and Redis, if it started them."""
        out: dict[str, list[int]] = {}
        for server in self.servers:
            if isinstance(server, EmbeddedPostgres):
                pidfile = server.datadir / "postmaster.pid"
                out["postgres"] = [int(pidfile.read_text().splitlines()[0])]
            else:
                from redis.asyncio import Redis

                client = Redis.from_url(server.url)
                info = await client.info("server")
                await client.aclose()
                out["redis"] = [int(info["process_id"])]
        return out

    async def start_hirehook(self) -> list[int]:
        ports = []
        for _ in range(self.args.api_processes):
            port = free_port()
            api = await _start(
                [sys.executable, "-m", "app.cli", "api", "--port", str(port)], self.env, port
            )
            self.processes.append(api)
            self.api_pids.append(api.pid)
            self.api_ports.append(port)
            ports.append(port)
        for _ in range(self.args.workers):
            worker = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "app.cli", "worker", env=self.env
            )
            self.processes.append(worker)
            self.worker_pids.append(worker.pid)
        return ports

    async def start_baseline(self) -> tuple[int, int]:
        port = free_port()
        argv = [sys.executable, "-m", "uvicorn", "bench.baseline:app", "--port", str(port)]
        if self.args.api_processes > 1:
            # The same number of server processes as Hirehook's API gets, for a fair ratio.
            argv += ["--workers", str(self.args.api_processes)]
        proc = await _start([*argv, *UVICORN_FLAGS], self.env, port)
        self.processes.append(proc)
        return port, proc.pid

    async def start_hookspool(self) -> Target | str:
        """hookspool as a target, or the reason it cannot run here."""
        if self.args.source != "keldair":
            return (
                "unavailable: the generic HMAC template reads JSON bodies; iCIMS bodies are gzip'd"
            )
        try:
            exe = await asyncio.to_thread(hookspool.install)
            spool = hookspool.Hookspool(exe, self.workdir / "hookspool", free_port())
            await asyncio.to_thread(
                spool.configure, self.args.hookspool_threads or self.args.concurrency
            )
        except (hookspool.UnavailableError, OSError, subprocess.TimeoutExpired) as exc:
            return f"unavailable: {exc}"
        # It logs a line per event at INFO and has no setting to lower that; a file takes
        # them, as a deployment's journal would.
        with (spool.home / "intake.log").open("ab") as log:
            proc = await asyncio.create_subprocess_exec(
                str(spool.exe), "intake", env=spool.env, stdout=log, stderr=log
            )
        self.processes.append(proc)
        try:
            await _wait(f"http://127.0.0.1:{spool.port}/")
        except SystemExit:
            return "unavailable: its intake did not answer (--keep-workdir keeps its log)"
        self.spool = spool
        return Target(
            "hookspool",
            [spool.port],
            [
                "--scheme",
                "hmac-sha256",
                "--header",
                hookspool.HEADER,
                "--prefix",
                hookspool.PREFIX,
                "--path",
                hookspool.PATH,
                "--secret",
                hookspool.SECRET,
            ],
            {"server": [proc.pid]},
        )

    async def prepare(self, summary: dict[str, Any]) -> tuple[list[Target], Target | str]:
        """Start every server; prefill; the targets in round order, and the peer or why not."""
        args = self.args
        infra = await self.infra_pids()
        base_port, base_pid = await self.start_baseline()
        api_ports = await self.start_hirehook()
        components = {"api": self.api_pids, "worker": self.worker_pids, **infra}
        if not self.worker_pids:
            del components["worker"]
        secret = ICIMS_SECRET if args.source == "icims" else SECRET
        if args.prefill:
            # One real event gives the rows to copy; its signature, answer and sizes are real.
            seed = Target("seed", api_ports, ["--secret", secret], {})
            await self.round(seed, 2, 0)
            await self.drain()
            summary["prefill_s"] = round(await self.prefill(args.prefill), 1)
        targets = [
            Target("baseline", [base_port], ["--secret", secret], {"server": [base_pid]}),
            Target("hirehook", api_ports, ["--secret", secret], components, self.drain),
        ]
        peer: Target | str = "not run (--no-hookspool)"
        if args.hookspool and args.rounds:
            peer = await self.start_hookspool()
            if isinstance(peer, Target):
                targets.append(peer)
        return targets, peer

    async def close(self) -> None:
        """Stop everything started, and remove the temporary directory unless kept."""
        for proc in reversed(self.processes):
            await _stop(proc)
        if self.engine is not None:
            await self.engine.dispose()
        for server in reversed(self.servers):
            server.stop()
        # A prefilled database takes gigabytes; keep it only when asked to.
        if not self.args.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # ---- the database ---------------------------------------------------------------------

    async def counts(self) -> dict[str, int]:
        assert self.engine is not None
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        "SELECT (SELECT count(*) FROM record),"
                        " (SELECT count(*) FROM outbox WHERE done_at IS NOT NULL),"
                        " (SELECT count(*) FROM outbox WHERE done_at IS NULL),"
                        " (SELECT count(*) FROM dead_letter)"
                    )
                )
            ).one()
        return {"records": row[0], "processed": row[1], "pending": row[2], "dead": row[3]}

    async def drain(self) -> None:
        """Wait until the worker has finished every outbox row (bounded)."""
        if not self.worker_pids:
            return
        assert self.engine is not None
        deadline = time.monotonic() + self.args.drain_timeout
        while time.monotonic() < deadline:
            # Only the pending rows (a partial index): counting a prefilled table here would
            # charge PostgreSQL for the bench's own polling.
            async with self.engine.connect() as conn:
                pending = await conn.execute(
                    text("SELECT EXISTS (SELECT 1 FROM outbox WHERE done_at IS NULL)")
                )
                if not pending.scalar_one():
                    return
            await asyncio.sleep(0.2)
        self.notes.append("the worker had not drained within --drain-timeout")

    async def prefill(self, n: int) -> float:
        """Copy one real record (and its outbox row, finished) ``n`` times with distinct
        dedupe keys, so the table holds realistically sized rows; returns seconds taken."""
        assert self.engine is not None
        started = time.monotonic()
        done = 0
        while done < n:
            chunk = min(PREFILL_CHUNK, n - done)
            async with self.engine.begin() as conn:
                await conn.execute(
                    text(
                        """
                        WITH template AS (
                            SELECT r.*, o.task, k.answer_status, k.answer_headers,
                                   k.answer_body
                            FROM record r JOIN record_key k ON k.id = r.id
                            JOIN outbox o ON o.record_id = r.id
                            ORDER BY r.received_at LIMIT 1
                        ), rows AS (
                            -- Within this month: partitions exist from this month on.
                            SELECT gen_random_uuid() AS id, 'prefill-' || g AS dedupe_key,
                                   greatest(date_trunc('month', now()),
                                            now() - interval '1 day') AS at
                            FROM generate_series(CAST(:lo AS bigint), CAST(:hi AS bigint)) AS g
                        ), keys AS (
                            INSERT INTO record_key (id, tenant_id, connection_id, source,
                                dedupe_key, answer_status, answer_headers, answer_body,
                                received_at)
                            SELECT x.id, t.tenant_id, t.connection_id, t.source, x.dedupe_key,
                                t.answer_status, t.answer_headers, t.answer_body, x.at
                            FROM rows x, template t
                            RETURNING id
                        ), copied AS (
                            INSERT INTO record (id, tenant_id, connection_id, source, dedupe_key,
                                event_type, known, state, subjects, thread, headers, payload,
                                raw_body, received_at, processed_at)
                            SELECT x.id, t.tenant_id, t.connection_id, t.source,
                                x.dedupe_key, t.event_type, t.known, t.state, t.subjects,
                                t.thread, t.headers, t.payload, t.raw_body, x.at, x.at
                            FROM rows x JOIN keys USING (id), template t
                            RETURNING id, received_at
                        )
                        INSERT INTO outbox (record_id, task, created_at, available_at,
                            attempts, done_at)
                        SELECT c.id, t.task, c.received_at, c.received_at, 1, c.received_at
                        FROM copied c, template t
                        """
                    ),
                    {"lo": done, "hi": done + chunk - 1},
                )
            done += chunk
            print(f"prefill: {done:,} / {n:,}", flush=True)
        # A table that grew to this size in service has been vacuumed along the way; without
        # this, autovacuum would reach the new rows during the timed rounds.
        async with self.engine.connect() as conn:
            auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await auto.execute(text("VACUUM ANALYZE record_key, record, outbox"))
        return time.monotonic() - started

    async def crash(self, target: Target, failures: list[str]) -> dict[str, Any]:
        """kill -9 every API process ``--kill-api-after`` seconds into a load whose senders
        resend until acknowledged, restart them on the same ports, and look up every
        acknowledged event: an acknowledged event missing from PostgreSQL is a lost one."""
        start = await self.counts()
        proc = await asyncio.create_subprocess_exec(
            *self.loadgen_argv(target, self.args.events, 0),
            "--retry",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=1 << 26,
        )
        assert proc.stdin is not None and proc.stdout is not None
        if not await proc.stdout.readline():
            raise SystemExit("the load generator failed before the crash run")
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()
        await asyncio.sleep(self.args.kill_api_after)
        for pid in procstat.tree(self.api_pids):
            os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        old = [p for p in self.processes if p.pid in self.api_pids]
        for dead in old:
            await dead.wait()
            self.processes.remove(dead)
        self.api_pids.clear()
        for port in self.api_ports:
            api = await _start(
                [sys.executable, "-m", "app.cli", "api", "--port", str(port)], self.env, port
            )
            self.processes.append(api)
            self.api_pids.append(api.pid)
        restarted = time.monotonic() - killed
        line = await proc.stdout.readline()
        await proc.wait()
        if proc.returncode != 0 or not line:
            raise SystemExit("the load generator failed during the crash run")
        result: dict[str, Any] = orjson.loads(line)
        await self.drain()
        ids: list[str] = result.pop("acknowledged_ids")
        assert self.engine is not None
        async with self.engine.connect() as conn:
            found = (
                await conn.execute(
                    text("SELECT count(*) FROM record WHERE dedupe_key = ANY(:ids)"),
                    {"ids": ids},
                )
            ).scalar_one()
        end = await self.counts()
        out = {
            "killed_after_s": self.args.kill_api_after,
            "api_back_after_s": round(restarted, 1),
            "sent": self.args.events,
            "acknowledged": len(ids),
            "acknowledged_and_recorded": int(found),
            "lost": len(ids) - int(found),
            "recorded": end["records"] - start["records"],
            "processed": end["processed"] - start["processed"],
            "connection_errors": result["connection_errors"],
            "resent_after_non_2xx": result["retried"],
            "statuses": result["statuses"],
        }
        if not out["connection_errors"]:
            self.notes.append("crash: the kill hit no request in flight; lower --kill-api-after")
        if out["lost"]:
            failures.append(f"crash: {out['lost']} acknowledged events were not recorded")
        if out["recorded"] != out["sent"] or len(ids) != out["sent"]:
            failures.append("crash: sent, acknowledged and recorded differ")
        return out

    # ---- load -----------------------------------------------------------------------------

    def loadgen_argv(self, target: Target, events: int, warmup: int) -> list[str]:
        argv = [sys.executable, "-m", "bench.loadgen", "--sync"]
        for port in target.ports:
            argv += ["--port", str(port)]
        argv += [
            "--source",
            self.args.source,
            "--events",
            str(events),
            "--warmup",
            str(warmup),
            "--concurrency",
            str(self.args.concurrency),
            *target.loadgen_args,
        ]
        if self.args.duplicates:
            argv.append("--duplicates")
        return argv

    async def round(self, target: Target, events: int, warmup: int) -> dict[str, Any]:
        """One run of the load generator at ``target``, charged CPU per component."""
        proc = await asyncio.create_subprocess_exec(
            *self.loadgen_argv(target, events, warmup),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdin is not None and proc.stdout is not None
        ready = await proc.stdout.readline()
        if not ready:
            await proc.wait()
            raise SystemExit(f"the load generator failed against {target.name}")
        if target.drain is not None:
            await target.drain()
        before = {k: procstat.cpu_seconds(pids) for k, pids in target.components.items()}
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()
        line = await proc.stdout.readline()
        if target.drain is not None:
            await target.drain()
        after = {k: procstat.cpu_seconds(pids) for k, pids in target.components.items()}
        await proc.wait()
        if proc.returncode != 0 or not line:
            raise SystemExit(f"the load generator failed against {target.name}")
        result: dict[str, Any] = orjson.loads(line)
        cpu = {k: after[k] - before[k] for k in before}
        cpu["loadgen"] = result["loadgen_cpu_s"]
        deliveries = max(result["sent"], 1)
        result["cpu_ms_per_event"] = {k: round(v * 1000 / deliveries, 3) for k, v in cpu.items()}
        result["cpu_ms_per_event"]["total"] = round(sum(cpu.values()) * 1000 / deliveries, 3)
        return result


def _median(rounds: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in rounds))


def _summary(target: Target) -> dict[str, Any]:
    rounds = target.rounds
    out: dict[str, Any] = {k: _median(rounds, k) for k in ("events_per_s", "p50_ms", "p99_ms")}
    names = rounds[0]["cpu_ms_per_event"].keys()
    out["cpu_ms_per_event"] = {
        k: round(statistics.median(r["cpu_ms_per_event"][k] for r in rounds), 3) for k in names
    }
    out["rounds"] = [
        {k: r[k] for k in ("events_per_s", "p50_ms", "p99_ms", "statuses", "cpu_ms_per_event")}
        for r in rounds
    ]
    return out


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    bench = Bench(args)
    summary: dict[str, Any] = {
        "source": args.source,
        "events_per_round": args.events,
        "rounds": args.rounds,
        "concurrency": args.concurrency,
        "worker": args.workers > 0,
        "workers": args.workers,
        "api_processes": args.api_processes,
        "duplicates": args.duplicates,
        "prefill": args.prefill,
    }
    failures: list[str] = []
    try:
        await bench.setup_env()
        targets, peer = await bench.prepare(summary)
        start_counts = await bench.counts()
        for i in range(args.rounds):
            for target in targets:
                target.rounds.append(await bench.round(target, args.events, args.warmup))
            print(
                f"round {i + 1}: "
                + ", ".join(f"{t.name} {t.rounds[-1]['events_per_s']}/s" for t in targets),
                flush=True,
            )
        if args.rss:
            summary["rss"] = await _rss(bench, targets[1], args)
        await bench.drain()
        end_counts = await bench.counts()
        if args.kill_api_after:
            summary["crash"] = await bench.crash(targets[1], failures)
        spooled = bench.spool.events() if bench.spool is not None else 0
    finally:
        await bench.close()

    summary["ledger"] = _hirehook_ledger(
        targets[1].rounds + summary.get("rss", {}).get("loads", []),
        start_counts,
        end_counts,
        args,
        failures,
    )
    if args.rounds:
        summary["baseline"] = _summary(targets[0])
        summary["hirehook"] = _summary(targets[1])
        summary["ratio_events_per_s"] = round(
            summary["hirehook"]["events_per_s"] / summary["baseline"]["events_per_s"], 3
        )
    if isinstance(peer, Target):
        summary["hookspool"] = _peer_summary(peer, spooled, summary["baseline"], args, failures)
    else:
        summary["hookspool"] = peer
    if bench.notes:
        summary["notes"] = bench.notes
    summary["ledger_failures"] = failures
    return summary


def _hirehook_ledger(
    rounds: list[dict[str, Any]],
    start: dict[str, int],
    end: dict[str, int],
    args: argparse.Namespace,
    failures: list[str],
) -> dict[str, Any]:
    ledger: dict[str, Any] = {
        "sent": sum(r["events"] + r["warmup"] for r in rounds),
        "deliveries": sum(r["sent"] + r["warmup_sent"] for r in rounds),
        "acknowledged": sum(r["acknowledged"] + r["warmup_acknowledged"] for r in rounds),
        "recorded": end["records"] - start["records"],
        "processed": end["processed"] - start["processed"],
        "dead_letters": end["dead"] - start["dead"],
    }
    if args.duplicates:
        ledger["same_answer"] = sum(r["same_answer"] for r in rounds)
        ledger["different_answer"] = sum(r["different_answer"] for r in rounds)
    if ledger["deliveries"] != ledger["acknowledged"]:
        failures.append("hirehook: not every delivery was acknowledged")
    if ledger["sent"] != ledger["recorded"]:
        failures.append("hirehook: recorded events differ from distinct events sent")
    if args.workers and ledger["processed"] != ledger["recorded"]:
        failures.append("hirehook: processed events differ from recorded")
    if args.duplicates and ledger["different_answer"]:
        failures.append("hirehook: a redelivery got a different answer from its first copy")
    return ledger


def _peer_summary(
    peer: Target,
    spooled: int,
    baseline: dict[str, Any],
    args: argparse.Namespace,
    failures: list[str],
) -> dict[str, Any]:
    out = _summary(peer)
    out["ratio_events_per_s"] = round(out["events_per_s"] / baseline["events_per_s"], 3)
    ledger: dict[str, Any] = {
        "sent": sum(r["events"] + r["warmup"] for r in peer.rounds),
        "deliveries": sum(r["sent"] + r["warmup_sent"] for r in peer.rounds),
        "acknowledged": sum(r["acknowledged"] + r["warmup_acknowledged"] for r in peer.rounds),
        "spooled": spooled,
    }
    if args.duplicates:
        # hookspool answers a redelivery {"status":"duplicate"}, its first copy "queued":
        # reported, not held against it.
        ledger["same_answer"] = sum(r["same_answer"] for r in peer.rounds)
    if ledger["spooled"] != ledger["sent"]:
        failures.append("hookspool: spooled events differ from distinct events sent")
    if ledger["acknowledged"] != ledger["deliveries"]:
        failures.append("hookspool: not every delivery was acknowledged")
    out["ledger"] = ledger
    return out


async def _rss(bench: Bench, target: Target, args: argparse.Namespace) -> dict[str, Any]:
    """API resident memory after the first tenth of ``--rss-events`` and after all of them."""
    first = args.rss_events // 10
    loads = [await bench.round(target, first, args.warmup)]
    at_first = procstat.rss_bytes(bench.api_pids)
    loads.append(await bench.round(target, args.rss_events - first, 0))
    at_end = procstat.rss_bytes(bench.api_pids)
    return {
        "events": args.rss_events,
        "rss_mb_at": {
            str(first + args.warmup): round(at_first / 2**20, 1),
            str(args.rss_events + args.warmup): round(at_end / 2**20, 1),
        },
        "growth": round(at_end / at_first - 1, 3),
        "events_per_s": [r["events_per_s"] for r in loads],
        "loads": loads,
    }


def main() -> None:
    """Run the benchmark and print a summary."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=500, help="untimed events per round")
    parser.add_argument(
        "--source",
        choices=["keldair", "icims"],
        default="keldair",
        help="KeldairHR (Standard Webhooks, ~2 KB) or iCIMS (gzip'd, HMAC-signed)",
    )
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--no-worker", action="store_true", help="API only, no arq worker")
    parser.add_argument("--workers", type=int, default=1, help="hirehook worker processes")
    parser.add_argument(
        "--api-processes",
        type=int,
        default=1,
        help="hirehook api processes, each on its own port; connections are spread over all",
    )
    parser.add_argument(
        "--duplicates",
        action="store_true",
        help="send every event twice: the second copy once the first is answered",
    )
    parser.add_argument(
        "--prefill", type=int, default=0, help="records (+ finished outbox rows) to add first"
    )
    parser.add_argument(
        "--rss", action="store_true", help="then send --rss-events events and sample API RSS"
    )
    parser.add_argument("--rss-events", type=int, default=100_000)
    parser.add_argument(
        "--no-hookspool", dest="hookspool", action="store_false", help="skip the peer column"
    )
    parser.add_argument(
        "--hookspool-threads",
        type=int,
        default=0,
        help="hookspool intake threads (default: one per sender)",
    )
    parser.add_argument(
        "--kill-api-after",
        type=float,
        default=0,
        help="then kill -9 the API this many seconds into one more load of --events "
        "(KeldairHR; senders resend until acknowledged) and check no acknowledged event is lost",
    )
    parser.add_argument(
        "--keep-workdir",
        action="store_true",
        help="keep the temporary directory (databases, hookspool's spool and log)",
    )
    parser.add_argument("--drain-timeout", type=float, default=180, help="seconds")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.no_worker:
        args.workers = 0
    if args.kill_api_after and args.source != "keldair":
        parser.error("--kill-api-after reads event ids from KeldairHR bodies; use --source keldair")

    summary = asyncio.run(amain(args))
    rendered = orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode()
    print(rendered)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(rendered)
    if summary["ledger_failures"]:
        raise SystemExit("ledger does not balance: " + "; ".join(summary["ledger_failures"]))


if __name__ == "__main__":
    main()
