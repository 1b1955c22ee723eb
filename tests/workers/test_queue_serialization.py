"""arq jobs travel as JSON, never pickle: a job blob in Redis cannot run code in a worker.
Redis URLs with a password or TLS reach the API's pool and the workers alike."""

from __future__ import annotations

import logging
import os
import pickle
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import orjson
import pytest
from arq.constants import job_key_prefix
from arq.jobs import (
    DeserializationError,
    deserialize_job,
    deserialize_job_raw,
    deserialize_result,
    serialize_job,
    serialize_result,
)
from redis.asyncio import Redis, SSLConnection

from app.platform.embedded import EmbeddedRedis
from app.platform.queue import (
    PROCESS_RECORD,
    Queue,
    create_redis,
    deserialize,
    record_job_id,
    serialize,
)
from app.platform.settings import Settings
from app.services import Services
from app.sources import create_services
from app.workers.settings import create_worker, worker_options
from tests.support.app import make_settings
from tests.support.fake_ats import FakeATS, Step
from tests.support.workers import add_source, fast_settings, record_event, rows, run_worker


def pickled_job(record_id: str, marker: Path) -> bytes:
    """An arq job as arq's default serializer writes it, carrying a payload that runs code
    (creates ``marker``) the moment it is unpickled."""

    class RunsCode:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return os.mkdir, (str(marker),)

    job: dict[str, object] = {
        "t": None,
        "f": PROCESS_RECORD,
        "a": (record_id,),
        "k": {},
        "et": int(time.time() * 1000),
        "x": RunsCode(),
    }
    return pickle.dumps(job)


async def record_state(services: Services, record_id: uuid.UUID) -> tuple[str, bool]:
    [row] = await rows(
        services,
        "SELECT r.state, o.done_at IS NOT NULL AS done "
        "FROM record r JOIN outbox o ON o.record_id = r.id WHERE r.id = :id",
        id=record_id,
    )
    return row.state, row.done


