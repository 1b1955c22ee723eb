"""The admin operations from the command line against the session's PostgreSQL and Redis: one
as an operator would run it (``python -m app.cli`` in its own process), the rest in process
through Click's runner (in a thread, as each command runs its own event loop), which
spares a 2-core machine an interpreter start per command."""

from __future__ import annotations

import subprocess

import httpx
import orjson

from app.platform.settings import Settings
from app.services import Services
from tests.support.admin import dead_lettered_delivery, post_hrmanager
from tests.support.cli import hirehook, hirehook_process, ok
from tests.support.fake_ats import FakeATS
from tests.support.keldair import OTHER, SECRET
from tests.support.workers import (
    HRM_SECRET,
    VENDOR_SECRET,
    add_source,
    fast_settings,
    record_event,
    rows,
    run_worker,
)


async def test_admin_keys_are_created_once_listed_without_the_key_and_revoked(
    settings: Settings, services: Services, client: httpx.AsyncClient
) -> None:
    # The one command run as its own process: the entry point works as an operator runs it.
    created = await hirehook_process(settings, "admin-keys", "create", "ops")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("hh_admin_") and "cannot be shown again" in created.stderr
    headers = {"authorization": f"Bearer {key}"}
    assert (await client.get("/v1/admin/tenants", headers=headers)).status_code == 200

    listed = await hirehook(settings, "admin-keys", "list", "--json")
    [entry] = ok(listed)["items"]
    assert entry["name"] == "ops" and entry["last_used_at"] is not None
    assert key not in listed.stdout and "key" not in entry
    plain = await hirehook(settings, "admin-keys", "list")
    assert "ops" in plain.stdout and key not in plain.stdout

    taken = await hirehook(settings, "admin-keys", "create", "ops")
    assert taken.returncode == 1 and "exists" in taken.stderr
    revoked = ok(await hirehook(settings, "admin-keys", "revoke", str(entry["id"]), "--json"))
    assert revoked["revoked_at"] is not None
    assert (await client.get("/v1/admin/tenants", headers=headers)).status_code == 401
    missing = await hirehook(settings, "admin-keys", "revoke", "999")
    assert missing.returncode == 1 and "999" in missing.stderr


async def test_tenants_and_connections_from_the_cli_never_print_a_secret(
    settings: Settings, services: Services
) -> None:
    outputs: list[str] = []

    async def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        result = await hirehook(settings, *args, stdin=stdin)
        outputs.append(result.stdout + result.stderr)
        return result

    assert ok(await run("tenants", "create", "acme", "Acme", "--json"))["slug"] == "acme"
    secrets = orjson.dumps({"signing_secrets": [SECRET]}).decode()
    made = ok(
        await run(
            "connections", "create", "acme", "keldair", "--secrets-file", "-", "--json",
            stdin=secrets,
        )
    )  # fmt: skip
    assert made["secrets"]["names"] == ["signing_secrets"]
    cid = str(made["id"])
    bad = await run(
        "connections", "create", "acme", "keldair", "--name", "b", "--secrets-file", "-",
        stdin='{"signing_secrets": ["whsec_!!notbase64"]}',
    )  # fmt: skip
    assert bad.returncode == 1 and "signing_secrets" in bad.stderr

    disabled = ok(await run("connections", "disable", cid, "--json"))
    assert disabled["enabled"] is False
    assert ok(await run("connections", "enable", cid, "--json"))["enabled"] is True
    rotated = ok(
        await run(
            "connections", "rotate", cid, "--secrets-file", "-", "--json",
            stdin=orjson.dumps({"signing_secrets": [OTHER]}).decode(),
        )
    )  # fmt: skip
    assert rotated["secrets"]["fingerprint"] != made["secrets"]["fingerprint"]
    [row] = await rows(services, "SELECT secrets FROM connection")
    assert services.cipher.decrypt_json(row.secrets) == {"signing_secrets": [OTHER]}
    updated = ok(await run("connections", "update", cid, "--account", "acct-1", "--json"))
    assert updated["account"] == "acct-1"

    assert ok(await run("tenants", "update", "acme", "Acme Corp", "--json"))["name"] == "Acme Corp"
    assert ok(await run("tenants", "disable", "acme", "--json"))["enabled_connections"] == 0
    assert ok(await run("tenants", "enable", "acme", "--json"))["enabled_connections"] == 1
    [tenant] = ok(await run("tenants", "list", "--json"))["items"]
    assert (tenant["slug"], tenant["connections"]) == ("acme", 1)
    shown = await run("tenants", "show", "acme")
    assert "keldair" in shown.stdout and "signing_secrets" in shown.stdout
    listed = await run("connections", "list", "--tenant", "acme")
    assert any(line.split()[0] == cid for line in listed.stdout.splitlines()[1:])
    assert ok(await run("connections", "show", cid, "--json"))["id"] == int(cid)
    hook = ok(
        await run(
            "tenants", "destination", "acme", "https://hooks.vendor.example/in",
            "--secret-file", "-", "--json", stdin=VENDOR_SECRET + "\n",
        )
    )  # fmt: skip
    assert hook["destination"] == {
        "url": "https://hooks.vendor.example/in",
        "enabled": True,
        "secret_set": True,
    }
    [stored] = await rows(services, "SELECT secret FROM destination")
    assert services.cipher.decrypt_json(stored.secret) == {"secret": VENDOR_SECRET}
    unknown = await run("tenants", "show", "nobody")
    assert unknown.returncode == 1 and "nobody" in unknown.stderr
    for text in outputs:
        for secret in (SECRET, OTHER, SECRET[6:], OTHER[6:], VENDOR_SECRET[6:]):
            assert secret not in text


