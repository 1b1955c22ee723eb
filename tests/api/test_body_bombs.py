"""Gzip bombs against a real ``hirehook api`` process: a request that cannot be authentic is
refused from its headers, before its body is inflated, so it costs neither time nor memory.

The server runs in its own process so that its memory is measured apart from the test's.
The bomb inflates to a JSON array of millions of small numbers: inflating it and parsing it
(as the API did before checking credentials) costs far more than 20 MiB, where refusing it
from its headers costs nothing measurable.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from sqlalchemy import text

from app.platform.embedded import free_port
from app.platform.settings import Settings
from app.services import Services
from tests.support.app import add_connection
from tests.support.icims import CUSTOMER, add_icims, basic_header, error_of
from tests.support.keldair import SECRET
from tests.support.workers import worker_env

MIB = 1024 * 1024
# The settings' defaults this file is about: 1 MiB inflated at most, 100x the wire size.
INFLATE_CAP = MIB
# Memory is the real check. Time is compared with small requests on the same path measured
# just before, so a busy machine slows both; the median of several requests keeps one
# scheduling hiccup from deciding. Inflating and parsing the bomb takes far longer.
SLOWER_AT_MOST = 5
SLACK_S = 0.1
MEMORY_BOUND = 20 * MIB
TIMED = 5


def bomb(prefix: bytes, size: int = 8 * MIB - 1024) -> bytes:
    """About 8 KiB of gzip that inflates to ``size`` bytes of ``prefix`` + ``[0,0,...]}``.

    Just under the 8 MiB the API used to allow, so that the old design inflated it whole and
    parsed it into a list of millions of entries.
    """
    count = (size - len(prefix) - 2) // 2
    plain = prefix + b"[" + b"0," * count + b"0]}"
    packed = gzip.compress(plain, compresslevel=9)
    assert len(plain) <= 8 * MIB and len(plain) > 8 * MIB - 4096
    assert len(packed) < 16 * 1024, len(packed)
    return packed


ICIMS_BOMB = bomb(
    b'{"customerId":"' + CUSTOMER.encode() + b'","eventType":"WorkFlowStatusChangeEvent","x":'
)
KELDAIR_BOMB = bomb(b'{"id":"evt_bomb","type":"applicant.hired","data":')


class PeakMemory:
    """The growth of a process's resident memory from now on, transient peaks included.

    RSS read after a request misses what was allocated and freed during it (large buffers are
    returned to the system at once), so on Linux the kernel's high-water mark (VmHWM) is reset
    (``clear_refs`` 5) and read back; elsewhere only the RSS after can be compared.
    """

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.proc = Path(f"/proc/{pid}")
        try:
            (self.proc / "clear_refs").write_text("5")
            self.peak_known = True
        except OSError:
            self.peak_known = False
        self.before = int(self.process.memory_info().rss)

    def _peak(self) -> int:
        for line in (self.proc / "status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM in /proc/<pid>/status")  # pragma: no cover

    def growth(self) -> int:
        """Bytes above the resident size at creation: at the peak where known."""
        after = int(self.process.memory_info().rss)
        peak = self._peak() if self.peak_known else after
        return max(after, peak) - self.before


@pytest.fixture(scope="module")
def api(
    settings: Settings, migrated: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, int]]:
    """(base URL, pid) of one ``hirehook api`` process for this module's tests."""
    port = free_port()
    env = worker_env(
        settings,
        # Many refused requests from one address are the point here, not a brute force.
        auth_failure_limit_per_client="1000",
        auth_failure_limit_per_address="0",
        log_format="console",
    )
    log = tmp_path_factory.mktemp("api") / "api.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "api", "--port", str(port), "--workers", "1"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the API did not become ready:\n{log.read_text()[-4000:]}")
            time.sleep(0.1)
        yield base, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def refused_cheaply(
    api: tuple[str, int], url: str, content: bytes, headers: dict[str, str], status: int
) -> list[httpx.Response]:
    """Send the bomb a few times; each answer is ``status``, fast, and costs no memory."""
    base, pid = api
    with httpx.Client(base_url=base, timeout=10) as client:
        # Warm up the path (database pool, lazily built objects) with a harmless body.
        small = gzip.compress(b'{"customerId":"' + CUSTOMER.encode() + b'"}')
        client.post(url, content=small, headers=headers)
        baseline: list[float] = []
        for _ in range(TIMED):
            started = time.perf_counter()
            client.post(url, content=small, headers=headers)
            baseline.append(time.perf_counter() - started)
        memory = PeakMemory(pid)
        responses: list[httpx.Response] = []
        times: list[float] = []
        for _ in range(TIMED):
            started = time.perf_counter()
            response = client.post(url, content=content, headers=headers)
            times.append(time.perf_counter() - started)
            responses.append(response)
        growth = memory.growth()
    assert {r.status_code for r in responses} == {status}, responses[0].text
    assert growth < MEMORY_BOUND, f"the server grew by {growth / MIB:.1f} MiB"
    bound = SLOWER_AT_MOST * statistics.median(baseline) + SLACK_S
    assert statistics.median(times) < bound, (times, baseline)
    return responses


