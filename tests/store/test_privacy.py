"""Personal data: the stored-header allow-list, retention, monthly partitions, erasure (by the
CLI and by a SmartRecruiters candidate.deleted) and the clean-up of finished work rows."""

from __future__ import annotations

import asyncio
import sys
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import text

from app.admin.privacy import droppable, erase, maintain
from app.intake.core import STORED_HEADERS, storable_headers
from app.platform.settings import Settings
from app.services import Services
from app.sources import stored_headers
from app.store import partitions
from tests.support.app import add_connection
from tests.support.cli import hirehook
from tests.support.fake_ats import SR_TOKEN, FakeATS
from tests.support.keldair import SECRET, event, post
from tests.support.smartrecruiters import KEY_A
from tests.support.smartrecruiters import post as sr_post
from tests.support.workers import add_source, fast_settings, rows, run_worker, worker_env

KELDAIR_URL = "/v1/keldair/acme/events"


async def sql(services: Services, statement: str, **params: Any) -> None:
    async with services.engine.begin() as conn:
        await conn.execute(text(statement), params)


@pytest.fixture
async def acme(services: Services) -> Services:
    await add_connection(
        services, tenant="acme", source="keldair", secrets={"signing_secrets": [SECRET]}
    )
    return services


# --- the stored-header allow-list ------------------------------------------------------------


def test_only_allowed_headers_are_stored() -> None:
    received = {
        "Content-Type": "application/json",
        "User-Agent": "Svix-Webhooks/1.0",
        "webhook-id": "msg_1",
        "webhook-timestamp": "1700000000",
        "webhook-signature": "v1,c2lnbmF0dXJl",
        "X-Forwarded-For": "203.0.113.7",
        "X-Real-IP": "203.0.113.7",
        "Cookie": "session=abc",
        "Authorization": "x-icims-v1-hmac-sha256 user=u,signedheaders=host,signature=00",
        "X-Hub-Signature-256": "sha256=00",
        "smartrecruiters-signature": "v1=00",
        "X-Signature-Base64HmacSha256": "AA==",
        "Elements-Webhook-Signature": "sha256=AA==",
        "x-icims-content-sha256": "00",
    }
    keldair = stored_headers()["keldair"]
    assert storable_headers(received, keldair) == {
        "content-type": "application/json",
        "user-agent": "Svix-Webhooks/1.0",
        "webhook-id": "msg_1",
        "webhook-timestamp": "1700000000",
    }
    # Another source's event ids are not kept for this one.
    assert "webhook-id" not in storable_headers(received, stored_headers()["smartrecruiters"])
    # No source may keep a credential or a signature, whatever its descriptor says.
    for names in stored_headers().values():
        assert not {n for n in names | STORED_HEADERS if "signature" in n or "auth" in n}
        assert names.isdisjoint({"cookie", "x-forwarded-for", "x-real-ip", "x-hook-secret"})


async def test_a_keldair_event_keeps_its_ids_and_drops_signature_and_address(
    client: httpx.AsyncClient, acme: Services
) -> None:
    body = orjson.dumps(event("evt-h"))
    from tests.support.keldair import signed

    headers = {**signed(body), "x-forwarded-for": "203.0.113.7", "cookie": "a=b"}
    response = await client.post(KELDAIR_URL, content=body, headers=headers)
    assert response.status_code == 200
    [row] = await rows(acme, "SELECT headers FROM record")
    assert row.headers["webhook-id"] == "msg_1"
    assert "webhook-timestamp" in row.headers and "content-type" in row.headers
    assert not {"webhook-signature", "x-forwarded-for", "cookie", "host"} & set(row.headers)


# --- retention -------------------------------------------------------------------------------


async def _age(services: Services, days: int, *, where: str = "TRUE") -> None:
    """Move records (and their keys) ``days`` back, into a partition made for that month."""
    async with services.engine.begin() as conn:
        await partitions.ensure(conn, datetime.now(UTC) - timedelta(days=days), ahead=0)
        for table in ("record", "record_key"):
            await conn.execute(
                text(
                    f"UPDATE {table} SET received_at = received_at - make_interval(days => :d) "  # noqa: S608
                    f"WHERE {where}"
                ),
                {"d": days},
            )