async def test_records_are_listed_shown_and_replayed_idempotently(
    settings: Settings, services: Services, fake_ats: FakeATS
) -> None:
    fake_ats.add_hrm_candidate("1001", positions=["77"])
    fake_ats.add_hrm_position("77")
    conn = await add_source(services, fake_ats, "hrmanager", destination=True)
    ids = [
        await record_event(
            services, conn, "CandidateStatusUpdated", {"CandidateId": "1001", "PositionId": "77"}
        )
        for _ in range(3)
    ]
    fast = fast_settings(settings)
    await run_worker(fast)
    assert len(fake_ats.deliveries()) == 3

    page = ok(
        await hirehook(settings, "records", "list", "--tenant", "acme", "--limit", "2", "--json")
    )
    assert [r["id"] for r in page["items"]] == [str(ids[2]), str(ids[1])]
    rest = ok(
        await hirehook(settings, "records", "list", "--cursor", page["next_cursor"], "--json")
    )
    assert [r["id"] for r in rest["items"]] == [str(ids[0])] and rest["next_cursor"] is None
    # Enriched and acknowledged by the destination: delivered, not only processed.
    plain = await hirehook(settings, "records", "list", "--state", "delivered")
    assert sum(str(i) in plain.stdout for i in ids) == 3
    none = ok(await hirehook(settings, "records", "list", "--state", "processed", "--json"))
    assert none["items"] == []

    shown = ok(await hirehook(settings, "records", "show", str(ids[0]), "--json"))
    assert shown["state"] == "delivered" and shown["delivery"]["last_status"] == 200
    human = await hirehook(settings, "records", "show", str(ids[0]))
    assert "delivery: done" in human.stdout

    for _ in range(2):
        replayed = await hirehook(settings, "records", "replay", "--source", "hrmanager", "--json")
        result = ok(replayed)
        assert (result["matched"], result["enrichments"], result["deliveries"]) == (3, 3, 0)
        await run_worker(fast)
    one = ok(await hirehook(settings, "records", "replay", str(ids[1]), "--json"))
    assert one["enrichments"] == 1
    await run_worker(fast)

    assert len(fake_ats.deliveries()) == 3
    for table in ("candidate", "job", "application"):
        assert len(await rows(services, f"SELECT 1 FROM {table}")) == 1, table  # noqa: S608
    log = await rows(services, "SELECT actor, count AS n FROM replay ORDER BY id")
    assert [r.n for r in log] == [3, 3, 1] and all(r.actor.startswith("cli:") for r in log)
    nothing = await hirehook(settings, "records", "replay")
    assert nothing.returncode == 1 and "Name the records" in nothing.stderr
    for text in (human.stdout, replayed.stdout, replayed.stderr):
        assert HRM_SECRET not in text and VENDOR_SECRET not in text


