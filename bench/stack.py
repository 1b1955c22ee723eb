"""The processes a harness run owns: PostgreSQL, Redis, `hirehook api`, `hirehook worker`, a
delivery receiver, and senders that retry until acknowledged, as ATSs do.

Used by ``bench.chaos`` and ``bench.soak``. Everything listens on loopback, everything started
here is stopped by :meth:`Stack.close`, and faults are real signals to real processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import psutil
import redis.asyncio
from arq.constants import default_queue_name

from app.platform.crypto import generate_key
from app.platform.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
from app.platform.migrate import upgrade_async
from app.sources.keldair import sample as keldair_sample
from app.verifiers import standard_webhooks as swh
from bench.procstat import cpu_seconds

SECRET = "whsec_YmVuY2gtc2lnbmluZy1zZWNyZXQtMDAwMDAwMDA="
DESTINATION_SECRET = "whsec_aGFybmVzcy1kZXN0aW5hdGlvbi1zZWNyZXQtMDA="
TENANT = "chaos"
# A receiver answers 500 to any delivery whose body contains this: a record that always fails.
POISON = "POISON-RECORD"
RESULTS = Path(__file__).parent / "results"


# arq's queue (a sorted set of job ids), as the API publishes to it.
QUEUE = default_queue_name


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values`` in ms, 0 for none."""
    if not values:
        return 0.0
    if len(values) == 1:
        return round(values[0] * 1000, 1)
    return round(statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] * 1000, 1)


