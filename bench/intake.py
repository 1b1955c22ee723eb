"""Intake benchmark: signed events at the running service versus a bare baseline.

    .venv/bin/python -m bench.intake [--source keldair|icims] [--events 10000] [--rounds 3]
                                     [--no-worker]

Starts its own embedded PostgreSQL and Redis (or uses HIREHOOK_DATABASE_URL / _REDIS_URL),
runs `hirehook api` (+ `hirehook worker`) and the baseline under identical uvicorn settings,
alternating rounds so both see the same machine noise, and checks the ledger:
events sent = acknowledged = recorded.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
from sqlalchemy import text

from app.crypto import generate_key
from app.embedded import free_port, start_missing
from app.migrate import upgrade
from app.settings import Settings

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


def _wait(url: str) -> None:
    for _ in range(200):
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


def _start(argv: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(argv, env=env)
    _wait(f"http://127.0.0.1:{port}/docs")
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()


def _load(port: int, args: argparse.Namespace) -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.loadgen",
            "--port",
            str(port),
            "--secret",
            SECRET,
            "--events",
            str(args.events),
            "--concurrency",
            str(args.concurrency),
        ],
        check=True,
        capture_output=True,
    )
    result: dict[str, Any] = orjson.loads(out.stdout)
    return result


async def _count(settings: Settings) -> tuple[int, int, int]:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(settings.database_dsn)
    async with engine.connect() as conn:
        records = (await conn.execute(text("SELECT count(*) FROM record"))).scalar_one()
        done = (
            await conn.execute(text("SELECT count(*) FROM outbox WHERE done_at IS NOT NULL"))
        ).scalar_one()
        dead = (await conn.execute(text("SELECT count(*) FROM dead_letter"))).scalar_one()
    await engine.dispose()
    return int(records), int(done), int(dead)


def main() -> None:
    """Run the benchmark and print a summary."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--source",
        choices=["keldair", "icims"],
        default="keldair",
        help="KeldairHR (Standard Webhooks, ~2 KB) or iCIMS (gzip'd, HMAC-signed)",
    )
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--no-worker", action="store_true", help="API only, no arq worker")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="hirehook-bench-"))
    env = dict(os.environ)
    servers = start_missing(env, workdir)
    tenants = workdir / "tenants.toml"
    tenants.write_text(TENANTS)
    env |= {
        "HIREHOOK_ENVIRONMENT": "production",
        "HIREHOOK_SECRET_KEY": generate_key(),
        "HIREHOOK_TENANTS_FILE": str(tenants),
        "HIREHOOK_LOG_LEVEL": "WARNING",
    }
    os.environ.update(env)
    settings = Settings()
    upgrade(settings.database_dsn)
    processes: list[subprocess.Popen[bytes]] = []
    rounds: dict[str, list[dict[str, Any]]] = {"baseline": [], "hirehook": []}
    try:
        base_port, api_port = free_port(), free_port()
        baseline = _start(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "bench.baseline:app",
                "--port",
                str(base_port),
                *UVICORN_FLAGS,
            ],
            env,
            base_port,
        )
        processes.append(baseline)
        api = _start(
            [sys.executable, "-m", "app.cli", "api", "--port", str(api_port)], env, api_port
        )
        processes.append(api)
        if not args.no_worker:
            processes.append(subprocess.Popen([sys.executable, "-m", "app.cli", "worker"], env=env))
        for i in range(args.rounds):
            rounds["baseline"].append(_load(base_port, args))
            rounds["hirehook"].append(_load(api_port, args))
            print(
                f"round {i + 1}: baseline {rounds['baseline'][-1]['events_per_s']}/s, "
                f"hirehook {rounds['hirehook'][-1]['events_per_s']}/s",
                flush=True,
            )
        # Let the worker drain so the ledger can also show processed records.
        deadline = time.monotonic() + 180
        sent = sum(r["sent"] + r["warmup"] for r in rounds["hirehook"])
        while not args.no_worker and time.monotonic() < deadline:
            if asyncio.run(_count(settings))[1] >= sent:
                break
            time.sleep(0.5)
        recorded, processed, dead = asyncio.run(_count(settings))
    finally:
        for proc in reversed(processes):
            _stop(proc)
        for server in reversed(servers):
            server.stop()

    def med(name: str, key: str) -> float:
        return float(statistics.median(r[key] for r in rounds[name]))

    acknowledged = sum(r["acknowledged"] + r["warmup"] for r in rounds["hirehook"])
    summary = {
        "source": args.source,
        "events_per_round": args.events,
        "rounds": args.rounds,
        "concurrency": args.concurrency,
        "worker": not args.no_worker,
        "baseline": {k: med("baseline", k) for k in ("events_per_s", "p50_ms", "p99_ms")},
        "hirehook": {k: med("hirehook", k) for k in ("events_per_s", "p50_ms", "p99_ms")},
        "ledger": {
            "sent": sent,
            "acknowledged": acknowledged,
            "recorded": recorded,
            "processed": processed,
            "dead_letters": dead,
        },
    }
    summary["ratio_events_per_s"] = round(
        summary["hirehook"]["events_per_s"] / summary["baseline"]["events_per_s"], 3
    )
    print(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())
    if args.json:
        args.json.write_text(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())
    if not sent == acknowledged == recorded:
        raise SystemExit("ledger does not balance: sent, acknowledged and recorded differ")


if __name__ == "__main__":
    main()