async def test_set_payload_fields_reparses_quarantined_records_and_records_show_what_is_missing(
    settings: Settings, services: Services, client: httpx.AsyncClient, fake_ats: FakeATS
) -> None:
    fake_ats.add_hrm_position("77")
    hrm = await add_source(services, fake_ats, "hrmanager", destination=True)
    first = await post_hrmanager(client, {"Event": "PositionPublished", "Id": "77"})
    stuck = await post_hrmanager(client, {"Event": "CandidateHired", "Ref": "9"})

    shown = await hirehook(settings, "records", "show", str(first))
    assert shown.returncode == 0, shown.stderr
    assert (
        "missing position_id; names tried: PositionId, positionId, position_id, PositionID"
        in shown.stdout
    )
    assert "names in the body: Event, Id" in shown.stdout
    assert f"hirehook connections set-payload-fields {hrm.id} --field position_id=" in shown.stdout

    result = await hirehook(
        settings,
        "connections",
        "set-payload-fields",
        str(hrm.id),
        "--field",
        "event=Event",
        "--field",
        "position_id=Id",
    )
    assert result.returncode == 0, result.stderr
    assert "1 quarantined record(s) parsed again and released, 1 still quarantined" in (
        result.stdout
    )
    again = ok(
        await hirehook(
            settings, "connections", "set-payload-fields", str(hrm.id), "--field", "event=",
            "--json",
        )
    )  # fmt: skip
    assert again["connection"]["options"]["payload_fields"] == {"position_id": ["Id"]}
    assert (again["reparsed"], again["still_quarantined"]) == (0, 1)
    bad = await hirehook(settings, "connections", "set-payload-fields", str(hrm.id), "--field", "x")
    assert bad.returncode != 0 and "FIELD=NAME" in bad.stderr

    await run_worker(fast_settings(settings))
    [row] = await rows(services, "SELECT state FROM record WHERE id = :id", id=first)
    assert row.state == "processed"
    [delivery] = fake_ats.deliveries()
    assert orjson.loads(delivery.body)["data"]["subjects"] == {"position": "77"}
    still = await hirehook(settings, "records", "show", str(stuck))
    assert "missing candidate_id" in still.stdout


async def test_a_record_whose_delivery_dead_lettered_is_a_dead_letter_in_list_and_filter(
    settings: Settings, services: Services, fake_ats: FakeATS
) -> None:
    rid = await dead_lettered_delivery(services, settings, fake_ats)

    listed = await hirehook(settings, "records", "list")
    assert listed.returncode == 0, listed.stderr
    [row] = [line for line in listed.stdout.splitlines() if str(rid) in line]
    assert row.split()[5] == "dead_letter"
    found = ok(await hirehook(settings, "records", "list", "--state", "dead_letter", "--json"))
    assert [r["id"] for r in found["items"]] == [str(rid)]
    assert found["items"][0]["state"] == "dead_letter"
    processed = ok(await hirehook(settings, "records", "list", "--state", "processed", "--json"))
    assert processed == {"items": [], "next_cursor": None}
    shown = await hirehook(settings, "records", "show", str(rid))
    assert "\tdead_letter\t" in shown.stdout


async def test_commands_that_did_nothing_say_so_and_exit_non_zero(
    settings: Settings, services: Services, client: httpx.AsyncClient, fake_ats: FakeATS
) -> None:
    await add_source(services, fake_ats, "hrmanager", destination=True)
    stuck = await post_hrmanager(client, {"Event": "CandidateHired", "Ref": "9"})

    replayed = await hirehook(settings, "records", "replay", str(stuck))
    assert replayed.returncode == 1, replayed.stdout
    assert "enrichment" not in replayed.stdout and "quarantined" in replayed.stderr
    assert "set-payload-fields" in replayed.stderr and "dead-letters retry" in replayed.stderr

    [letter] = await rows(services, "SELECT id FROM dead_letter WHERE resolved_at IS NULL")
    again = await hirehook(settings, "dead-letters", "retry", str(letter.id), "--json")
    assert again.returncode == 1
    assert orjson.loads(again.stdout) == {"count": 1, "still_failing": 1}
    assert "still do not fit" in again.stderr

    [letter] = await rows(services, "SELECT id FROM dead_letter WHERE resolved_at IS NULL")
    first = await hirehook(settings, "dead-letters", "discard", str(letter.id), "--json")
    assert ok(first) == {"count": 1, "still_failing": 0}
    second = await hirehook(settings, "dead-letters", "discard", str(letter.id))
    assert second.returncode == 1 and "already" in second.stderr
    assert "1 dead letter(s) discarded" not in second.stdout
    nothing = await hirehook(settings, "dead-letters", "retry", "--stage", "delivery")
    assert nothing.returncode == 1 and "no open dead letter" in nothing.stderr

    nosuch = await hirehook(settings, "records", "list", "--tenant", "nosuch")
    assert nosuch.returncode == 1 and "nosuch" in nosuch.stderr and nosuch.stdout == ""
    weird = await hirehook(settings, "records", "list", "--state", "weird")
    assert weird.returncode != 0 and weird.stdout == ""
    for state in ("received", "processed", "delivered", "dead_letter", "quarantined"):
        assert state in weird.stderr