class Receiver:
    """A vendor endpoint on loopback that counts deliveries by ``webhook-id``."""

    def __init__(self) -> None:
        self.port = free_port()
        self.seen: Counter[str] = Counter()
        self.first_at: dict[str, float] = {}
        self.failed = 0
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        """Where the tenant's destination points."""
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> None:
        """Listen."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def close(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.readline():
                headers: dict[str, str] = {}
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                if POISON.encode() in body:
                    self.failed += 1
                    status = b"500 Internal Server Error"
                else:
                    webhook_id = headers.get("webhook-id", "")
                    self.seen[webhook_id] += 1
                    self.first_at.setdefault(webhook_id, time.time())
                    status = b"200 OK"
                writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@dataclass
class Event:
    """One event a sender must get acknowledged."""

    event_id: str
    payload: dict[str, Any]
    attempts: int = 0
    acked_at: float | None = None
    record_id: str | None = None
    statuses: Counter[str] = field(default_factory=Counter)


@dataclass
class Answer:
    """One attempt as the sender saw it."""

    started: float
    ended: float
    status: str  # an HTTP status, or the name of the connection error
    shape_ok: bool

    @property
    def seconds(self) -> float:
        """How long the answer took."""
        return self.ended - self.started


def new_events(n: int, *, pad: int = 1500, marker: str = "") -> list[Event]:
    """``n`` distinct KeldairHR events of about 2 KB."""
    out = []
    for _ in range(n):
        event_id = f"evt_{uuid.uuid4().hex}"
        payload = keldair_sample("applicant.hired", event_id)
        payload["data"]["notes"] = marker + "x" * pad
        out.append(Event(event_id, payload))
    return out


def _error_shape(status: int, body: bytes) -> bool:
    # Every KeldairHR refusal is {"error": {"code", "message"}} (app.routers.common).
    if status < 400:
        return True
    try:
        error = orjson.loads(body)["error"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return False
    return isinstance(error, dict) and "code" in error and "message" in error


# What a connection error is called in the figures: the names an HTTP client would report.
_ERROR_NAMES: dict[type[BaseException], str] = {
    ConnectionRefusedError: "ConnectError",
    TimeoutError: "Timeout",
    asyncio.IncompleteReadError: "ReadError",
    ConnectionResetError: "ReadError",
    BrokenPipeError: "WriteError",
}


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes
) -> tuple[int, bytes, bool]:
    """Send one raw HTTP/1.1 request; the answer's status, body, and whether the server will
    close the connection. Raises ``ConnectionResetError`` if it closed without answering."""
    writer.write(raw)
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionResetError("the server closed the connection")
    length, close = 0, False
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and b"close" in value.lower():
            close = True
    answer = await reader.readexactly(length)
    return int(status_line.split()[1]), answer, close


class Conn:
    """One sender's keep-alive HTTP/1.1 connection, opened on first use and again after any
    error or ``Connection: close``.

    Raw asyncio streams rather than an HTTP client library: the harness shares the cores with
    the stack it measures, and a request costs a library several times what it costs here, so
    the harness would otherwise slow down what it measures.
    """

    def __init__(self, port: int, timeout_s: float = 30.0) -> None:
        self.port = port
        self.timeout_s = timeout_s
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        """POST ``body``; the status and body of the answer. Raises ``OSError``,
        ``TimeoutError`` or ``asyncio.IncompleteReadError``, closing the connection."""
        head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        raw = ("\r\n".join(head) + "\r\n\r\n").encode() + body
        try:
            async with asyncio.timeout(self.timeout_s):
                if self._streams is None:
                    self._streams = await asyncio.open_connection("127.0.0.1", self.port)
                status, answer, close = await exchange(*self._streams, raw)
        except BaseException:
            self.close()
            raise
        if close:
            self.close()
        return status, answer

    def close(self) -> None:
        """Drop the connection (the next request opens a new one)."""
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None


class Senders:
    """Concurrent senders that resend every unacknowledged event until it is acknowledged."""

    def __init__(self, port: int, *, concurrency: int, retry_s: float = 0.25) -> None:
        self.port = port
        self.concurrency = concurrency
        self.retry_s = retry_s
        self.answers: list[Answer] = []

    async def send(
        self, events: list[Event], *, deadline_s: float, rate_per_s: float | None = None
    ) -> None:
        """Send until every event is acknowledged or ``deadline_s`` passes."""
        queue: asyncio.Queue[Event] = asyncio.Queue()
        for event in events:
            queue.put_nowait(event)
        end = time.monotonic() + deadline_s
        interval = self.concurrency / rate_per_s if rate_per_s else 0.0
        await asyncio.gather(*(self._sender(queue, end, interval) for _ in range(self.concurrency)))

    async def _sender(self, queue: asyncio.Queue[Event], end: float, interval: float) -> None:
        conn = Conn(self.port)
        try:
            while time.monotonic() < end:
                try:
                    event = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                paced = time.monotonic() + interval
                if not await self.attempt(conn, event):
                    # Not acknowledged: back in the queue, retried after a pause, like an ATS.
                    await asyncio.sleep(self.retry_s)
                    queue.put_nowait(event)
                elif interval:
                    await asyncio.sleep(max(0.0, paced - time.monotonic()))
        finally:
            conn.close()

    async def attempt(self, conn: Conn, event: Event) -> bool:
        """Send ``event`` once; True if it was acknowledged."""
        body = orjson.dumps(event.payload)
        headers = swh.signed_headers(event.event_id, body, SECRET, time.time())
        headers["content-type"] = "application/json"
        event.attempts += 1
        started = time.time()
        try:
            status, answer = await conn.post(f"/v1/keldair/{TENANT}/events", headers, body)
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            name = _ERROR_NAMES.get(type(exc), type(exc).__name__)
            self.answers.append(Answer(started, time.time(), name, True))
            event.statuses[name] += 1
            return False
        ended = time.time()
        self.answers.append(Answer(started, ended, str(status), _error_shape(status, answer)))
        event.statuses[str(status)] += 1
        if 200 <= status < 300:
            event.acked_at = ended
            event.record_id = orjson.loads(answer)["record_id"]
            return True
        return False


class Stack:
    """PostgreSQL, Redis, API and worker processes for one harness run."""

    def __init__(self, *, env: dict[str, str] | None = None) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="hirehook-harness-"))
        self.pg = EmbeddedPostgres(self.workdir / "postgres")
        self.redis = EmbeddedRedis(self.workdir / "redis")
        self.receiver = Receiver()
        self.api_port = free_port()
        self.api: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self.extra_env = env or {}
        self.env: dict[str, str] = {}
        self._db: asyncpg.Connection | None = None

    async def start(self, *, worker: bool = True) -> None:
        """Start everything and wait until the API answers."""
        await self.receiver.start()
        tenants = self.workdir / "tenants.toml"
        tenants.write_text(
            f"""
[[tenant]]
slug = "{TENANT}"
name = "Chaos"

[[tenant.connection]]
source = "keldair"
secrets = {{ signing_secrets = ["{SECRET}"] }}

