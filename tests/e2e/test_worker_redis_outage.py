"""Redis goes away under a running ``hirehook worker``: the worker waits for it, and what was
committed meanwhile is processed once it is back. ``hirehook dev`` restarts a child that dies.

Redis here is a throwaway ``redis-server`` of the test's own, stopped and started again on the
same port (without persistence, as the embedded one runs: a restart loses every queued job).
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
import uuid
from pathlib import Path

from app.cli.dev import Child, supervise
from app.intake.connections import ConnectionInfo
from app.platform.embedded import EmbeddedRedis
from app.platform.settings import Settings
from app.services import Services
from tests.support.app import add_connection, make_settings
from tests.support.keldair import SECRET
from tests.support.workers import log_events, record_event, rows, spawn_worker, worker_env


async def processed(services: Services, record_id: uuid.UUID, within_s: float) -> bool:
    """Whether the record reaches ``processed`` within ``within_s``."""
    end = time.monotonic() + within_s
    while time.monotonic() < end:
        [row] = await rows(services, "SELECT state FROM record WHERE id = :id", id=record_id)
        if row.state == "processed":
            return True
        await asyncio.sleep(0.2)
    return False


async def keldair(services: Services) -> ConnectionInfo:
    await add_connection(
        services, tenant="acme", source="keldair", secrets={"signing_secrets": [SECRET]}
    )
    info = await services.connections.by_tenant("acme", "keldair")
    assert info is not None
    return info


async def logged(log: Path, event: str, count: int, within_s: float) -> bool:
    """Whether the subprocess logs ``event`` ``count`` times within ``within_s``."""
    end = time.monotonic() + within_s
    while time.monotonic() < end:
        if len(log_events(log, event)) >= count:
            return True
        await asyncio.sleep(0.1)
    return False


async def test_the_worker_waits_for_redis_at_start_and_rides_out_a_restart(
    services: Services, settings: Settings, tmp_path: Path
) -> None:
    connection = await keldair(services)
    redis = EmbeddedRedis(tmp_path / "redis")
    env = worker_env(make_settings(str(settings.database_url), redis.url), sweep_interval_s="1")
    log = tmp_path / "worker.log"
    # Redis is not there yet: the worker waits for it rather than exit.
    worker = spawn_worker(env, log, burst=False)
    try:
        assert await logged(log, "worker.redis_unavailable", 1, 20), log.read_text()
        redis.start()
        # Not published: the worker's own sweeper finds it in the outbox.
        before = await record_event(
            services, connection, "applicant.hired", {"data": {}}, publish=False
        )
        assert await processed(services, before, 20), log.read_text()

        redis.stop()
        during = await record_event(
            services, connection, "applicant.hired", {"data": {}}, publish=False
        )
        await asyncio.sleep(3)
        assert worker.poll() is None, log.read_text()

        redis = EmbeddedRedis(tmp_path / "redis", port=redis.port)
        redis.start()
        # Redis came back empty: the sweeper republishes what the outbox still owes.
        assert await processed(services, during, 20), log.read_text()
        assert worker.poll() is None
        # Said once per outage, not once per failed poll.
        lost = log_events(log, "worker.redis_unavailable")
        assert [entry["level"] for entry in lost] == ["warning", "warning"]
        back = log_events(log, "worker.redis_restored")
        assert len(back) == 2 and back[1]["outage_s"] >= 2.5
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
        await asyncio.to_thread(worker.wait, 15)
        redis.stop()
    assert worker.returncode == 0, log.read_text()


def test_dev_restarts_a_child_that_dies_with_a_growing_pause() -> None:
    env = {"PATH": "/usr/bin:/bin"}
    dying = Child("worker", [sys.executable, "-c", "raise SystemExit(3)"], env)
    living = Child("api", [sys.executable, "-c", "import time; time.sleep(60)"], env)
    said: list[str] = []
    try:
        dying.start(0.0)
        living.start(0.0)
        assert dying.process is not None
        first = dying.process
        first.wait(10)

        supervise([dying, living], 1.0, said.append)
        assert said == ["worker exited with status 3; restarting it in 1 s"]
        supervise([dying, living], 1.5, said.append)
        assert len(said) == 1 and dying.process is first
        supervise([dying, living], 2.0, said.append)
        assert said[-1] == "starting worker again"
        assert dying.process is not first
        dying.process.wait(10)

        # A second quick death waits twice as long; the living child is never touched.
        supervise([dying, living], 3.0, said.append)
        assert said[-1] == "worker exited with status 3; restarting it in 2 s"
        assert living.process is not None and living.process.poll() is None
        assert all("api" not in line for line in said)

        # A child that ran for a while before dying starts over at the shortest pause.
        supervise([dying, living], 5.0, said.append)
        assert dying.process is not None
        dying.process.wait(10)
        dying.started_at = 5.0 - 120
        supervise([dying, living], 5.0, said.append)
        assert said[-1] == "worker exited with status 3; restarting it in 1 s"
    finally:
        for child in (dying, living):
            if child.process is not None and child.process.poll() is None:
                child.process.kill()
                child.process.wait(10)
