"""The operator commands as an admin API client: ``hirehook --url ... --key ...`` against a
served Hirehook (uvicorn on loopback) with no database setting at all in the command's
environment, and the same commands without a URL, in process on this host's settings, printing
the same. Failures of the API (a wrong key, no answer, an answer that is not the API's) are one
line and exit status 1."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import http.server
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from typer.testing import CliRunner

from app.admin import keys
from app.cli import cli
from app.platform.settings import Settings
from app.services import Services
from tests.support.fake_ats import FakeATS
from tests.support.workers import (
    HRM_SECRET,
    VENDOR_SECRET,
    add_source,
    fast_settings,
    record_event,
    rows,
    run_worker,
    worker_env,
)

KEYLDAIR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
# Nothing but the API: a command that touched this host's database would fail on these.
NO_LOCAL_SETTINGS: dict[str, str | None] = {
    "HIREHOOK_ENVIRONMENT": "test",
    "HIREHOOK_DATABASE_URL": None,
    "HIREHOOK_REDIS_URL": None,
    "HIREHOOK_SECRET_KEY": None,
    "HIREHOOK_URL": None,
    "HIREHOOK_ADMIN_KEY": None,
}


async def invoke(
    args: list[str], env: dict[str, str | None], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """One command in process (Click's runner, in a thread: the served app answers meanwhile)."""
    result = await asyncio.to_thread(
        CliRunner().invoke, cli, args, input=stdin, env=env, catch_exceptions=False
    )
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


class Remote:
    """``hirehook --url URL --key KEY ...`` with no local settings."""

    def __init__(self, url: str, key: str) -> None:
        self.url, self.key = url, key
        self.outputs: list[str] = []

    async def __call__(self, *args: str, stdin: str | None = None) -> Any:
        result = await self.run(*args, stdin=stdin)
        assert result.returncode == 0, (args, result.stderr)
        return orjson.loads(result.stdout) if "--json" in args else result.stdout

    async def run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        result = await invoke(
            ["--url", self.url, "--key", self.key, *args], NO_LOCAL_SETTINGS, stdin
        )
        self.outputs.append(result.stdout + result.stderr)
        return result


async def local(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """The same command without a URL: in process, on this host's settings."""
    env: dict[str, str | None] = {
        k: v for k, v in worker_env(settings).items() if k.startswith("HIREHOOK_")
    }
    env.update({"HIREHOOK_URL": None, "HIREHOOK_ADMIN_KEY": None})
    return await invoke(list(args), env)


async def admin_key(services: Services) -> str:
    return (await keys.create(services.engine, "ops")).key


async def post_hrmanager(base: str, body: dict[str, Any]) -> None:
    """One HR Manager event, signed as HR Manager signs it, to the served API."""
    raw = orjson.dumps(body)
    mac = hmac.new(bytes.fromhex(HRM_SECRET), raw, hashlib.sha256).digest()
    async with httpx.AsyncClient(base_url=base) as client:
        answer = await client.post(
            "/v1/hrmanager/acme/events",
            content=raw,
            headers={
                "content-type": "application/json",
                "X-Signature-Base64HmacSha256": base64.b64encode(mac).decode(),
            },
        )
    assert answer.status_code < 300, answer.text


async def test_every_operator_command_group_goes_through_a_served_api(
    settings: Settings, services: Services, served: str, fake_ats: FakeATS
) -> None:
    hirehook = Remote(served, await admin_key(services))

    # Tenants and connections.
    assert (await hirehook("tenants", "create", "globex", "Globex", "--json"))["slug"] == "globex"
    assert (await hirehook("tenants", "update", "globex", "Globex Inc", "--json"))["name"] == (
        "Globex Inc"
    )
    secrets = orjson.dumps({"signing_secrets": [KEYLDAIR_SECRET]}).decode()
    made = await hirehook(
        "connections", "create", "globex", "keldair", "--secrets-file", "-", "--json",
        stdin=secrets,
    )  # fmt: skip
    cid = str(made["id"])
    assert (await hirehook("connections", "disable", cid, "--json"))["enabled"] is False
    assert (await hirehook("connections", "enable", cid, "--json"))["enabled"] is True
    rotated = await hirehook(
        "connections", "rotate", cid, "--secrets-file", "-", "--json", stdin=secrets
    )
    assert rotated["secrets"]["names"] == ["signing_secrets"]
    assert (await hirehook("connections", "update", cid, "--account", "a-1", "--json"))[
        "account"
    ] == "a-1"
    assert [c["id"] for c in (await hirehook("connections", "list", "--json"))["items"]] == [
        int(cid)
    ]
    assert (await hirehook("connections", "show", cid, "--json"))["tenant"] == "globex"
    assert (await hirehook("tenants", "disable", "globex", "--json"))["enabled_connections"] == 0
    assert (await hirehook("tenants", "enable", "globex", "--json"))["enabled_connections"] == 1
    destination = await hirehook(
        "tenants", "destination", "globex", "https://hooks.vendor.example/in",
        "--secret-file", "-", "--json", stdin=VENDOR_SECRET,
    )  # fmt: skip
    assert destination["destination"]["secret_set"] is True
    assert "keldair" in await hirehook("tenants", "show", "globex")
    assert [t["slug"] for t in (await hirehook("tenants", "list", "--json"))["items"]] == ["globex"]

    # Records and replay.
    fake_ats.add_hrm_candidate("1001", positions=["77"])
    fake_ats.add_hrm_position("77")
    conn = await add_source(services, fake_ats, "hrmanager", destination=True)
    rid = await record_event(
        services, conn, "CandidateStatusUpdated", {"CandidateId": "1001", "PositionId": "77"}
    )
    await run_worker(fast_settings(settings))
    page = await hirehook("records", "list", "--tenant", "acme", "--json")
    assert [r["id"] for r in page["items"]] == [str(rid)] and page["next_cursor"] is None
    assert (await hirehook("records", "show", str(rid), "--json"))["state"] == "delivered"
    assert "delivery: done" in await hirehook("records", "show", str(rid))
    replayed = await hirehook("records", "replay", str(rid), "--json")
    assert replayed["enrichments"] == 1
    [log] = await rows(services, "SELECT actor FROM replay")
    assert log.actor == "ops"  # the admin key's name
    assert (await hirehook("records", "replay", "--source", "hrmanager", "--dry-run", "--json"))[
        "matched"
    ] == 1

    # Dead letters.
    await post_hrmanager(served, {"Event": "CandidateHired", "Ref": "9"})
    [letter] = (await hirehook("dead-letters", "list", "--json"))["items"]
    assert letter["stage"] == "intake"
    [group] = (await hirehook("dead-letters", "groups", "--json"))["items"]
    assert group["count"] == 1
    again = await hirehook.run("dead-letters", "retry", str(letter["id"]), "--json")
    assert again.returncode == 1 and orjson.loads(again.stdout)["still_failing"] == 1
    [letter] = (await hirehook("dead-letters", "list", "--json"))["items"]
    discarded = await hirehook("dead-letters", "discard", str(letter["id"]), "--json")
    assert discarded["count"] == 1
    twice = await hirehook.run("dead-letters", "discard", str(letter["id"]))
    assert twice.returncode == 1 and "already" in twice.stderr

    # Statistics and erasure.
    stats = await hirehook("stats", "--tenant", "acme", "--json")
    [acme] = stats["sources"]
    assert (acme["source"], acme["records"]) == ("hrmanager", 2)
    assert "hrmanager" in await hirehook("stats")
    erased = await hirehook(
        "erase", "--tenant", "acme", "--source", "hrmanager", "--candidate", "1001", "--json"
    )
    assert erased["actor"] == "admin:ops" and erased["erased_at"].endswith("Z")

    # A refusal of the API is its message, one line, exit 1.
    unknown = await hirehook.run("tenants", "show", "nobody")
    assert unknown.returncode == 1 and unknown.stdout == ""
    [line] = unknown.stderr.strip().splitlines()
    assert line.startswith("error: ") and "nobody" in line
    for text in hirehook.outputs:
        assert hirehook.key not in text and KEYLDAIR_SECRET[6:] not in text
        assert VENDOR_SECRET[6:] not in text


async def test_without_a_url_the_same_commands_print_the_same(
    settings: Settings, services: Services, served: str, fake_ats: FakeATS
) -> None:
    hirehook = Remote(served, await admin_key(services))
    fake_ats.add_hrm_candidate("1001", positions=["77"])
    fake_ats.add_hrm_position("77")
    conn = await add_source(services, fake_ats, "hrmanager", destination=True)
    rid = await record_event(
        services, conn, "CandidateStatusUpdated", {"CandidateId": "1001", "PositionId": "77"}
    )
    await run_worker(fast_settings(settings))
    await post_hrmanager(served, {"Event": "CandidateHired", "Ref": "9"})
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    window = ["--since", (hour - timedelta(hours=1)).isoformat()]
    window += ["--until", (hour + timedelta(hours=2)).isoformat()]

    for command in (
        ["records", "list"],
        ["records", "list", "--json"],
        ["records", "show", str(rid)],
        ["records", "show", str(rid), "--json"],
        ["tenants", "list", "--json"],
        ["tenants", "show", "acme"],
        ["connections", "list"],
        ["dead-letters", "list", "--json"],
        ["dead-letters", "groups"],
        ["stats", *window, "--json"],
        ["stats", *window],
    ):
        remote = await hirehook.run(*command)
        here = await local(settings, *command)
        assert remote.returncode == here.returncode == 0, (command, remote.stderr, here.stderr)
        assert remote.stdout == here.stdout, command
        assert remote.stdout.strip(), command

    refused = await local(settings, "records", "show", str(uuid.uuid4()))
    assert refused.returncode == 1 and "does not exist" in refused.stderr


def cli_process(*args: str, **variables: str) -> subprocess.CompletedProcess[str]:
    """``python -m app.cli`` as an operator runs it, with only these ``HIREHOOK_`` variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIREHOOK_")}
    env.update(variables)
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def one_line(result: subprocess.CompletedProcess[str], *names: str) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output and result.stdout == "", output
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: "), line
    for name in names:
        assert name in line, (name, line)
    return line


@pytest.fixture
def html_server() -> Iterator[str]:
    """A web server on loopback that is not Hirehook: every answer is an HTML page."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<html><body>It works!</body></html>"
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


async def test_failures_of_the_api_are_one_line_and_exit_1(
    services: Services, served: str, closed_port: int, html_server: str
) -> None:
    key = await admin_key(services)
    wrong = "hh_admin_" + "x" * 43
    # The key from the environment, as an operator keeps it out of the process list.
    refused = await asyncio.to_thread(
        cli_process, "--url", served, "records", "list", HIREHOOK_ADMIN_KEY=wrong
    )
    line = one_line(refused, served, "refused the admin key", "HIREHOOK_ADMIN_KEY")
    assert wrong not in line
    good = await asyncio.to_thread(
        cli_process, "records", "list", "--json", HIREHOOK_URL=served, HIREHOOK_ADMIN_KEY=key
    )
    assert good.returncode == 0, good.stderr
    assert orjson.loads(good.stdout) == {"items": [], "next_cursor": None}

    dead = f"http://127.0.0.1:{closed_port}"
    unreachable = await asyncio.to_thread(
        cli_process, "--url", dead, "--key", key, "tenants", "list"
    )
    one_line(unreachable, "cannot reach", dead)
    not_ours = await asyncio.to_thread(
        cli_process, "--url", html_server, "--key", key, "dead-letters", "list"
    )
    one_line(not_ours, html_server, "text/html", "not the admin API")
    keyless = await asyncio.to_thread(cli_process, "--url", served, "stats")
    one_line(keyless, "--key", "HIREHOOK_ADMIN_KEY")
    urlless = await asyncio.to_thread(cli_process, "--key", key, "stats")
    one_line(urlless, "--key needs --url")
    # A 400 of the API: its message.
    invalid = await asyncio.to_thread(
        cli_process, "--url", served, "--key", key, "records", "list", "--cursor", "nonsense"
    )
    one_line(invalid, "cursor")


async def test_smartrecruiters_subscriptions_are_listed_through_the_api(
    settings: Settings, services: Services, served: str, fake_ats: FakeATS
) -> None:
    from app.store import subscriptions

    hirehook = Remote(served, await admin_key(services))
    conn = await add_source(services, fake_ats, "smartrecruiters")
    async with services.engine.begin() as db:
        await subscriptions.insert_pending(
            db,
            connection_id=conn.id,
            external_id="sub-1",
            callback_url=f"{served}/v1/smartrecruiters/acme/events",
            events=[{"name": "candidate.created", "version": "v201910"}],
            secrets=services.cipher.encrypt_json({}),
            window_s=60,
        )
    [listed] = (await hirehook("smartrecruiters", "list", "acme", "--json"))["items"]
    assert (listed["subscription"], listed["status"], listed["live_keys"]) == (
        "sub-1",
        "pending",
        0,
    )
    assert listed["events"] == "candidate.created@v201910"
    assert listed["created_at"].endswith("Z") and listed["activated_at"] is None
    table = await hirehook.run("smartrecruiters", "list", "acme")
    here = await local(settings, "smartrecruiters", "list", "acme")
    assert table.stdout == here.stdout and "sub-1" in table.stdout
    none = await hirehook.run("smartrecruiters", "list", "globex", "--json")
    assert none.returncode == 1 and none.stdout == ""
    assert "'globex' has no enabled smartrecruiters connection" in none.stderr
