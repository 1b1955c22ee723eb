"""Where an accepted event's CPU goes in the API process, stage by stage.

    .venv/bin/python -m bench.breakdown [--events 4000] [--concurrency 32]

The same signed KeldairHR events (~2 KB) are driven through the ASGI app in this process (no
sockets, no uvicorn: the HTTP parsing both sides share is left out) by 32 concurrent tasks,
against a real PostgreSQL and Redis (embedded, started here). Each variant replaces one more
piece of the path with a stand-in that does nothing, so the differences between consecutive
rows are what those pieces cost; CPU time is this process's (``time.process_time``), so the
figure does not depend on other load on the machine. The first row is the driver alone (an
ASGI app that answers at once), and every other row is shown less that cost.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson

from app.cli.tenants import load_tenants
from app.intake.core import Intake, Outcome
from app.platform.crypto import generate_key
from app.platform.embedded import start_missing
from app.platform.ids import uuid7
from app.platform.migrate import upgrade
from app.platform.settings import Settings
from app.sources.keldair import sample as keldair_sample
from app.verifiers import standard_webhooks as swh
from bench.intake import SECRET, TENANTS

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


async def _null(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def _requests(n: int) -> list[tuple[dict[str, str], bytes]]:
    out = []
    for i in range(n):
        body = orjson.dumps(keldair_sample(f"evt_breakdown_{uuid.uuid4().hex}_{i}"))
        msg_id = f"msg_{uuid.uuid4().hex}"
        headers = swh.signed_headers(msg_id, body, SECRET, time.time())
        out.append(({**headers, "content-type": "application/json"}, body))
    return out


async def _drive(app: Any, requests: list[tuple[dict[str, str], bytes]], concurrency: int) -> float:
    """CPU ms per request for ``requests`` through ``app``."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        queue = iter(requests)

        async def sender() -> None:
            for headers, body in queue:
                response = await client.post(
                    "/v1/keldair/bench/events", content=body, headers=headers
                )
                if response.status_code != 200:
                    raise SystemExit(f"unexpected {response.status_code}: {response.text[:200]}")

        started = time.process_time()
        await asyncio.gather(*(sender() for _ in range(concurrency)))
        return (time.process_time() - started) * 1000 / len(requests)


@contextlib.contextmanager
def _patched(target: Any, name: str, value: Any) -> Iterator[None]:
    original = getattr(target, name)
    setattr(target, name, value)
    try:
        yield
    finally:
        setattr(target, name, original)


async def _stub_record(self: Intake, event: Any, *, answer_for: Any, **_: Any) -> Outcome:
    record_id = uuid7()
    return Outcome(record_id, answer_for(record_id) if answer_for else None, False, queued=True)


async def _stub_check(*_: Any, **__: Any) -> None:
    return None


def _stub_verify(*_: Any, **__: Any) -> None:
    return None


@contextlib.asynccontextmanager
async def _served(settings: Settings) -> AsyncIterator[Any]:
    from app.main import create_app

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


async def _run(settings: Settings, events: int, concurrency: int) -> list[tuple[str, float]]:
    from app.intake.guard import FailureLimiter
    from bench.baseline import app as baseline

    rows: list[tuple[str, float]] = []
    warm = _requests(300)
    driver = await _drive(_null, _requests(events), concurrency)
    rows.append(("driver alone (subtracted below)", driver))
    rows.append(
        (
            "bare FastAPI endpoint (bench/baseline.py)",
            await _drive(baseline, _requests(events), concurrency) - driver,
        )
    )
    async with _served(settings) as app:
        await _drive(app, warm, concurrency)
        rows.append(
            ("Hirehook, whole path", await _drive(app, _requests(events), concurrency) - driver)
        )
        with _patched(Intake, "record", _stub_record):
            rows.append(
                (
                    "  without recording (group commit, PostgreSQL, Redis publish)",
                    await _drive(app, _requests(events), concurrency) - driver,
                )
            )
            with _patched(FailureLimiter, "check", _stub_check):
                rows.append(
                    (
                        "  ... and without the brute-force guard's check",
                        await _drive(app, _requests(events), concurrency) - driver,
                    )
                )
                with _patched(swh, "verify", _stub_verify):
                    rows.append(
                        (
                            "  ... and without the signature check",
                            await _drive(app, _requests(events), concurrency) - driver,
                        )
                    )
    return rows


def main() -> None:
    """Print CPU ms per request for each variant."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="hirehook-breakdown-"))
    env = dict(os.environ)
    servers = start_missing(env, workdir)
    tenants = workdir / "tenants.toml"
    tenants.write_text(TENANTS)
    env |= {
        "HIREHOOK_ENVIRONMENT": "production",
        # The receivers and fake APIs listen on loopback over http: the outbound-URL policy
        # allows that in production only when listed (docs/operations.md, "Outbound URLs").
        "HIREHOOK_OUTBOUND_ALLOW": "127.0.0.1",
        "HIREHOOK_SECRET_KEY": generate_key(),
        "HIREHOOK_TENANTS_FILE": str(tenants),
        "HIREHOOK_LOG_LEVEL": "WARNING",
    }
    os.environ.update(env)
    try:
        settings = Settings()
        upgrade(settings.database_dsn)
        asyncio.run(load_tenants(settings, tenants))
        from app.platform.logs import configure

        configure("WARNING", "json")
        rows = asyncio.run(_run(settings, args.events, args.concurrency))
    finally:
        for server in reversed(servers):
            server.stop()
    print(f"| variant ({args.events} events, {args.concurrency} concurrent) | CPU ms per request |")
    print("|---|---:|")
    for name, ms in rows:
        print(f"| {name} | {ms:.3f} |")


if __name__ == "__main__":
    main()