async def test_a_purged_record_still_dedupes_and_replays_its_first_answer(
    client: httpx.AsyncClient, acme: Services, settings: Settings
) -> None:
    # A tenant that keeps its data forbids partition drops: this purge is row by row.
    await add_connection(
        acme, tenant="keeper", source="keldair", secrets={"signing_secrets": [SECRET]}
    )
    await sql(acme, "UPDATE tenant SET retention_days = 30 WHERE slug = 'acme'")
    first = await post(client, event("evt-old"))
    assert first.status_code == 200
    fresh = await post(client, event("evt-fresh"), msg_id="msg_2")
    assert fresh.status_code == 200
    await _age(acme, 40, where="dedupe_key = 'evt-old'")

    report = await maintain(acme.engine, settings)
    assert report.records_purged == 1 and report.partitions_dropped == []

    [old] = await rows(
        acme,
        "SELECT raw_body, payload, headers, purged_at, subjects FROM record "
        "WHERE dedupe_key = 'evt-old'",
    )
    assert (old.raw_body, old.payload, old.headers) == (None, None, None)
    assert old.purged_at is not None
    [kept] = await rows(acme, "SELECT raw_body FROM record WHERE dedupe_key = 'evt-fresh'")
    assert kept.raw_body is not None

    again = await post(client, event("evt-old"))
    assert again.status_code == 200
    assert again.headers["hirehook-duplicate"] == "true"
    assert again.content == first.content
    # A second run finds nothing left to purge.
    assert (await maintain(acme.engine, settings)).records_purged == 0


async def test_a_key_recorded_last_month_is_a_duplicate_this_month(
    client: httpx.AsyncClient, acme: Services
) -> None:
    first = await post(client, event("evt-month"))
    before = await rows(acme, "SELECT tableoid::regclass::text AS part FROM record")
    await _age(acme, 35)
    after = await rows(acme, "SELECT tableoid::regclass::text AS part FROM record")
    assert before[0].part != after[0].part

    again = await post(client, event("evt-month"))
    assert again.headers["hirehook-duplicate"] == "true"
    assert again.content == first.content
    assert len(await rows(acme, "SELECT id FROM record")) == 1


async def test_partitions_are_made_ahead(acme: Services, settings: Settings) -> None:
    later = datetime.now(UTC) + timedelta(days=400)
    report = await maintain(acme.engine, settings, now=later)
    expected = [partitions.partition_for(partitions.month_start(later, i)).name for i in range(3)]
    assert report.partitions_made == expected
    async with acme.engine.connect() as conn:
        assert set(expected) <= set(await partitions.names(conn))
    # Made once: the next run finds them.
    assert (await maintain(acme.engine, settings, now=later)).partitions_made == []


async def test_the_purge_drops_a_month_every_retention_has_passed(
    client: httpx.AsyncClient, acme: Services, settings: Settings
) -> None:
    await sql(acme, "UPDATE tenant SET retention_days = 30")
    first = await post(client, event("evt-ancient"))
    await post(client, event("evt-today"), msg_id="msg_2")
    await _age(acme, 130, where="dedupe_key = 'evt-ancient'")
    [old] = await rows(
        acme, "SELECT tableoid::regclass::text AS part FROM record WHERE dedupe_key = 'evt-ancient'"
    )

    report = await maintain(acme.engine, settings)
    assert old.part in report.partitions_dropped
    async with acme.engine.connect() as conn:
        assert old.part not in await partitions.names(conn)
    assert [r.dedupe_key for r in await rows(acme, "SELECT dedupe_key FROM record")] == [
        "evt-today"
    ]
    # The key outlives its partition.
    again = await post(client, event("evt-ancient"))
    assert again.headers["hirehook-duplicate"] == "true"
    assert again.content == first.content


async def test_a_partition_in_use_is_dropped_by_a_later_run(
    client: httpx.AsyncClient, acme: Services, settings: Settings
) -> None:
    await sql(acme, "UPDATE tenant SET retention_days = 30")
    await post(client, event("evt-busy"))
    await _age(acme, 130)
    [old] = await rows(acme, "SELECT tableoid::regclass::text AS part FROM record")
    async with acme.engine.connect() as reader:
        # An open transaction that read the table holds a lock the drop must wait for.
        await reader.execute(text("SELECT count(*) FROM record"))
        report = await maintain(acme.engine, settings)
        assert old.part not in report.partitions_dropped and not report.finished
        await reader.rollback()
    assert old.part in (await maintain(acme.engine, settings)).partitions_dropped