async def nothing_recorded(services: Services) -> None:
    async with services.engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM record"))).scalar_one() == 0


GZIP_JSON = {"content-type": "application/json", "content-encoding": "gzip"}


@pytest.mark.parametrize(
    "credentials",
    [basic_header(password="wrong-password"), basic_header(user="nobody-knows-me")],
    ids=["wrong-password", "unknown-user"],
)
async def test_icims_bomb_with_wrong_basic_is_401_before_inflating(
    api: tuple[str, int], services: Services, credentials: dict[str, str]
) -> None:
    await add_icims(services)
    [first, *_] = refused_cheaply(api, "/v1/icims/events", ICIMS_BOMB, GZIP_JSON | credentials, 401)
    assert "could not be authenticated" in error_of(first)["userMessage"]
    await nothing_recorded(services)


async def test_icims_bomb_with_valid_basic_is_refused_under_the_cap(
    api: tuple[str, int], services: Services
) -> None:
    await add_icims(services)
    # iCIMS's error standard knows 400, not 413: the refusal is a user error naming the cap.
    [first, *_] = refused_cheaply(
        api, "/v1/icims/events", ICIMS_BOMB, GZIP_JSON | basic_header(), 400
    )
    debug = error_of(first)["debugErrorMessage"]
    assert "decompressed request body is larger than" in debug
    # The 100x ratio caps an 8 KiB body well below the 1 MiB absolute cap.
    assert int(debug.split("(")[1].split(" ")[0]) <= INFLATE_CAP
    await nothing_recorded(services)


def keldair_headers(wire: bytes, msg_id: str = "msg_bomb") -> dict[str, str]:
    """Standard Webhooks headers signing the bytes on the wire with ``SECRET``."""
    ts = int(time.time())
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{ts}.".encode() + wire, hashlib.sha256).digest()
    return GZIP_JSON | {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
    }


@pytest.mark.parametrize("case", ["unknown-tenant", "no-signature", "no-timestamp"])
async def test_keldair_bomb_without_a_chance_of_authenticity_is_401_before_inflating(
    api: tuple[str, int], services: Services, case: str
) -> None:
    await add_connection(
        services, tenant="acme", source="keldair", secrets={"signing_secrets": [SECRET]}
    )
    headers = keldair_headers(KELDAIR_BOMB)
    url = "/v1/keldair/acme/events"
    if case == "unknown-tenant":
        url = "/v1/keldair/nobody/events"
    else:
        del headers["webhook-signature" if case == "no-signature" else "webhook-timestamp"]
    [first, *_] = refused_cheaply(api, url, KELDAIR_BOMB, headers, 401)
    assert first.json()["error"]["code"] == "unauthorized"
    await nothing_recorded(services)


async def test_keldair_signed_bomb_is_413_never_500(
    api: tuple[str, int], services: Services
) -> None:
    await add_connection(
        services, tenant="acme", source="keldair", secrets={"signing_secrets": [SECRET]}
    )
    [first, *_] = refused_cheaply(
        api, "/v1/keldair/acme/events", KELDAIR_BOMB, keldair_headers(KELDAIR_BOMB), 413
    )
    error = first.json()["error"]
    assert error["code"] == "payload_too_large"
    assert "decompressed request body" in error["message"]
    await nothing_recorded(services)
