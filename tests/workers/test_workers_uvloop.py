"""``hirehook worker`` runs its jobs on uvloop, as the API serves on it: every job is many
small Redis, PostgreSQL and HTTP exchanges, each cheaper on uvloop's C loop."""

from __future__ import annotations

import asyncio
from pathlib import Path

from app.platform.settings import Settings
from app.services import Services
from tests.support.workers import log_events, spawn_worker, worker_env


async def test_the_worker_process_runs_on_uvloop(
    services: Services, settings: Settings, tmp_path: Path
) -> None:
    # `services` empties the tables and Redis: a burst worker ends once the queue is empty,
    # and an earlier test's leftover jobs would keep it retrying.
    log = tmp_path / "worker.log"
    worker = spawn_worker(worker_env(settings), log, burst=True)
    try:
        code = await asyncio.to_thread(worker.wait, 120)
    finally:
        worker.kill()
    assert code == 0, log.read_text()[-2000:]
    [started] = log_events(log, "worker.started")
    assert started["loop"] == "uvloop"