def test_one_tenant_keeping_its_data_keeps_every_partition() -> None:
    now = datetime(2026, 11, 28, tzinfo=UTC)
    parts = [partitions.partition_for(datetime(2026, m, 1, tzinfo=UTC)) for m in range(1, 12)]
    assert droppable(parts, [30, None], now) == []
    assert droppable(parts, [], now) == []
    # The longest retention decides: 90 days before Nov 28 is Aug 30, so July is the last.
    dropped = droppable(parts, [30, 90], now)
    assert [p.name for p in dropped] == [f"record_p2026_{m:02d}" for m in range(1, 8)]


# --- erasure ---------------------------------------------------------------------------------

PERSONAL = ("Grace", "Hopper", "grace.c-1@example.com")


async def _traces(services: Services) -> list[str]:
    """Every place a personal detail of candidate c-1 is found, in PostgreSQL and in Redis."""
    found = []
    queries = {
        "record": "SELECT coalesce(convert_from(raw_body, 'UTF8'), '') || "
        "coalesce(payload::text, '') || coalesce(headers::text, '') AS txt FROM record",
        "delivery": "SELECT convert_from(body, 'UTF8') AS txt FROM delivery",
        "candidate": "SELECT concat_ws(' ', first_name, last_name, email, document::text) AS txt "
        "FROM candidate",
        "application": "SELECT document::text AS txt FROM application",
        "dead_letter": "SELECT detail AS txt FROM dead_letter",
    }
    for table, query in queries.items():
        for row in await rows(services, query):
            found += [f"{table}: {word}" for word in PERSONAL if word in (row.txt or "")]
    redis = services.queue.redis
    async for key in redis.scan_iter(match="hirehook:doc:*"):
        value = await redis.get(key)
        if value and any(word.encode() in value for word in PERSONAL):
            found.append(f"redis: {key!r}")
    return found


async def _enriched_candidate(
    client: httpx.AsyncClient,
    services: Services,
    settings: Settings,
    fake_ats: FakeATS,
    *,
    options: dict[str, Any] | None = None,
) -> httpx.Response:
    fake_ats.add_sr_candidate("c-1", jobs=["j-1"])
    fake_ats.add_sr_job("j-1")
    fake_ats.add_sr_candidate(
        "c-2", jobs=["j-1"], firstName="Alan", lastName="Turing", email="alan@example.com"
    )
    await add_source(
        services,
        fake_ats,
        "smartrecruiters",
        secrets={"api_key": SR_TOKEN, "signing_keys": [KEY_A]},
        options=options,
        destination=True,
    )
    first = await sr_post(client, {"id": "c-1"}, event_name="candidate.created", event_id="evt-c1")
    assert first.status_code == 202
    other = await sr_post(client, {"id": "c-2"}, event_name="candidate.created")
    assert other.status_code == 202
    await run_worker(fast_settings(settings))
    assert await _traces(services), "the candidate's data was stored to begin with"
    return first