async def test_one_output_convention_json_everywhere_tables_utc_and_no_logs_on_stdout(
    settings: Settings, services: Services, client: httpx.AsyncClient, fake_ats: FakeATS
) -> None:
    await add_source(services, fake_ats, "hrmanager", destination=True)
    stuck = await post_hrmanager(client, {"Event": "CandidateHired", "Ref": "9"})
    await hirehook(settings, "admin-keys", "create", "ops")

    # Every list is one JSON object of the same shape.
    for command in (
        ("records", "list"),
        ("dead-letters", "list"),
        ("admin-keys", "list"),
        ("tenants", "list"),
        ("connections", "list"),
        ("smartrecruiters", "list", "acme"),
    ):
        result = await hirehook(settings, *command, "--json")
        if command[0] == "smartrecruiters":
            # No SmartRecruiters connection: refused, but in the same convention.
            assert result.returncode == 1 and result.stdout == "", command
            continue
        listed = ok(result)
        assert set(listed) == {"items", "next_cursor"}, command
        assert listed["items"], command
        for item in listed["items"]:
            for name in ("received_at", "created_at", "updated_at", "last_used_at"):
                if item.get(name) is not None:
                    assert item[name].endswith("Z"), (command, name, item[name])

    # Human lists are tables with headers; times ISO 8601 in UTC; nothing shows as None.
    records = await hirehook(settings, "records", "list")
    header, *body = records.stdout.splitlines()
    assert header.split()[:3] == ["ID", "RECEIVED", "TENANT"]
    [row] = [line for line in body if str(stuck) in line]
    assert row.split()[1].endswith("Z") and row.split()[5] == "quarantined"
    letters = await hirehook(settings, "dead-letters", "list")
    assert letters.stdout.splitlines()[0].split()[:2] == ["ID", "CREATED"]
    shown = await hirehook(settings, "records", "show", str(stuck))
    keys = await hirehook(settings, "admin-keys", "list")
    for result in (records, letters, shown, keys):
        assert "None" not in result.stdout, result.stdout

    # The commands that had no --json have it.
    [letter] = await rows(services, "SELECT id FROM dead_letter WHERE resolved_at IS NULL")
    discarded = ok(await hirehook(settings, "dead-letters", "discard", str(letter.id), "--json"))
    assert discarded["count"] == 1
    erased = ok(
        await hirehook(
            settings, "erase", "--tenant", "acme", "--source", "hrmanager", "--candidate", "9",
            "--json",
        )
    )  # fmt: skip
    assert erased["erased_at"].endswith("Z") and "counts" in erased
    human = await hirehook(
        settings, "erase", "--tenant", "acme", "--source", "hrmanager", "--candidate", "9"
    )
    assert human.returncode == 0 and human.stdout.startswith("erased; audit ")

    # Logs go to stderr, and a command logs only warnings unless --verbose.
    quiet = await hirehook(settings, "records", "replay", "--source", "hrmanager", "--json")
    assert "admin.replayed" not in quiet.stdout + quiet.stderr
    loud = await hirehook(
        settings, "--verbose", "records", "replay", "--source", "hrmanager", "--json"
    )
    assert "admin.replayed" in loud.stderr and "admin.replayed" not in loud.stdout
    assert orjson.loads(loud.stdout)["matched"] == 1
