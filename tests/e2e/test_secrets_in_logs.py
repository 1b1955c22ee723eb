"""No secret, token, credential header or payload body in any log line, at DEBUG.

The real processes (`hirehook api`, `hirehook worker`) run the demo tenants (every source)
against the stand-in ATS APIs `hirehook dev` uses and a fake destination. Every source's
sample events are sent with `hirehook send`; tokens are issued and used; wrong credentials
are tried; the worker enriches, polls and delivers. Then everything both processes wrote is
searched for every configured secret, the issued tokens, the raw Authorization values and a
marker carried only in a payload.
"""

from __future__ import annotations

import asyncio
import base64
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
from sqlalchemy import text

from app.platform.embedded import free_port
from app.platform.settings import Settings
from app.services import Services
from tests.support.app import TEST_SECRET_KEY, demo_tenants
from tests.support.fake_ats import FakeATS
from tests.support.keldair import signed
from tests.support.workers import VENDOR_SECRET, worker_env

# Only ever inside a payload: finding it in a log means a body was logged.
PAYLOAD_MARKER = "Zebulon-payload-marker-5d1e"


def secrets_of(value: Any) -> list[str]:
    """Every string under a tenants file's ``secrets`` tables."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for item in value for s in secrets_of(item)]
    if isinstance(value, dict):
        return [s for item in value.values() for s in secrets_of(item)]
    return []


def configured_secrets(tenants: dict[str, Any]) -> list[str]:
    found: list[str] = []
    for tenant in tenants["tenant"]:
        for connection in tenant.get("connection", []):
            # A user name is an identity, logged like a client id (iCIMS uses one string for
            # both); the password beside it is the secret.
            secrets = {
                k: v for k, v in connection.get("secrets", {}).items() if k != "basic_username"
            }
            found += secrets_of(secrets)
        if "destination" in tenant:
            found.append(tenant["destination"]["secret"])
    return found


class Processes:
    def __init__(
        self, base: str, env: dict[str, str], logs: list[Path], tenants: dict[str, Any]
    ) -> None:
        self.base = base
        self.env = env
        self.logs = logs
        self.tenants = tenants

    def output(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.logs)


def wait_up(url: str) -> None:
    for _ in range(300):
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    pytest.fail(f"{url} did not answer")


@pytest.fixture
def running(
    settings: Settings, services: Services, fake_ats: FakeATS, tmp_path: Path
) -> Iterator[Processes]:
    ats_port, port = free_port(), free_port()
    tenants = tmp_path / "tenants.toml"
    tenants.write_text(
        demo_tenants(f"http://127.0.0.1:{ats_port}")
        + f'\n[tenant.destination]\nurl = "{fake_ats.vendor_url}"\nsecret = "{VENDOR_SECRET}"\n'
    )
    env = worker_env(
        settings,
        log_level="DEBUG",
        tenants_file=str(tenants),
        public_base_url=f"http://127.0.0.1:{port}",
        sweep_interval_s="2",
    )
    cli = [sys.executable, "-m", "app.cli"]
    logs = [tmp_path / "api.log", tmp_path / "worker.log"]
    procs: list[subprocess.Popen[bytes]] = []
    with (tmp_path / "ats.log").open("wb") as out:
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "app.dev.demo_ats", "--port", str(ats_port)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        )
    for log, argv in zip(logs, (["api", "--port", str(port)], ["worker"]), strict=True):
        with log.open("wb") as out:
            procs.append(
                subprocess.Popen([*cli, *argv], env=env, stdout=out, stderr=subprocess.STDOUT)
            )
    try:
        wait_up(f"http://127.0.0.1:{port}/health/ready")
        yield Processes(f"http://127.0.0.1:{port}", env, logs, tomllib.loads(tenants.read_text()))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


async def hirehook_send(env: dict[str, str], *argv: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app.cli",
        "send",
        *argv,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, out.decode()
    return out.decode()


# Processes to start and a worker to drain: slow on a loaded machine.
@pytest.mark.timeout(300)
async def test_a_full_flow_logs_no_secret_token_or_payload(
    running: Processes, services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    base, env = running.base, running.env
    tenants = running.tenants
    demo = tenants["tenant"][0]
    by_source = {c["source"]: c for c in reversed(demo["connection"])}
    icims = by_source["icims"]

    # Every source's samples, as an integrator would send them.
    await hirehook_send(env, "keldair", "--url", base)
    await hirehook_send(env, "icims", "--url", base, "--auth", "basic", "--type", "all")
    await hirehook_send(env, "icims", "--url", base, "--auth", "hmac")
    await hirehook_send(env, "icims", "--url", base, "--auth", "oauth")
    await hirehook_send(env, "hrmanager", "--url", base, "--event", "all")
    await hirehook_send(env, "smartrecruiters", "--url", base)
    await hirehook_send(env, "cloudelements", "--url", base, "--events", "3")

    keldair_secret = by_source["keldair"]["secrets"]["signing_secrets"][0]
    basic = base64.b64encode(
        f"{icims['secrets']['basic_username']}:{icims['secrets']['basic_password']}".encode()
    ).decode()
    wrong_basic = base64.b64encode(b"icims-demo-1234:not-the-password-1234").decode()
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        # A payload whose body must never be logged, and a forged copy of it.
        body = orjson.dumps(
            {
                "id": "marker-1",
                "type": "applicant.hired",
                "version": "2022-02-23",
                "dateOccurred": "2022-02-23T18:46:43+00:00",
                "data": {"id": "ap_m", "firstName": PAYLOAD_MARKER, "jobId": "job_m"},
            }
        )
        ok = await client.post(
            "/v1/keldair/demo/events", content=body, headers=signed(body, secret=keldair_secret)
        )
        assert ok.status_code == 200
        forged = await client.post(
            "/v1/keldair/demo/events",
            content=body,
            headers=signed(body, secret="whsec_" + base64.b64encode(b"x" * 32).decode()),
        )
        assert forged.status_code == 401
        # The token endpoint, right and wrong, and the token used.
        issued = await client.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(icims["options"]["oauth_client_id"], icims["secrets"]["oauth_client_secrets"][0]),
        )
        assert issued.status_code == 200, issued.text
        token = issued.json()["access_token"]
        refused = await client.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(icims["options"]["oauth_client_id"], "wrong-client-secret-0123456789abcdef"),
        )
        assert refused.status_code == 401
        bearer = await client.post(
            "/v1/icims/events",
            content=b'{"customerId": "1234"}',
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        assert bearer.status_code < 500
        for authorization in (f"Basic {basic}", f"Basic {wrong_basic}", "Bearer not-a-token-9f2"):
            answer = await client.post(
                "/v1/icims/events",
                content=b'{"customerId": "1234", "eventType": "x"}',
                headers={"Authorization": authorization, "Content-Type": "application/json"},
            )
            assert answer.status_code < 500

    # Let the worker enrich, deliver and poll; every known record settles.
    deadline = time.monotonic() + 90
    pending = -1
    while time.monotonic() < deadline:
        async with services.engine.connect() as conn:
            pending = (
                await conn.execute(
                    text(
                        "SELECT (SELECT count(*) FROM outbox WHERE done_at IS NULL)"
                        " + (SELECT count(*) FROM delivery WHERE done_at IS NULL)"
                    )
                )
            ).scalar_one()
        if pending == 0 and fake_ats.deliveries():
            break
        await asyncio.sleep(0.5)
    assert pending == 0
    assert fake_ats.deliveries(), "nothing was delivered to the destination"

    output = running.output()
    lines = [orjson.loads(line) for line in output.splitlines() if line.startswith("{")]
    events = {line.get("event") for line in lines}
    # The logs are there to search: each source recorded, the worker processed and delivered,
    # and DEBUG lines (from libraries too) were written.
    recorded = {line.get("source") for line in lines if line.get("event") == "intake.recorded"}
    assert recorded >= {"keldair", "icims", "hrmanager", "smartrecruiters", "cloudelements"}
    assert {"job.record_processed", "delivery.delivered"} <= events
    assert any(line.get("level") == "debug" for line in lines)
    # Every line about a record names its tenant and the request (or job) it belongs to.
    for line in lines:
        if "record_id" in line and line.get("event") != "dead_letter.still_unexpected":
            assert "tenant" in line or "tenant_id" in line, line

    forbidden = {
        *configured_secrets(tenants),
        TEST_SECRET_KEY,
        VENDOR_SECRET,
        token,
        basic,
        wrong_basic,
        "not-a-token-9f2",
        "wrong-client-secret-0123456789abcdef",
        PAYLOAD_MARKER,
    }
    password = urlsplit(str(settings.database_url)).password
    if password:
        forbidden.add(password)
    assert len(forbidden) > 10
    leaked = sorted(s for s in forbidden if s in output)
    assert leaked == [], f"found in the logs: {leaked}"
    # A whsec_ secret's key is its base64 part; neither form may appear.
    for secret in (keldair_secret, VENDOR_SECRET):
        assert secret.removeprefix("whsec_") not in output
    # The record the marker payload made is logged by its id, with its request id.
    marker_lines = [x for x in lines if x.get("record_id") == ok.headers["hirehook-record-id"]]
    assert marker_lines
    # (A job the sweeper republished first would carry none: grace is 0 here.)
    assert {x.get("request_id") for x in marker_lines} - {None} == {ok.headers["x-request-id"]}
