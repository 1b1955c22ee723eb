"""A record's whole story (every delivery attempt, the normalized rows it wrote), refused
requests counted per minute, and dead letters grouped by cause and reason: through the admin
API and the CLI, against real PostgreSQL, Redis and the fake ATS and destination."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import orjson

from app.admin import privacy
from app.intake.refusals import RefusalLog
from app.platform.settings import Settings
from app.services import Services
from app.store import attempts
from tests.support.admin import Recorder, log_in
from tests.support.cli import hirehook, ok
from tests.support.fake_ats import SR_TOKEN, FakeATS, Step
from tests.support.keldair import SECRET, URL, signed
from tests.support.workers import (
    HRM_SECRET,
    add_source,
    fast_settings,
    record_event,
    rows,
    run_worker,
)


async def test_every_delivery_attempt_is_in_the_records_story(
    admin: Recorder, services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    fake_ats.add_hrm_candidate("1001")
    conn = await add_source(services, fake_ats, "hrmanager", destination=True)
    # The destination fails once with a body of its own, then takes the event.
    fake_ats.script.append(Step("/vendor", status=503))
    rid = await record_event(services, conn, "CandidateUpdated", {"CandidateId": "1001"})
    await run_worker(fast_settings(settings))
    assert len(fake_ats.deliveries()) == 1

    detail = (await admin.call("GET", f"/records/{rid}")).json()
    failed, delivered = detail["attempts"]
    assert failed["status"] == 503
    assert failed["error"] == "destination answered 503"
    assert "scripted 503" in failed["answer"]
    assert failed["answer_size"] == len(failed["answer"].encode())
    assert delivered["status"] == 200 and delivered["error"] is None
    assert orjson.loads(delivered["answer"]) == {"ok": True}
    assert all(isinstance(a["latency_ms"], int) for a in detail["attempts"])
    assert failed["attempted_at"] <= delivered["attempted_at"]
    # What enrichment wrote: the candidate's row, the version the event carried.
    [written] = detail["written"]
    assert (written["kind"], written["external_id"]) == ("candidate", "1001")
    assert written["delivered_version"] == written["version"] is not None
    assert detail["delivery"]["done_at"] is not None

    shown = await hirehook(settings, "records", "show", str(rid))
    assert shown.returncode == 0, shown.stderr
    assert "attempt 1: 503" in shown.stdout and "attempt 2: 200" in shown.stdout
    assert "wrote candidate 1001 version" in shown.stdout
    as_json = ok(await hirehook(settings, "records", "show", str(rid), "--json"))
    assert [a["status"] for a in as_json["attempts"]] == [503, 200]
    admin.assert_never_shown(HRM_SECRET)


async def test_a_delivery_that_gave_up_says_so_in_the_cli_and_the_console(
    admin: Recorder, services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    fake_ats.add_hrm_candidate("1001")
    conn = await add_source(services, fake_ats, "hrmanager", destination=True)
    # 410 Gone: the destination is retired, so the delivery gives up at once.
    fake_ats.script.append(Step("/vendor", status=410))
    rid = await record_event(services, conn, "CandidateUpdated", {"CandidateId": "1001"})
    await run_worker(fast_settings(settings))

    shown = await hirehook(settings, "records", "show", str(rid))
    assert shown.returncode == 0, shown.stderr
    assert "delivery: gave up " in shown.stdout and "delivery: done" not in shown.stdout
    assert "enrichment: done " in shown.stdout
    assert "destination_gone" in shown.stdout

    await log_in(admin.client, admin.key)
    page = await admin.client.get(f"/console/records/{rid}")
    assert page.status_code == 200
    assert "<dt>Gave up</dt>" in page.text and "(dead letter below)" in page.text
    # Enrichment finished; only the delivery gave up.
    assert page.text.count("<dt>Done</dt>") == 1


async def test_an_answer_is_kept_to_512_bytes_and_erased_with_its_record(
    admin: Recorder, services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    fake_ats.add_hrm_candidate("1001")
    conn = await add_source(services, fake_ats, "hrmanager", destination=True)
    fake_ats.script.append(Step("/vendor", status=500, headers={"x-pad": "1"}))
    rid = await record_event(services, conn, "CandidateUpdated", {"CandidateId": "1001"})
    await run_worker(fast_settings(settings))
    # However much a destination answers, its first 512 bytes are kept, and the size.
    async with services.autocommit.connect() as c:
        await attempts.add(
            c,
            record_id=rid,
            tenant_id=conn.tenant_id,
            latency_ms=5,
            status=502,
            error="destination answered 502",
            answer=b"<html>" + b"x" * 5000,
        )
    stored = await rows(services, "SELECT answer, answer_size FROM delivery_attempt ORDER BY id")
    assert [len(r.answer) for r in stored][2] == 512 and stored[2].answer_size == 5006

    erased = await admin.call(
        "POST",
        "/erasures",
        json={"tenant": "acme", "source": "hrmanager", "candidate_id": "1001"},
    )
    assert erased.status_code == 201, erased.text
    left = await rows(services, "SELECT answer, status FROM delivery_attempt ORDER BY id")
    assert [(r.answer, r.status) for r in left] == [(None, 500), (None, 200), (None, 502)]
    detail = (await admin.call("GET", f"/records/{rid}")).json()
    assert [a["answer"] for a in detail["attempts"]] == [None, None, None]


async def test_attempts_and_refusals_go_with_retention(
    services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    fake_ats.add_hrm_candidate("1001")
    conn = await add_source(services, fake_ats, "hrmanager", destination=True)
    await record_event(services, conn, "CandidateUpdated", {"CandidateId": "1001"})
    await run_worker(fast_settings(settings))
    log = RefusalLog()
    old = datetime.now(UTC) - timedelta(days=8)
    for at in (old, datetime.now(UTC)):
        log.note(
            services.engine,
            tenant="acme",
            source="keldair",
            status=401,
            reason="unauthorized",
            address="192.0.2.7",
            now=at,
        )
    await log.flush(services.engine)
    async with services.engine.begin() as c:
        await c.exec_driver_sql("UPDATE tenant SET retention_days = 30")
    assert len(await rows(services, "SELECT 1 FROM delivery_attempt")) == 1

    report = await privacy.maintain(services.engine, settings, budget_s=60)
    assert (report.attempts_purged, report.refusals_purged) == (0, 1)
    later = datetime.now(UTC) + timedelta(days=31)
    report = await privacy.maintain(services.engine, settings, now=later, budget_s=60)
    assert report.attempts_purged == 1
    assert await rows(services, "SELECT 1 FROM delivery_attempt") == []


async def test_refused_requests_are_listed_by_tenant_source_reason_and_address(
    admin: Recorder, client: httpx.AsyncClient, settings: Settings
) -> None:
    raw = b'{"type": "applicant.hired"}'
    wrong = {**signed(raw, secret=SECRET), "webhook-signature": "v1,AAAA"}
    for _ in range(3):
        refused = await client.post(URL, content=raw, headers=wrong)
        assert refused.status_code == 401
    too_large = await client.post(
        URL, content=b"x" * (settings.max_body_bytes + 1), headers=signed(raw)
    )
    assert too_large.status_code == 413
    unknown_key = await client.get("/v1/admin/tenants", headers={"authorization": "Bearer no"})
    assert unknown_key.status_code == 401

    listed = (await admin.call("GET", "/refusals")).json()
    counted = {(r["tenant"], r["source"], r["status"], r["reason"]): r["count"] for r in listed}
    assert counted[("acme", "keldair", 401, "unauthorized")] == 3
    assert counted[("acme", "keldair", 413, "payload_too_large")] == 1
    assert counted[("", "admin", 401, "unauthorized")] == 1
    assert {r["address"] for r in listed} == {"127.0.0.1"}
    only = (await admin.call("GET", "/refusals", params={"status": 413})).json()
    assert [(r["tenant"], r["count"]) for r in only] == [("acme", 1)]
    assert (await admin.call("GET", "/refusals", params={"tenant": "globex"})).json() == []
    assert (await admin.call("GET", "/refusals", params={"status": 500})).status_code == 400
    # Neither the body nor a credential is kept.
    admin.assert_never_shown("applicant.hired", "v1,AAAA", "Bearer no")


async def test_a_flood_of_refusals_is_counted_not_written_per_request(
    services: Services,
) -> None:
    log = RefusalLog(flush_every_s=3600, keys_per_minute=3)
    at = datetime.now(UTC)
    for n in range(1000):
        log.note(
            services.engine,
            tenant="acme",
            source="keldair",
            status=401,
            reason="unauthorized",
            address=f"198.51.100.{n % 250}",
            now=at,
        )
    # Nothing written until the flush, and then the capped keys only.
    assert await rows(services, "SELECT 1 FROM refusal") == []
    assert log.pending == 4
    await log.flush(services.engine)
    stored = await rows(services, "SELECT address, count AS n FROM refusal ORDER BY address")
    assert len(stored) == 4
    assert sum(r.n for r in stored) == 1000
    assert {r.address: r.n for r in stored}["*"] == 1000 - 3 * 4
    # The next flush adds to the same minute's rows.
    log.note(
        services.engine,
        tenant="acme",
        source="keldair",
        status=401,
        reason="unauthorized",
        address="198.51.100.0",
        now=at,
    )
    await log.flush(services.engine)
    assert sum(r.n for r in await rows(services, "SELECT count AS n FROM refusal")) == 1001


async def test_dead_letters_are_grouped_by_cause_and_reason_and_a_group_retried(
    admin: Recorder, services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    fake_ats.add_sr_candidate("c-1")
    sr = await add_source(services, fake_ats, "smartrecruiters", secrets={"api_key": "expired"})
    hrm = await add_source(services, fake_ats, "hrmanager", tenant="globex")
    await record_event(services, sr, "candidate.updated", {"id": "c-1"})
    for who in ("nobody", "no-one"):
        await record_event(services, hrm, "CandidateUpdated", {"CandidateId": who})
    fast = fast_settings(settings)
    await run_worker(fast)

    groups = (await admin.call("GET", "/dead-letters/groups")).json()
    assert [(g["kind"], g["reason"], g["stage"], g["count"]) for g in groups] == [
        ("configuration", "credentials_refused", "enrichment", 1),
        ("pipeline", "not_found", "enrichment", 2),
    ]
    assert groups[1]["tenants"] == ["globex"] and groups[1]["sources"] == ["hrmanager"]
    by_source = await admin.call("GET", "/dead-letters/groups", params={"source": "hrmanager"})
    assert [g["reason"] for g in by_source.json()] == ["not_found"]
    by_tenant = await admin.call("GET", "/dead-letters/groups", params={"tenant": "acme"})
    assert [g["reason"] for g in by_tenant.json()] == ["credentials_refused"]

    cli = ok(await hirehook(settings, "dead-letters", "groups", "--json"))
    assert cli["next_cursor"] is None
    assert [(g["reason"], g["count"]) for g in cli["items"]] == [
        ("credentials_refused", 1),
        ("not_found", 2),
    ]
    text = await hirehook(settings, "dead-letters", "groups", "--source", "hrmanager")
    header, *lines = [line.split() for line in text.stdout.splitlines()]
    assert header[:4] == ["KIND", "REASON", "STAGE", "COUNT"]
    assert [line[:4] for line in lines] == [["pipeline", "not_found", "enrichment", "2"]]

    [connection] = (await admin.call("GET", "/connections", params={"tenant": "acme"})).json()
    await admin.call(
        "PUT",
        f"/connections/{connection['id']}/secrets",
        json={"secrets": {"api_key": SR_TOKEN}, "merge": True},
    )
    # One group: its three as filters retry that many and no other.
    retried = await admin.call(
        "POST",
        "/dead-letters/retry",
        json={"kind": "configuration", "reason": "credentials_refused", "stage": "enrichment"},
    )
    assert retried.json() == {"count": 1, "still_failing": 0}
    left = (await admin.call("GET", "/dead-letters/groups")).json()
    assert [(g["reason"], g["count"]) for g in left] == [("not_found", 2)]
    admin.assert_never_shown(SR_TOKEN, "expired")