async def test_enqueued_jobs_are_json_and_a_worker_processes_them(
    services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    fake_ats.add_hrm_candidate("1")
    # One transient failure: arq's Retry re-reads the same JSON job on the next try.
    fake_ats.script.append(Step(status=503))
    conn = await add_source(services, fake_ats, "hrmanager")
    rid = await record_event(services, conn, "CandidateUpdated", {"CandidateId": "1"})

    blob = await services.queue.redis.get(job_key_prefix + record_job_id(rid))
    assert isinstance(blob, bytes)
    job = orjson.loads(blob)
    assert job["f"] == PROCESS_RECORD
    assert job["a"] == [str(rid)]
    assert job["k"] == {}
    assert job["t"] is None
    assert abs(job["et"] - time.time() * 1000) < 60_000

    await run_worker(fast_settings(settings))
    assert [c.status for c in fake_ats.calls] == [503, 200]
    assert await record_state(services, rid) == ("processed", True)


async def test_a_pickled_job_is_refused_without_running_and_the_sweeper_republishes_it(
    services: Services,
    settings: Settings,
    fake_ats: FakeATS,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake_ats.add_hrm_candidate("1")
    conn = await add_source(services, fake_ats, "hrmanager")
    rid = await record_event(
        services, conn, "CandidateUpdated", {"CandidateId": "1"}, publish=False
    )

    # The payload is real: arq's default deserializer runs it.
    control = tmp_path / "control"
    deserialize_job_raw(pickled_job(str(rid), control))
    assert control.is_dir()

    marker = tmp_path / "ran"
    job_id = record_job_id(rid)
    redis = services.queue.redis
    await redis.set(job_key_prefix + job_id, pickled_job(str(rid), marker))
    await redis.zadd("arq:queue", {job_id: int(time.time() * 1000)})

    with caplog.at_level(logging.ERROR, logger="arq.worker"):
        await run_worker(settings)
    assert not marker.exists()
    refused = [r for r in caplog.records if r.getMessage() == f"deserializing job {job_id} failed"]
    assert refused
    assert refused[0].exc_info is not None
    assert isinstance(refused[0].exc_info[1], DeserializationError)
    # Dropped, or already republished as JSON by the worker's startup sweep.
    leftover = await redis.get(job_key_prefix + job_id)
    assert leftover is None or orjson.loads(leftover)["a"] == [str(rid)]

    # The outbox still owes the record, so the sweeper publishes it again, as JSON.
    await run_worker(settings)
    assert not marker.exists()
    assert await record_state(services, rid) == ("processed", True)


async def test_arq_helpers_on_the_api_pool_read_and_write_json(services: Services) -> None:
    redis = services.queue.redis
    job = await redis.enqueue_job(PROCESS_RECORD, "r-1", _job_id="helper-1")
    assert job is not None
    blob = await redis.get(job_key_prefix + "helper-1")
    assert orjson.loads(blob)["a"] == ["r-1"]
    info = await job.info()
    assert info is not None
    assert (info.function, info.args, info.kwargs) == (PROCESS_RECORD, ("r-1",), {})
    assert [j.job_id for j in await redis.queued_jobs()] == ["helper-1"]


def test_serializer_round_trips_arq_jobs_and_results() -> None:
    now_ms = int(time.time() * 1000)
    blob = serialize_job(PROCESS_RECORD, ("r-1",), {"n": 1}, 3, now_ms, serializer=serialize)
    assert orjson.loads(blob) == {
        "t": 3,
        "f": PROCESS_RECORD,
        "a": ["r-1"],
        "k": {"n": 1},
        "et": now_ms,
    }
    assert deserialize_job_raw(blob, deserializer=deserialize) == (
        PROCESS_RECORD,
        ("r-1",),
        {"n": 1},
        3,
        now_ms,
    )
    assert deserialize_job(blob, deserializer=deserialize).job_try == 3

    # arq serializes a failed job's exception whether or not results are kept.
    result = serialize_result(
        PROCESS_RECORD,
        ("r-1",),
        {},
        1,
        now_ms,
        False,
        RuntimeError("boom"),
        now_ms,
        now_ms + 5,
        "ref",
        "arq:queue",
        "job-1",
        serializer=serialize,
    )
    assert result is not None
    decoded = deserialize_result(result, deserializer=deserialize)
    assert (decoded.success, decoded.result, decoded.job_id) == (
        False,
        "RuntimeError: boom",
        "job-1",
    )

    with pytest.raises(DeserializationError):
        deserialize_job_raw(pickle.dumps({"f": PROCESS_RECORD}), deserializer=deserialize)
    with pytest.raises(DeserializationError):
        deserialize_job_raw(b'["not", "a", "job"]', deserializer=deserialize)
    with pytest.raises(TypeError):
        serialize({"a": (object(),)})


async def test_api_pool_and_worker_share_the_serializer(settings: Settings) -> None:
    redis = create_redis(settings.redis_dsn, 0.5)
    assert (redis.job_serializer, redis.job_deserializer) == (serialize, deserialize)
    await redis.aclose(close_connection_pool=True)
    worker = create_worker(settings, handle_signals=False)
    try:
        assert (worker.job_serializer, worker.job_deserializer) == (serialize, deserialize)
    finally:
        await worker.close()


@pytest.mark.parametrize(
    ("url", "username", "password", "ssl", "db"),
    [
        ("redis://:s3cret@cache.internal:6379/0", None, "s3cret", False, 0),
        ("rediss://:s3cret@cache.internal:6380/2", None, "s3cret", True, 2),
        ("rediss://app:p%40ss%2Fw%3Ard@cache.internal/1", "app", "p@ss/w:rd", True, 1),
        ("redis://cache.internal", None, None, False, 0),
    ],
)
def test_password_and_tls_urls_reach_the_api_pool_and_the_worker(
    url: str, username: str | None, password: str | None, ssl: bool, db: int
) -> None:
    settings = make_settings("postgresql://u:p@db.internal/hirehook", url)
    worker = worker_options(settings)["redis_settings"]
    assert (worker.host, worker.username, worker.password, worker.ssl, worker.database) == (
        "cache.internal",
        username,
        password,
        ssl,
        db,
    )
    pool = create_redis(settings.redis_dsn, 0.5).connection_pool
    kwargs = pool.connection_kwargs
    assert (kwargs["host"], kwargs.get("username"), kwargs.get("password"), kwargs["db"]) == (
        "cache.internal",
        username,
        password,
        db,
    )
    assert issubclass(pool.connection_class, SSLConnection) == ssl


async def test_api_and_worker_authenticate_to_a_redis_that_requires_a_password(
    services: Services, settings: Settings, fake_ats: FakeATS, tmp_path: Path
) -> None:
    password = "p@ss/w:rd"  # reserved characters: percent-encoded in the URL
    server = EmbeddedRedis(tmp_path / "redis")
    bare_url = server.start()
    try:
        async with Redis.from_url(bare_url) as admin:
            await admin.config_set("requirepass", password)
        url = bare_url.replace("redis://", f"redis://:{quote(password, safe='')}@", 1)
        secured = make_settings(str(settings.database_url), url)

        anonymous = Queue(create_redis(bare_url, 0.5), 0.5)
        try:
            assert not await anonymous.ping()
        finally:
            await anonymous.close()

        api = create_services(secured)
        try:
            assert await api.queue.ping()
            fake_ats.add_hrm_candidate("1")
            conn = await add_source(api, fake_ats, "hrmanager")
            rid = await record_event(api, conn, "CandidateUpdated", {"CandidateId": "1"})
            assert await api.queue.redis.exists(job_key_prefix + record_job_id(rid))
            await run_worker(secured)
            assert await record_state(api, rid) == ("processed", True)
        finally:
            await api.close()
    finally:
        server.stop()