[tenant.destination]
url = "{self.receiver.url}"
secret = "{DESTINATION_SECRET}"
"""
        )
        self.env = dict(os.environ)
        self.env.pop("HIREHOOK_DATABASE_URL", None)
        self.env.pop("HIREHOOK_REDIS_URL", None)
        self.env |= {
            "HIREHOOK_DATABASE_URL": self.pg.start(),
            "HIREHOOK_REDIS_URL": self.redis.start(),
            "HIREHOOK_ENVIRONMENT": "production",
            # The receivers and fake APIs listen on loopback over http: the outbound-URL policy
            # allows that in production only when listed (docs/operations.md, "Outbound URLs").
            "HIREHOOK_OUTBOUND_ALLOW": "127.0.0.1",
            "HIREHOOK_SECRET_KEY": generate_key(),
            "HIREHOOK_TENANTS_FILE": str(tenants),
            "HIREHOOK_LOG_LEVEL": "WARNING",
            # Faults come seconds apart: the sweeper must look every second, not every ten.
            "HIREHOOK_SWEEP_INTERVAL_S": "1",
            "HIREHOOK_OUTBOX_GRACE_S": "2",
            **self.extra_env,
        }
        dsn = self.env["HIREHOOK_DATABASE_URL"].replace("postgresql://", "postgresql+asyncpg://")
        await upgrade_async(dsn)
        self.start_api()
        if worker:
            self.start_worker()

    def start_api(self) -> None:
        """Start `hirehook api` and wait until it answers."""
        self.api = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "api", "--port", str(self.api_port)],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=(self.workdir / "api.log").open("ab"),
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{self.api_port}/health/live", timeout=1).is_success:
                    return
            if self.api.poll() is not None:
                raise SystemExit(f"hirehook api exited with {self.api.returncode}")
            time.sleep(0.1)
        raise SystemExit("hirehook api did not come up")

    def start_worker(self) -> None:
        """Start `hirehook worker`."""
        self.worker = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "worker"],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=(self.workdir / "worker.log").open("ab"),
        )

    async def worker_ready(self, timeout_s: float = 60.0) -> float:
        """Wait until the worker has started and polled its queue once (arq's health-check
        key, written at the end of its first poll); seconds waited."""
        started = time.monotonic()
        client = redis.asyncio.Redis.from_url(self.env["HIREHOOK_REDIS_URL"])
        try:
            while not await client.keys("*health-check"):
                if time.monotonic() - started > timeout_s:
                    raise SystemExit("hirehook worker did not come up")
                await asyncio.sleep(0.01)
        finally:
            await client.aclose()
        return time.monotonic() - started

    async def start_worker_on_held_queue(self) -> float:
        """Start `hirehook worker` with the jobs already queued held aside until it has
        started and polled its empty queue once; then put them back. The worker's CPU
        seconds at that moment (its start-up: imports, connections), so what follows is
        what it costs to work the queue."""
        client = redis.asyncio.Redis.from_url(self.env["HIREHOOK_REDIS_URL"])
        try:
            await client.rename(QUEUE, f"{QUEUE}:held")
            self.start_worker()
            assert self.worker is not None
            await self.worker_ready()
            start_up = cpu_seconds([self.worker.pid])
            await client.rename(f"{QUEUE}:held", QUEUE)
        finally:
            await client.aclose()
        return start_up

    @staticmethod
    def kill(proc: subprocess.Popen[bytes] | None) -> None:
        """SIGKILL a process and reap it."""
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)

    def _pg_processes(self) -> list[psutil.Process]:
        pid = int((self.pg.datadir / "postmaster.pid").read_text().splitlines()[0])
        postmaster = psutil.Process(pid)
        return [postmaster, *postmaster.children(recursive=True)]

    def pg_pause(self) -> list[psutil.Process]:
        """SIGSTOP the postmaster and every backend: a database that accepts and never answers."""
        processes = self._pg_processes()
        for proc in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.suspend()
        return processes

    @staticmethod
    def pg_resume(processes: list[psutil.Process]) -> None:
        """SIGCONT what :meth:`pg_pause` stopped."""
        for proc in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.resume()

    def pg_stop_immediate(self) -> None:
        """`pg_ctl stop -m immediate`: every backend dies, connections are refused."""
        self.pg._run("pg_ctl", ["-w", "-m", "immediate", "stop"])

    def pg_start(self) -> None:
        """Start PostgreSQL again on the same port (it recovers from its WAL)."""
        self.pg.start()

    def redis_kill(self) -> None:
        """SIGKILL Redis; it keeps nothing on disk."""
        proc = self.redis._process
        if proc is not None:
            proc.kill()
            proc.wait(10)
        self.redis._process = None

    def rss_mb(self, proc: subprocess.Popen[bytes] | None) -> float:
        """Resident memory of a process and its children, from /proc."""
        if proc is None or proc.poll() is not None:
            return 0.0
        root = psutil.Process(proc.pid)
        total = 0
        for p in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                total += p.memory_info().rss
        return round(total / 2**20, 1)

    async def db(self) -> asyncpg.Connection:
        """A connection for the harness's own queries (reopened after a database fault)."""
        if self._db is None or self._db.is_closed():
            self._db = await asyncpg.connect(self.env["HIREHOOK_DATABASE_URL"], timeout=10)
        return self._db

    async def query(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        """Run one query, reconnecting once if the database was restarted under us."""
        try:
            return list(await (await self.db()).fetch(sql, *args))
        except (asyncpg.PostgresConnectionError, ConnectionError, asyncpg.InterfaceError):
            self._db = None
            return list(await (await self.db()).fetch(sql, *args))

    async def ledger(self, events: list[Event]) -> dict[str, int]:
        """Sent, acknowledged, recorded, processed, delivered; lost and doubled."""
        ids = [e.event_id for e in events]
        # What the receiver has seen is read before the database: an event delivered while the
        # query runs would otherwise count as received but not yet processed, since the query
        # sees the database as it was when it started.
        seen = Counter(self.receiver.seen)
        rows = await self.query(
            """
            SELECT r.dedupe_key, r.id::text AS record_id,
                   (SELECT count(*) FROM outbox o WHERE o.record_id = r.id
                      AND o.task = 'process_record' AND o.done_at IS NOT NULL) AS processed,
                   (SELECT count(*) FROM delivery d WHERE d.record_id = r.id
                      AND d.done_at IS NOT NULL) AS delivered
            FROM record r WHERE r.tenant_id = (SELECT id FROM tenant WHERE slug = $2)
              AND r.dedupe_key = ANY($1::text[])
            """,
            ids,
            TENANT,
        )
        per_key = Counter(row["dedupe_key"] for row in rows)
        acked = [e for e in events if e.acked_at is not None]
        record_ids = {row["record_id"] for row in rows}
        received = [seen[r] for r in record_ids if seen[r]]
        return {
            "sent": len(events),
            "acknowledged": len(acked),
            "recorded": len(per_key),
            "processed": sum(1 for row in rows if row["processed"] > 0),
            "delivered": sum(1 for row in rows if row["delivered"] > 0),
            "received": len(received),
            "lost": sum(1 for e in acked if e.event_id not in per_key),
            "doubled_records": sum(1 for n in per_key.values() if n > 1),
            "doubled_deliveries": sum(1 for n in received if n > 1),
        }

    async def wait_done(self, events: list[Event], timeout_s: float) -> dict[str, int]:
        """Wait until every event is recorded and delivered (or the time is up)."""
        end = time.monotonic() + timeout_s
        while True:
            ledger = await self.ledger(events)
            if ledger["received"] >= ledger["sent"] or time.monotonic() > end:
                return ledger
            await asyncio.sleep(0.5)

    async def close(self, *, keep_logs: str | None = None) -> None:
        """Stop everything this stack started, in reverse order; with ``keep_logs``, copy the
        API's and worker's logs to ``bench/results/logs/<keep_logs>-*.log`` first."""
        if self._db is not None:
            with contextlib.suppress(Exception):
                await self._db.close()
        for proc in (self.worker, self.api):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    self.kill(proc)
        self.redis.stop()
        self.pg.stop()
        await self.receiver.close()
        if keep_logs:
            kept = RESULTS / "logs"
            kept.mkdir(parents=True, exist_ok=True)
            for name in ("api", "worker"):
                log_file = self.workdir / f"{name}.log"
                if log_file.exists():
                    shutil.copy(log_file, kept / f"{keep_logs}-{name}.log")
        shutil.rmtree(self.workdir, ignore_errors=True)


@dataclass
class Check:
    """One pass/fail line of a result table."""

    scenario: str
    check: str
    ok: bool
    figure: str


def print_table(title: str, checks: list[Check]) -> None:
    """The result table every harness prints."""
    print(f"\n{title}")
    width = max((len(c.scenario) for c in checks), default=8)
    check_w = max((len(c.check) for c in checks), default=5)
    for c in checks:
        mark = "PASS" if c.ok else "FAIL"
        print(f"  {mark}  {c.scenario:<{width}}  {c.check:<{check_w}}  {c.figure}")


def _commit() -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607 - git from PATH, as make runs it
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()


# Taken when the run starts: commits made while it runs do not describe the code that ran.
COMMIT = _commit()


def write_result(name: str, payload: dict[str, Any]) -> Path:
    """Write ``bench/results/<name>.json`` and return its path."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {
        "commit": COMMIT,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **payload,
    }
    path.write_bytes(orjson.dumps(payload, option=orjson.OPT_INDENT_2))
    return path