async def test_erasure_leaves_nothing_about_the_candidate_and_is_audited(
    client: httpx.AsyncClient, services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    first = await _enriched_candidate(client, services, settings, fake_ats)
    report = await erase(
        services.engine,
        services.queue.redis,
        tenant="acme",
        source="smartrecruiters",
        candidate_id="c-1",
        actor="test:dpo",
    )
    assert report.counts["record"] == 1
    assert report.counts["candidate"] == 1
    assert report.counts["application"] == 1
    assert report.counts["delivery"] == 1
    assert report.counts["redis_key"] >= 1
    assert await _traces(services) == []

    [audit] = await rows(
        services, "SELECT tenant, source, candidate_id, actor, counts FROM erasure"
    )
    assert (audit.tenant, audit.source, audit.candidate_id, audit.actor) == (
        "acme",
        "smartrecruiters",
        "c-1",
        "test:dpo",
    )
    assert audit.counts == report.counts
    # The other candidate is untouched.
    [other] = await rows(services, "SELECT first_name FROM candidate WHERE external_id = 'c-2'")
    assert other.first_name == "Alan"
    # A re-delivery of the erased event is still a duplicate with its first answer.
    again = await sr_post(client, {"id": "c-1"}, event_name="candidate.created", event_id="evt-c1")
    assert again.headers["hirehook-duplicate"] == "true"
    assert again.content == first.content


async def _erase_cli(settings: Settings, *args: str) -> tuple[int, bytes, bytes]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app.cli",
        "erase",
        *args,
        env=worker_env(settings),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out, err


async def test_the_erase_command(
    client: httpx.AsyncClient, services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    await _enriched_candidate(client, services, settings, fake_ats)
    code, out, err = await _erase_cli(
        settings, "--tenant", "acme", "--source", "smartrecruiters", "--candidate", "c-1", "--json"
    )
    assert code == 0, err.decode()
    printed = orjson.loads(out)
    assert printed["counts"]["candidate"] == 1 and printed["actor"].startswith("cli:")
    assert await _traces(services) == []

    # The refusals in process: the entry point itself is proven above.
    unknown = await hirehook(
        settings, "erase", "--tenant", "nobody", "--source", "smartrecruiters", "--candidate", "c-1"
    )
    assert unknown.returncode == 1 and "Tenant 'nobody' does not exist" in unknown.stderr
    # A misspelt source would erase nothing and audit it as done: the API refuses it instead.
    misspelt = await hirehook(
        settings, "erase", "--tenant", "acme", "--source", "smartrecruiter", "--candidate", "c-2"
    )
    assert misspelt.returncode == 1
    assert "Unknown source; one of" in misspelt.stderr and "smartrecruiters" in misspelt.stderr
    assert len(await rows(services, "SELECT id FROM erasure")) == 1


async def test_a_smartrecruiters_deletion_erases_the_candidate(
    client: httpx.AsyncClient, services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    await _enriched_candidate(client, services, settings, fake_ats)
    gone = await sr_post(client, {"id": "c-1"}, event_name="candidate.deleted")
    assert gone.status_code == 202
    await run_worker(fast_settings(settings))

    assert await _traces(services) == []
    [audit] = await rows(services, "SELECT candidate_id, actor FROM erasure")
    assert (audit.candidate_id, audit.actor) == ("c-1", "smartrecruiters:candidate.deleted")
    # What remains is the deletion itself: the id, marked deleted, and its delivery.
    [tomb] = await rows(
        services, "SELECT first_name, email, deleted_at FROM candidate WHERE external_id = 'c-1'"
    )
    assert (tomb.first_name, tomb.email) == (None, None) and tomb.deleted_at is not None
    deleted = [
        orjson.loads(c.body)
        for c in fake_ats.calls_to("/vendor", method="POST")
        if b"candidate.deleted" in c.body
    ]
    assert len(deleted) == 1


async def test_a_deletion_only_marks_the_candidate_when_erasure_is_off(
    client: httpx.AsyncClient, services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    await _enriched_candidate(
        client, services, settings, fake_ats, options={"erase_on_delete": False}
    )
    await sr_post(client, {"id": "c-1"}, event_name="candidate.deleted")
    await run_worker(fast_settings(settings))
    assert await rows(services, "SELECT id FROM erasure") == []
    [kept] = await rows(
        services, "SELECT first_name, deleted_at FROM candidate WHERE external_id = 'c-1'"
    )
    assert kept.first_name == "Grace" and kept.deleted_at is not None


# --- finished work rows ----------------------------------------------------------------------


async def test_finished_outbox_and_delivery_rows_are_cleaned_in_batches(
    acme: Services, settings: Settings
) -> None:
    ids = [uuid.uuid4() for _ in range(7)]
    await sql(
        acme,
        """
        INSERT INTO record_key (id, tenant_id, connection_id, source, dedupe_key)
        SELECT id, 1, 1, 'keldair', id::text FROM unnest(CAST(:ids AS uuid[])) AS id
        """,
        ids=ids,
    )
    now = datetime.now(UTC)
    # outbox: done 2 days ago (x2, cleaned), done an hour ago (kept), still pending (kept).
    outbox_done = [now - timedelta(days=2), now - timedelta(days=2), now - timedelta(hours=1)]
    for rid, at in zip(ids[:4], [*outbox_done, None], strict=True):
        await sql(
            acme,
            "INSERT INTO outbox (record_id, task, done_at) VALUES (:id, 'p', :at)",
            id=rid,
            at=at,
        )
    # delivery: delivered 10 days ago (cleaned), a day ago (kept), still owed (kept).
    delivery_done = [now - timedelta(days=10), now - timedelta(days=1), None]
    for rid, at in zip(ids[4:], delivery_done, strict=True):
        await sql(
            acme,
            "INSERT INTO delivery (record_id, tenant_id, event_type, body, done_at) "
            "VALUES (:id, 1, 'x', 'b', :at)",
            id=rid,
            at=at,
        )
    small = settings.model_copy(update={"purge_batch_size": 1})
    report = await maintain(acme.engine, small)
    assert (report.outbox_cleaned, report.deliveries_cleaned) == (2, 1)
    left = await rows(acme, "SELECT record_id FROM outbox ORDER BY done_at NULLS LAST")
    assert [r.record_id for r in left] == [ids[2], ids[3]]
    left = await rows(acme, "SELECT record_id FROM delivery ORDER BY done_at NULLS LAST")
    assert [r.record_id for r in left] == [ids[5], ids[6]]


# --- erasure finds the person in stored bodies ------------------------------------------------

GRACE = {"firstName": "Grace", "lastName": "Hopper", "email": "grace.c-1@example.com"}


async def test_erasure_finds_the_candidate_in_bodies_whose_subjects_do_not_name_them(
    client: httpx.AsyncClient, acme: Services
) -> None:
    sent = [
        # Typed: its subjects name ap_1.
        event("e-typed", data={"id": "ap_1", **GRACE, "jobId": "job_9"}),
        # A type this version does not model: no subjects.
        event("e-unknown", type="applicant.moved", data={"applicantId": "ap_1", **GRACE}),
        # Quarantined (no data.id): no subjects; one names the id, one only the address.
        event("e-quarantined", data={"applicantId": "ap_1", **GRACE}),
        event("e-address", data={"contact": {"mail": "Grace.C-1@Example.com"}, "note": "Grace"}),
        # Another candidate.
        event("e-other", data={"id": "ap_2", "firstName": "Alan", "email": "alan@example.com"}),
    ]
    for body in sent:
        assert (await post(client, body)).status_code == 200
    quarantined = await rows(acme, "SELECT 1 FROM record WHERE state = 'quarantined'")
    assert len(quarantined) == 2

    report = await erase(
        acme.engine,
        acme.queue.redis,
        tenant="acme",
        source="keldair",
        candidate_id="ap_1",
        actor="test:dpo",
        email="grace.c-1@example.com",
        batch=2,  # several keyset batches
    )
    assert report.counts["record"] == 4
    assert await _traces(acme) == []
    left = await rows(acme, "SELECT payload FROM record WHERE payload IS NOT NULL")
    assert [r.payload["data"]["id"] for r in left] == ["ap_2"]
    # The quarantined records' letters are erased and closed: a retry has nothing to parse.
    letters = await rows(acme, "SELECT detail, resolved_at, resolution FROM dead_letter")
    assert len(letters) == 2
    assert all(
        (x.detail, x.resolution) == ("(erased)", "erased") and x.resolved_at for x in letters
    )


async def test_erasure_uses_the_address_the_stored_candidate_has(
    client: httpx.AsyncClient, acme: Services
) -> None:
    await sql(
        acme,
        "INSERT INTO candidate (tenant_id, source, external_id, email, document, fetched_at, "
        "version) SELECT id, 'keldair', 'ap_1', 'grace.c-1@example.com', '{}'::jsonb, now(), 1 "
        "FROM tenant",
    )
    body = event("e-address", data={"contact": "grace.c-1@example.com", "note": "Grace"})
    assert (await post(client, body)).status_code == 200
    report = await erase(
        acme.engine,
        acme.queue.redis,
        tenant="acme",
        source="keldair",
        candidate_id="ap_1",
        actor="test:dpo",
    )
    assert (report.counts["record"], report.counts["candidate"]) == (1, 1)
    assert await _traces(acme) == []


async def test_erasure_learns_the_address_from_the_candidates_own_record(
    client: httpx.AsyncClient, acme: Services
) -> None:
    """Without ``email`` and without a normalized candidate (KeldairHR keeps none): the
    address beside the id in the candidate's own event finds the bodies naming only it, and a
    recruiter's address in the same event takes nobody else's records with it."""
    recruiter = {"id": "usr_7", "email": "recruiter@example.com"}
    sent = [
        event("e-typed", data={"id": "ap_1", **GRACE, "recruiter": recruiter}),
        event("e-unknown", type="applicant.contacted", data={"email": "GRACE.C-1@example.com"}),
        event("e-quarantined", data={"email": "grace.c-1@example.com"}),
        event("e-other", data={"id": "ap_2", "email": "alan@example.com", "recruiter": recruiter}),
    ]
    for body in sent:
        assert (await post(client, body)).status_code == 200
    report = await erase(
        acme.engine,
        acme.queue.redis,
        tenant="acme",
        source="keldair",
        candidate_id="ap_1",
        actor="test:dpo",
    )
    assert report.counts["record"] == 3
    assert await _traces(acme) == []
    left = await rows(acme, "SELECT payload FROM record WHERE payload IS NOT NULL")
    assert [r.payload["data"]["id"] for r in left] == ["ap_2"]


# --- a replay never reopens what an erasure closed --------------------------------------------


async def test_a_replay_after_an_erasure_sends_nothing_and_says_what_it_skipped(
    services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    from app.admin import schemas as admin_schemas
    from app.admin import service as admin_service
    from tests.support.fake_ats import Step
    from tests.support.workers import record_event

    fake_ats.add_hrm_candidate("1001")
    fake_ats.add_hrm_candidate("1002")
    conn = await add_source(services, fake_ats, "hrmanager", destination=True)
    # The destination refuses for good: the delivery is given up, and a replay would resend it.
    fake_ats.script.extend(Step("/vendor", status=410) for _ in range(2))
    erased = await record_event(services, conn, "CandidateUpdated", {"CandidateId": "1001"})
    await record_event(services, conn, "CandidateUpdated", {"CandidateId": "1002"})
    fast = fast_settings(settings)
    await run_worker(fast)
    assert fake_ats.deliveries() == []
    await erase(
        services.engine,
        services.queue.redis,
        tenant="acme",
        source="hrmanager",
        candidate_id="1001",
        actor="test:dpo",
    )

    result = await admin_service.replay(
        services,
        actor="ops",
        request=admin_schemas.ReplayRequest(
            filters=admin_schemas.ReplayFilters(tenant="acme", source="hrmanager")
        ),
    )
    assert (result.matched, result.skipped_erased) == (2, 1)
    assert (result.enrichments, result.deliveries) == (1, 1)
    await run_worker(fast)
    delivered = fake_ats.deliveries()
    assert len(delivered) == 1 and b"1002" in delivered[0].body
    [closed] = await rows(
        services, "SELECT done_at, body FROM delivery WHERE record_id = :id", id=erased
    )
    assert closed.done_at is not None and bytes(closed.body) == b""


# --- internal markers never come from a request -----------------------------------------------


def test_no_request_header_named_like_an_internal_marker_is_stored() -> None:
    received = {"Content-Type": "application/json", "Hirehook-Poll-Resource": "candidates"}
    for source, names in stored_headers().items():
        stored = storable_headers({**received, "hirehook-url-event": "CandidateHired"}, names)
        assert stored == {"content-type": "application/json"}, source


async def test_a_webhook_cannot_pass_itself_off_as_a_polled_item(
    client: httpx.AsyncClient, acme: Services
) -> None:
    from app.admin.dead_letters import _reparse_headers
    from app.poller.items import RESOURCE_HEADER
    from tests.support.keldair import signed

    body = orjson.dumps(event("e-forged", data={"applicantId": "ap_1"}))
    headers = {**signed(body), RESOURCE_HEADER: "candidates"}
    assert (await client.post(KELDAIR_URL, content=body, headers=headers)).status_code == 200
    [row] = await rows(acme, "SELECT headers, markers, state FROM record")
    assert row.state == "quarantined"
    assert RESOURCE_HEADER not in row.headers and row.markers is None
    # A record stored before intake refused such headers: the stored one is ignored, only the
    # record's own markers are read.
    old = type("Row", (), {"headers": {RESOURCE_HEADER: "candidates", "webhook-id": "m"}})()
    old.markers = {}
    assert _reparse_headers(old) == {"webhook-id": "m"}
    old.markers = {RESOURCE_HEADER: "jobs"}
    assert _reparse_headers(old) == {"webhook-id": "m", RESOURCE_HEADER: "jobs"}
