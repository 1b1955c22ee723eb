"""How many of the project's own files one event runs: the files under ``app/`` whose code ran.

    .venv/bin/python -m bench.footprint

Starts an embedded PostgreSQL and Redis, migrates, creates tenants as the tests do, serves the
fake HR Manager and SmartRecruiters APIs and a vendor endpoint on loopback
(tests/support/fake_ats.py),
and records, with a trace function in every thread, which files under ``app/`` had code run in:

1. one signed HR Manager webhook through the API (in-process ASGI client, the app's lifespan
   running), including the tasks the request left running (the publish of its job);
2. the worker's processing of that record: the jobs the API queued for it, then the jobs those
   queued (its delivery to the vendor), each called as the worker's registered function with the
   context the worker's start-up builds;
3. one SmartRecruiters poll: the poll job of a polled connection (its first poll, two candidates,
   one page), without the processing of the records it queues.

Each step first runs a warm-up event of the same kind untraced (every module imported, every
lazy import done, caches of the process built), then traces a second, distinct event; code run
at import (a module's body) is reported apart, never counted. A file counts once however much
of it ran. See bench/README.md, "Files one event touches".

The same script runs on the tree from before the modules were grouped into ``app/platform``,
``app/intake`` and ``app/admin`` (3c005dd): the moved modules are imported from either place.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import io
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import orjson
from arq.constants import default_queue_name, job_key_prefix
from arq.jobs import JobDef, deserialize_job
from arq.worker import Function
from redis.asyncio import Redis

import app
from app import sources
from app.main import create_app
from app.sources import create_services
from app.workers.settings import worker_options
from tests.support.fake_ats import HRM_ALIAS, HRM_KEY, SR_TOKEN, FakeATS, serve

# Moved by the regroup (979f639): imported from where this tree has them. Whether the tree has
# them is asked of the directory of the ``app`` imported, not of the import system: with another
# checkout installed in editable mode, "app.platform" would be found there (by setuptools' finder)
# under an older tree's "app", and the two trees' modules mixed.
try:
    if not (Path(app.__file__).parent / "platform").is_dir():
        raise ModuleNotFoundError("app.platform", name="app.platform")
    from app.admin.tenants_file import (
        ConnectionSpec,
        DestinationSpec,
        TenantsFile,
        TenantSpec,
        apply_tenants,
    )
    from app.platform.embedded import EmbeddedPostgres, EmbeddedRedis
    from app.platform.logs import configure as configure_logging
    from app.platform.migrate import upgrade_async
    from app.platform.queue import POLL_CONNECTION, deserialize
    from app.platform.settings import Settings
except ModuleNotFoundError:  # before the regroup
    from app.embedded import (  # type: ignore[import-not-found, no-redef]
        EmbeddedPostgres,
        EmbeddedRedis,
    )
    from app.logs import configure as configure_logging  # type: ignore[import-not-found, no-redef]
    from app.migrate import upgrade_async  # type: ignore[import-not-found, no-redef]
    from app.queue import POLL_CONNECTION, deserialize  # type: ignore[import-not-found, no-redef]
    from app.settings import Settings  # type: ignore[import-not-found, no-redef]
    from app.tenants import (  # type: ignore[import-not-found, no-redef]
        ConnectionSpec,
        DestinationSpec,
        TenantsFile,
        TenantSpec,
        apply_tenants,
    )

SECRET_KEY = "bench-secret-key-for-credentials-at-rest"
# As tests/sources/hrmanager/test_hrmanager.py and tests/support/workers.py configure their
# connections.
HRM_SECRET = b"acme-hr-manager-shared-secret-hex-0001".hex()
VENDOR_SECRET = "whsec_dmVuZG9yLWRlc3RpbmF0aW9uLXNlY3JldC0wMDAx"
# A polled SmartRecruiters connection as tests/poller/test_poller.py sets one up: the Cloud Elements
# resource configuration, pointed at SmartRecruiters' own API.
SR_DATE = "yyyy-MM-dd'T'HH:mm:ss.SSS'Z'"
SR_POLLING: dict[str, Any] = {
    "refresh_interval_min": 15,
    "resources": {
        "candidates": {
            "url": "/candidates?updatedAfter=${gmtDate:" + SR_DATE + "}",
            "idField": "id",
            "datesConfiguration": {
                "updatedDateField": "updatedOn",
                "updatedDateFormat": SR_DATE,
                "updatedDateTimezone": "GMT",
                "createdDateField": "createdOn",
                "createdDateFormat": SR_DATE,
                "createdDateTimezone": "GMT",
            },
            "pagination": {"type": "page_id", "limit": 100},
        }
    },
}


class Footprint:
    """The files under ``root`` whose code runs while :meth:`recording`, in any thread.

    A trace function, not a profile one: it is called once per Python frame entered (a
    coroutine resumed included) and, returning None, for nothing else, so it can stay installed
    from the start. It has to be: threads started before a step (the thread pool a sync
    dependency runs in) keep the trace function of the moment they started.
    """

    def __init__(self, root: Path) -> None:
        self._prefix = f"{root}{os.sep}"
        self._on = False
        self._lock = threading.Lock()
        self.ran: set[str] = set()
        # Module bodies run inside a step: an import the warm-up did not do.
        self.imported: set[str] = set()

    def _trace(self, frame: FrameType, event: str, _arg: Any) -> None:
        if self._on and event == "call":
            code = frame.f_code
            if code.co_filename.startswith(self._prefix):
                found = self.imported if code.co_name == "<module>" else self.ran
                with self._lock:
                    found.add(code.co_filename)

    @contextlib.contextmanager
    def installed(self) -> Iterator[Footprint]:
        """The trace function in this thread and every thread started meanwhile."""
        before, threads_before = sys.gettrace(), threading.gettrace()
        sys.settrace(self._trace)
        threading.settrace(self._trace)
        try:
            yield self
        finally:
            threading.settrace(threads_before)
            sys.settrace(before)

    @contextlib.contextmanager
    def recording(self) -> Iterator[Step]:
        """Record the files run in the block (this one's own: a new set each time)."""
        with self._lock:
            self.ran, self.imported = set(), set()
        self._on = True
        step = Step()
        try:
            yield step
        finally:
            self._on = False
            with self._lock:
                step.files, step.imported = set(self.ran), set(self.imported)


@dataclass
class Step:
    """What one traced step ran: absolute file names."""

    files: set[str] = field(default_factory=set)
    imported: set[str] = field(default_factory=set)


def repo_root() -> Path:
    """The directory holding the ``app`` package imported (not necessarily this checkout)."""
    return Path(app.__file__).absolute().parent.parent


def source_of(relative: str, names: list[str]) -> str | None:
    """The source a file is named after (``app/*/<source>*.py``, ``app/*/<source>/...``)."""
    for part in relative.split("/")[1:]:
        stem = part.removesuffix(".py")
        for name in names:
            if stem.startswith(name):
                return name
    return None


def own_files(root: Path, names: list[str]) -> dict[str, list[str]]:
    """Per source, the modules named after it."""
    found: dict[str, list[str]] = {name: [] for name in names}
    for path in sorted((root / "app").rglob("*.py")):
        relative = path.relative_to(root).as_posix()
        if (name := source_of(relative, names)) is not None:
            found[name].append(relative)
    return found


def settings_for(database_url: str, redis_url: str) -> Settings:
    """The tests' settings (environment "test": loopback http allowed for the fakes)."""
    return Settings(
        _env_file=None,
        environment="test",
        database_url=database_url,  # type: ignore[arg-type]
        redis_url=redis_url,  # type: ignore[arg-type]
        secret_key=SECRET_KEY,  # type: ignore[arg-type]
        outbox_grace_s=600,
        connection_cache_ttl_s=0,
        auth_failure_delay_s=0,
    )


def quiet_logging() -> None:
    """Logging configured as the processes do by default (its code runs), written nowhere."""
    fields = Settings.model_fields
    configure_logging(fields["log_level"].default, fields["log_format"].default)
    for handler in logging.root.handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(io.StringIO())


async def add_tenants(settings: Settings, fake: FakeATS) -> dict[str, int]:
    """Tenant ``acme`` (HR Manager webhooks, a polled SmartRecruiters, a destination) and
    ``globex`` (a polled SmartRecruiters, for the poll's warm-up); the polled connections' ids."""
    # First: the services set the outbound policy the specs' URLs are checked against.
    services = create_services(settings)
    hrm = ConnectionSpec(
        source="hrmanager",
        secrets={"api_key": HRM_KEY, "signing_secrets": [HRM_SECRET]},
        options={"base_url": fake.hrm_base, "customer_alias": HRM_ALIAS},
    )

    def polled() -> ConnectionSpec:
        return ConnectionSpec(
            source="smartrecruiters",
            secrets={"api_key": SR_TOKEN},
            options={"base_url": fake.sr_base, "polling": SR_POLLING},
        )

    destination = DestinationSpec(url=fake.vendor_url, secret=VENDOR_SECRET)
    spec = TenantsFile(
        tenant=[
            TenantSpec(
                slug="acme", name="Acme", connection=[hrm, polled()], destination=destination
            ),
            TenantSpec(slug="globex", name="Globex", connection=[polled()]),
        ]
    )
    try:
        await apply_tenants(spec, engine=services.engine, cipher=services.cipher)
        polled_ids = {}
        for tenant in ("acme", "globex"):
            info = await services.connections.by_tenant(tenant, "smartrecruiters")
            assert info is not None
            polled_ids[tenant] = info.id
        return polled_ids
    finally:
        await services.close()


def signed_post(payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """An HR Manager webhook as Talentech signs it: Base64(HMAC-SHA256(secret, raw body))."""
    body = orjson.dumps(payload)
    digest = hmac.new(bytes.fromhex(HRM_SECRET), body, hashlib.sha256).digest()
    return body, {
        "content-type": "application/json",
        "X-Signature-Base64HmacSha256": base64.b64encode(digest).decode(),
    }


async def post_event(client: httpx.AsyncClient, payload: dict[str, Any]) -> str:
    """Post one HR Manager event and wait for the tasks it left running; its record id."""
    before = asyncio.all_tasks()
    body, headers = signed_post(payload)
    response = await client.post("/v1/hrmanager/acme/events", content=body, headers=headers)
    if response.status_code != 200 or "hirehook-duplicate" in response.headers:
        raise RuntimeError(f"the event was not recorded: {response.status_code} {response.text}")
    # The job is published by a task of the request's (after a group commit, perhaps).
    left = asyncio.all_tasks() - before - {asyncio.current_task()}
    if left:
        await asyncio.wait(left, timeout=10)
    record_id: str = response.json()["record_id"]
    return record_id


async def api_step(settings: Settings, trace: Footprint) -> tuple[Step, list[str]]:
    """One HR Manager event through the API, after a warm-up event; the records' ids."""
    warm = {"Event": "CandidateStatusUpdated", "CandidateId": "1001", "PositionId": "77"}
    # Another candidate and position: nothing of the warm-up's is cached for the worker.
    measured = {"Event": "CandidateStatusUpdated", "CandidateId": "1002", "PositionId": "78"}
    fastapi_app = create_app(settings)
    async with fastapi_app.router.lifespan_context(fastapi_app):
        transport = httpx.ASGITransport(app=fastapi_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hirehook.test") as c:
            first = await post_event(c, warm)
            with trace.recording() as step:
                second = await post_event(c, measured)
    return step, [first, second]


Wanted = Callable[[JobDef], bool]
Jobs = list[tuple[str, Step]]


async def run_jobs(
    redis: Redis,
    functions: dict[str, Function],
    ctx: dict[str, Any],
    wanted: Wanted,
    trace: Footprint | None = None,
) -> Jobs:
    """Run as the worker would every queued job ``wanted`` takes (and those their runs queue
    that it takes), one at a time, until none is left; each function run, in order, with the
    files it ran if ``trace`` is given."""
    ran: Jobs = []
    while True:
        for member in await redis.zrange(default_queue_name, 0, -1):
            job_id = member.decode()
            raw = await redis.get(job_key_prefix + job_id)
            if raw is None:
                continue
            job = deserialize_job(raw, deserializer=deserialize)
            if wanted(job):
                break
        else:
            return ran
        await redis.zrem(default_queue_name, job_id)
        await redis.delete(job_key_prefix + job_id)
        # What arq adds to the worker's context for each run.
        run_ctx = {
            **ctx,
            "job_id": job_id,
            "job_try": 1,
            "enqueue_time": job.enqueue_time,
            "score": job.score,
        }
        with trace.recording() if trace else contextlib.nullcontext(Step()) as step:
            await functions[job.function].coroutine(run_ctx, *job.args, **job.kwargs)
        ran.append((job.function, step))


def naming(value: str) -> Wanted:
    """Jobs whose arguments name ``value`` (a record's jobs: its processing, its delivery)."""
    return lambda job: value in repr((job.args, job.kwargs))


def polling(connection_id: int) -> Wanted:
    """The poll job of one connection (not the jobs of the records it queues)."""
    return lambda job: job.function == POLL_CONNECTION and job.args[:1] == (connection_id,)


async def worker_steps(
    settings: Settings, trace: Footprint, fake: FakeATS, records: list[str], polled: dict[str, int]
) -> tuple[Jobs, Jobs]:
    """The worker's processing of the measured record, then one poll run; each after the same
    work untraced (the warm-up record, the other tenant's poll)."""
    options = worker_options(settings)
    functions = {f.name: f for f in options["functions"]}
    ctx: dict[str, Any] = {}
    await options["on_startup"](ctx)
    services = ctx["services"]
    redis = services.queue.redis
    try:
        delivered = len(fake.deliveries())
        await run_jobs(redis, functions, ctx, naming(records[0]))
        record_jobs = await run_jobs(redis, functions, ctx, naming(records[1]), trace)
        if len(fake.deliveries()) != delivered + 2:
            raise RuntimeError("the records were not both delivered to the vendor")

        for tenant in ("globex", "acme"):
            await services.queue.enqueue_poll(polled[tenant])
        listed = len(fake.calls_to("/sr/candidates"))
        await run_jobs(redis, functions, ctx, polling(polled["globex"]))
        poll_jobs = await run_jobs(redis, functions, ctx, polling(polled["acme"]), trace)
        if len(fake.calls_to("/sr/candidates")) != listed + 2:
            raise RuntimeError("each poll was to list the candidates once")
    finally:
        await options["on_shutdown"](ctx)
    return record_jobs, poll_jobs


def fake_documents(fake: FakeATS) -> None:
    """What the events name, and two SmartRecruiters candidates updated since a first poll's
    window opened (one refresh interval ago)."""
    for candidate, position in (("1001", "77"), ("1002", "78")):
        fake.add_hrm_candidate(candidate, positions=[position])
        fake.add_hrm_position(position)
    for minutes in (4, 2):
        moment = datetime.now(UTC) - timedelta(minutes=minutes)
        stamp = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
        fake.add_sr_candidate(f"sr-{minutes}", jobs=["j-1"], createdOn=stamp, updatedOn=stamp)


def relative(files: set[str], root: Path) -> list[str]:
    """Sorted names relative to the tree's root."""
    return sorted(Path(f).relative_to(root).as_posix() for f in files)


def merged(jobs: Jobs) -> Step:
    """What a sequence of job runs ran together."""
    step = Step()
    for _, ran in jobs:
        step.files |= ran.files
        step.imported |= ran.imported
    return step


def report(title: str, step: Step, root: Path, names: list[str], source: str) -> list[str]:
    """Print one step's files, each with the source it is named after; its relative names."""
    files = relative(step.files, root)
    own = [f for f in files if source_of(f, names) == source]
    others = [f for f in files if source_of(f, names) not in (None, source)]
    shared = len(files) - len(own) - len(others)
    print(f"\n## {title}: {len(files)} files")
    print(f"   {len(own)} of {source}'s own, {shared} shared, {len(others)} of other sources")
    width = max((len(f) for f in files), default=0)
    for name in files:
        print(f"   {name:<{width}}  {source_of(name, names) or ''}".rstrip())
    if step.imported:
        imported = ", ".join(relative(step.imported, root))
        print(f"   (module bodies run during the step, not counted: {imported})")
    return files


def foreign_modules(root: Path) -> list[str]:
    """Modules of ``app`` loaded from anywhere but ``root`` (another checkout's)."""
    return sorted(
        name
        for name, module in list(sys.modules.items())
        if (name == "app" or name.startswith("app."))
        and (where := getattr(module, "__file__", None))
        and not Path(where).absolute().is_relative_to(root / "app")
    )


async def measure(workdir: Path) -> None:
    """Start the servers and the fakes, trace the three steps, print what each ran."""
    root = repo_root()
    trace = Footprint(root / "app")
    quiet_logging()
    pg = EmbeddedPostgres(workdir / "postgres")
    redis = EmbeddedRedis(workdir / "redis")
    try:
        settings = settings_for(pg.start(), redis.start())
        await upgrade_async(settings.database_dsn)
        with serve(FakeATS()) as fake, trace.installed():
            fake_documents(fake)
            polled = await add_tenants(settings, fake)
            api, records = await api_step(settings, trace)
            record_jobs, poll_jobs = await worker_steps(settings, trace, fake, records, polled)
    finally:
        redis.stop()
        pg.stop()
    if foreign := foreign_modules(root):
        raise RuntimeError(f"modules of another checkout were imported: {', '.join(foreign)}")

    names = list(sources.REGISTRY)
    print(f"# Files under app/ whose code ran, per step (app imported from {root})")
    request = report("1. One HR Manager webhook request (API)", api, root, names, "hrmanager")
    title = "2. The worker's processing of that record"
    processing = report(title, merged(record_jobs), root, names, "hrmanager")
    for name, ran in record_jobs:
        print(f"   {name}: {len(ran.files)} files")
    title = "3. One SmartRecruiters poll"
    report(title, merged(poll_jobs), root, names, "smartrecruiters")
    print(f"   jobs: {', '.join(name for name, _ in poll_jobs)}")
    print(
        f"\nHR Manager event end to end: {len(request)} + {len(processing)} = "
        f"{len(request) + len(processing)} (distinct files: {len(set(request) | set(processing))})"
    )
    print("\n## Files of its own per source (named after it: app/*/<source>*.py, app/*/<source>/)")
    for name, files in own_files(root, names).items():
        print(f"   {name}: {len(files)}  {' '.join(files)}")


def main() -> None:
    """Entry point."""
    with tempfile.TemporaryDirectory(prefix="hirehook-footprint-") as workdir:
        asyncio.run(measure(Path(workdir)))


if __name__ == "__main__":
    main()
