"""Metrics of real processes: `hirehook api --workers 2` (prometheus-client's multiprocess
mode) and `hirehook worker --metrics-port`, scraped as Prometheus would, while events flow.

Also the request id: sent by the caller, echoed in the answer, and on the worker's log lines
for the record that request recorded.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.platform.embedded import free_port
from app.platform.settings import Settings
from app.services import Services
from tests.support.app import add_connection
from tests.support.keldair import SECRET, event, signed
from tests.support.workers import log_events, worker_env

URL = "/v1/keldair/acme/events"


@dataclass
class Stack:
    api: str
    worker_metrics: str
    multiproc_dir: Path
    worker_log: Path


def wait_until_up(url: str, what: str) -> None:
    for _ in range(300):
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    pytest.fail(f"{what} did not come up")


@pytest.fixture
def stack(settings: Settings, services: Services, tmp_path: Path) -> Iterator[Stack]:
    port, metrics_port = free_port(), free_port()
    multiproc = tmp_path / "metrics"
    multiproc.mkdir()
    # A file left by an earlier run must not be counted: the API empties the directory.
    (multiproc / "counter_999999.db").write_bytes(b"stale")
    # With the default grace the sweeper never republishes a job before the API publishes
    # it, so every job carries its request id.
    env = worker_env(settings, outbox_grace_s="15")
    cli = [sys.executable, "-m", "app.cli"]
    api_log, worker_log = tmp_path / "api.log", tmp_path / "worker.log"
    with api_log.open("wb") as out:
        api = subprocess.Popen(
            [*cli, "api", "--port", str(port), "--workers", "2"],
            env={**env, "PROMETHEUS_MULTIPROC_DIR": str(multiproc)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    with worker_log.open("wb") as out:
        worker = subprocess.Popen(
            [*cli, "worker", "--metrics-port", str(metrics_port)],
            env={**env, "HIREHOOK_WORKER_METRICS_HOST": "127.0.0.1"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/health/ready", "the API")
        # The first process to start answers the readiness probe; wait for the second too,
        # or on a loaded machine it may take no request at all.
        for _ in range(600):
            if api_log.read_text(errors="replace").count("Application startup complete") >= 2:
                break
            time.sleep(0.1)
        else:
            pytest.fail("the second uvicorn process did not start")
        wait_until_up(f"http://127.0.0.1:{metrics_port}/metrics", "the worker's metrics")
        yield Stack(
            f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}", multiproc, worker_log
        )
    finally:
        for proc in (api, worker):
            proc.terminate()
        for proc in (api, worker):
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


def sample(exposition: str, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (0 if none)."""
    total = 0.0
    for family in text_string_to_metric_families(exposition):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


async def send_events(base: str, count: int) -> list[str]:
    """``count`` signed events at once, each on its own connection; their record ids."""

    async def one() -> str:
        body = orjson.dumps(event(str(uuid.uuid4())))
        # A connection per request, so the kernel hands them to either uvicorn process.
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            response = await client.post(URL, content=body, headers=signed(body))
        assert response.status_code == 200, response.text
        return response.headers["hirehook-record-id"]

    return list(await asyncio.gather(*(one() for _ in range(count))))


def writers(directory: Path) -> set[str]:
    """The process ids that wrote counter values to the multiprocess directory."""
    return {p.stem.rsplit("_", 1)[1] for p in directory.glob("counter_*.db")}


async def scrape(url: str) -> str:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(f"{url}/metrics")
    assert response.status_code == 200
    return response.text


RECORDED = {"source": "keldair", "event_type": "applicant.hired", "outcome": "recorded"}


# Processes to start and a worker to drain: slow on a loaded machine.
@pytest.mark.timeout(300)
async def test_counters_sum_over_api_processes_and_workers_report_their_own(
    services: Services, stack: Stack
) -> None:
    await add_connection(
        services, tenant="acme", source="keldair", secrets={"signing_secrets": [SECRET]}
    )
    assert "999999" not in writers(stack.multiproc_dir)
    sent: list[str] = []
    # Until both processes have answered some: the kernel decides which one accepts.
    for _ in range(20):
        sent += await send_events(stack.api, 10)
        if len(writers(stack.multiproc_dir)) >= 2:
            break
    assert len(writers(stack.multiproc_dir)) >= 2, "one uvicorn process took every request"

    # Whichever process answers the scrape, it reports every process's counts.
    for _ in range(6):
        body = await scrape(stack.api)
        assert sample(body, "hirehook_events_total", **RECORDED) == len(sent)
        assert sample(body, "hirehook_ack_seconds_count", source="keldair", status="200") == len(
            sent
        )
        assert sample(body, "hirehook_intake_seconds_count", source="keldair") == len(sent)

    # A duplicate and a forged signature move their own series.
    body_bytes = orjson.dumps(event("dup-1"))
    async with httpx.AsyncClient(base_url=stack.api, timeout=30) as client:
        for _ in range(2):
            assert (
                await client.post(URL, content=body_bytes, headers=signed(body_bytes))
            ).is_success
        forged = signed(body_bytes, secret="whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB")
        assert (await client.post(URL, content=body_bytes, headers=forged)).status_code == 401
    sent.append("dup-1")
    body = await scrape(stack.api)
    assert sample(body, "hirehook_events_total", **RECORDED) == len(sent)
    duplicate = {**RECORDED, "outcome": "duplicate"}
    assert sample(body, "hirehook_events_total", **duplicate) == 1
    assert sample(body, "hirehook_auth_failures_total", source="keldair") == 1
    assert sample(body, "hirehook_refused_total", source="keldair", status="401") == 1
    assert sample(body, "hirehook_outbox_backlog") >= 0

    # The worker's own endpoint: every record processed is counted, and the count moves.
    deadline = time.monotonic() + 60
    processed = 0.0
    while time.monotonic() < deadline:
        worker = await scrape(stack.worker_metrics)
        processed = sample(worker, "hirehook_records_processed_total", source="keldair")
        if processed >= len(sent):
            break
        await asyncio.sleep(0.3)
    assert processed == len(sent)
    more = await send_events(stack.api, 5)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        worker = await scrape(stack.worker_metrics)
        processed = sample(worker, "hirehook_records_processed_total", source="keldair")
        if processed >= len(sent) + len(more):
            break
        await asyncio.sleep(0.3)
    assert processed == len(sent) + len(more)
    # Group-committed records are enriched by batch jobs, lone ones by single-record jobs.
    runs = sum(
        sample(worker, "hirehook_job_seconds_count", job=job)
        for job in ("process_record", "process_records")
    )
    assert runs >= 1
    assert sample(await scrape(stack.api), "hirehook_events_total", **RECORDED) == len(sent) + 5


# Processes to start and a worker to drain: slow on a loaded machine.
@pytest.mark.timeout(300)
async def test_request_id_is_echoed_and_carried_into_the_job(
    services: Services, stack: Stack
) -> None:
    await add_connection(
        services, tenant="acme", source="keldair", secrets={"signing_secrets": [SECRET]}
    )
    body = orjson.dumps(event("traced-1"))
    async with httpx.AsyncClient(base_url=stack.api, timeout=30) as client:
        traced = await client.post(
            URL, content=body, headers={**signed(body), "X-Request-Id": "trace-7f3a.1"}
        )
        # Not plain, or too long: replaced by a generated one rather than logged as sent.
        odd = await client.get("/health/live", headers={"X-Request-Id": "a b\tc" + "x" * 200})
        plain = await client.get("/health/live")
    assert traced.status_code == 200
    assert traced.headers["x-request-id"] == "trace-7f3a.1"
    assert odd.headers["x-request-id"] != "a b\tc" + "x" * 200
    assert len(odd.headers["x-request-id"]) == 32
    assert plain.headers["x-request-id"] != odd.headers["x-request-id"]
    record_id = traced.headers["hirehook-record-id"]

    deadline = time.monotonic() + 60
    done: list[dict[str, object]] = []
    while time.monotonic() < deadline and not done:
        done = [
            line
            for line in log_events(stack.worker_log, "job.record_processed")
            if line.get("record_id") == record_id
        ]
        await asyncio.sleep(0.2)
    assert done, "the worker did not process the record"
    [line] = done
    assert line["request_id"] == "trace-7f3a.1"
    assert line["tenant"] == "acme"
