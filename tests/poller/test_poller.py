"""Polling SmartRecruiters the Cloud Elements way, against the fake SR API on loopback and real
PostgreSQL and Redis: pages, boundaries, crashes, 429s, the lock, the back-fill command."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import signal
import subprocess
import sys
import time
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from pydantic import ValidationError

from app.admin.tenants_file import (
    ConnectionSpec,
    TenantsFile,
    TenantSpec,
    apply_tenants,
    read_tenants_file,
)
from app.intake.connections import ConnectionInfo
from app.platform.settings import Settings
from app.poller.position import Position
from app.poller.run import PageDone, Poller
from app.schemas import polling
from app.services import Services
from app.sources import create_services
from app.store import cursors
from app.workers.poller import poll_due
from tests.support.app import arq_queue
from tests.support.cli import hirehook
from tests.support.fake_ats import SR_TOKEN, Call, FakeATS, Step
from tests.support.workers import add_source, fast_settings, rows, run_worker, worker_env

BASE = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
SINCE = BASE - timedelta(days=1)
FORMAT = "yyyy-MM-dd'T'HH:mm:ss.SSS'Z'"
# Two days before BASE: before every window the tests poll.
BEFORE = "2026-05-30T09:00:00.000Z"
# Pasted from Cloud Elements' SmartRecruiters example (docs/ats/cloudelements.md), pointed at
# SmartRecruiters' own API.
CANDIDATES: dict[str, Any] = {
    "url": "/candidates?updatedAfter=${gmtDate:yyyy-MM-dd'T'HH:mm:ss.SSS'Z'}",
    "idField": "id",
    "datesConfiguration": {
        "updatedDateField": "updatedOn",
        "updatedDateFormat": FORMAT,
        "updatedDateTimezone": "GMT",
        "createdDateField": "createdOn",
        "createdDateFormat": FORMAT,
        "createdDateTimezone": "GMT",
    },
    "pagination": {"type": "page_id", "limit": 2},
}
# The second resource is configuration only: the plain ISO form SmartRecruiters documents.
# [I] GET /jobs is assumed to take updatedAfter and pageId like GET /candidates.
JOBS: dict[str, Any] = {"url": "/jobs?updatedAfter=${isoDate}", "pagination": {"limit": 2}}


def stamp(minutes: float) -> str:
    """A SmartRecruiters timestamp ``minutes`` after BASE."""
    moment = BASE + timedelta(minutes=minutes)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def polling_options(**resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "polling": {
            "refresh_interval_min": 15,
            "resources": resources or {"candidates": CANDIDATES},
        }
    }


async def polled(services: Services, fake: FakeATS, **resources: dict[str, Any]) -> ConnectionInfo:
    return await add_source(services, fake, "smartrecruiters", options=polling_options(**resources))


def six_candidates(fake: FakeATS) -> None:
    """c-1..c-6, one updated minute apart; c-1 never updated, c-2 updated at its creation,
    c-3..c-6 created before the window (SINCE) and updated in it."""
    fake.add_sr_candidate("c-1", createdOn=stamp(1))
    fake.add_sr_candidate("c-2", createdOn=stamp(2), updatedOn=stamp(2))
    for i in range(3, 7):
        fake.add_sr_candidate(f"c-{i}", jobs=["j-1"], createdOn=BEFORE, updatedOn=stamp(i))


def query(call: Call) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(call.query).items()}


def list_calls(fake: FakeATS, path: str = "/sr/candidates") -> list[Call]:
    return [c for c in fake.calls_to(path) if c.path == path]


async def records(services: Services) -> list[Any]:
    return await rows(
        services,
        "SELECT dedupe_key, event_type, subjects, state, known, payload FROM record "
        "ORDER BY payload->>'id', received_at",
    )


async def position(services: Services, conn: ConnectionInfo, resource: str) -> Position:
    async with services.engine.connect() as db:
        raw = await cursors.get(db, conn.id, resource)
    assert raw is not None
    return Position.load(raw, default_since=SINCE)


async def test_three_pages_become_records_with_types_subjects_and_jobs(
    services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    six_candidates(fake_ats)
    conn = await polled(services, fake_ats)
    pages: list[PageDone] = []
    report = await Poller(services).run(conn, since=SINCE, progress=pages.append)

    assert report.status == "done"
    [candidates] = report.resources
    assert (candidates.pages, candidates.items, candidates.recorded) == (3, 6, 6)
    assert [(p.items, p.recorded, p.total) for p in pages] == [(2, 2, 6)] * 3
    calls = list_calls(fake_ats)
    assert [query(c).get("pageId") for c in calls] == [None, "pg-2", "pg-4"]
    # One sweep: every page asks for the same window, 2 at a time, with the SR token.
    assert {query(c)["updatedAfter"] for c in calls} == {"2026-05-31T09:00:00.000Z"}
    assert {query(c)["limit"] for c in calls} == {"2"}
    assert {c.headers["x-smarttoken"] for c in calls} == {SR_TOKEN}
    assert fake_ats.max_inflight["/sr/candidates"] == 1

    found = await records(services)
    assert [(r.event_type, r.subjects, r.state) for r in found] == [
        ("candidate.created", {"person": "c-1"}, "received"),  # no updatedOn
        ("candidate.created", {"person": "c-2"}, "received"),  # updatedOn == createdOn
        *[("candidate.updated", {"person": f"c-{i}"}, "received") for i in range(3, 7)],
    ]
    assert found[3].payload["primaryAssignment"]["job"]["id"] == "j-1"
    # Published after each page's commit: one job per record, and the cursor moved on.
    assert len(await arq_queue(services.queue.redis)) == 6
    cursor = await position(services, conn, "candidates")
    assert not cursor.in_sweep and cursor.swept_at is not None
    assert cursor.since == BASE + timedelta(minutes=6) - timedelta(seconds=60)

    # The existing SmartRecruiters enrichment takes polled records like any other.
    await run_worker(fast_settings(settings))
    enriched = await rows(services, "SELECT external_id FROM candidate ORDER BY 1")
    assert [r.external_id for r in enriched] == [f"c-{i}" for i in range(1, 7)]
    applications = await rows(services, "SELECT external_id FROM application ORDER BY 1")
    assert [r.external_id for r in applications] == [f"c-{i}:j-1" for i in range(3, 7)]


async def test_equal_timestamps_at_a_page_boundary_and_a_poll_boundary_are_not_missed(
    services: Services, fake_ats: FakeATS
) -> None:
    fake_ats.add_sr_candidate("c-1", createdOn=stamp(0), updatedOn=stamp(1))
    # c-2 ends page 1 and c-3 starts page 2, written in the same millisecond.
    fake_ats.add_sr_candidate("c-2", createdOn=stamp(0), updatedOn=stamp(2))
    fake_ats.add_sr_candidate("c-3", createdOn=stamp(0), updatedOn=stamp(2))
    conn = await polled(services, fake_ats)
    first = await Poller(services).run(conn, since=SINCE)
    assert first.resources[0].recorded == 3 and first.resources[0].pages == 2

    # Written after that poll, in the very millisecond of the newest item it saw: a cursor at
    # exactly that moment would skip it ([I] updatedAfter is exclusive, as the fake makes it).
    fake_ats.add_sr_candidate("c-4", createdOn=stamp(0), updatedOn=stamp(2))
    second = await Poller(services).run(conn)
    assert second.resources[0].recorded == 1
    assert second.resources[0].duplicates == 2  # the overlap re-reads c-2 and c-3, harmlessly
    assert query(list_calls(fake_ats)[-1])["updatedAfter"] == "2026-06-01T09:01:00.000Z"
    assert [r.subjects["person"] for r in await records(services)] == ["c-1", "c-2", "c-3", "c-4"]


async def test_a_repoll_records_nothing(services: Services, fake_ats: FakeATS) -> None:
    six_candidates(fake_ats)
    conn = await polled(services, fake_ats)
    await Poller(services).run(conn, since=SINCE)
    await services.queue.redis.flushdb()
    before = await records(services)

    again = await Poller(services).run(conn)
    from_start = await Poller(services).run(conn, since=SINCE)

    assert again.resources[0].recorded == 0 and again.resources[0].duplicates == 1
    assert from_start.resources[0].recorded == 0 and from_start.resources[0].duplicates == 6
    assert await records(services) == before
    [outbox] = await rows(services, "SELECT count(*) AS n FROM outbox")
    assert outbox.n == 6
    assert await arq_queue(services.queue.redis) == []


async def test_a_poll_cancelled_after_page_two_resumes_without_loss_or_doubles(
    services: Services, fake_ats: FakeATS
) -> None:
    six_candidates(fake_ats)
    conn = await polled(services, fake_ats)
    poller = Poller(services)

    async def cancel_after_two(done: list[PageDone]) -> None:
        while len(done) < 2:  # noqa: ASYNC110 - the progress callback runs in this loop
            await asyncio.sleep(0.001)

    done: list[PageDone] = []
    # The third page is slow, so the cancellation lands while it is being fetched.
    fake_ats.script.append(Step(match="/sr/candidates", delay_s=5, after=2))
    task = asyncio.create_task(poller.run(conn, since=SINCE, progress=done.append))
    await cancel_after_two(done)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    cursor = await position(services, conn, "candidates")
    assert (cursor.page, cursor.pages) == ("pg-4", 2)
    assert len(await records(services)) == 4
    # The lock went with the cancelled run.
    async with poller.exclusive(conn.id) as held:
        assert held

    resumed = await poller.run(conn)
    assert resumed.resources[0].recorded == 2 and resumed.resources[0].swept
    assert query(list_calls(fake_ats)[-1]).get("pageId") == "pg-4"
    found = await records(services)
    assert [r.subjects["person"] for r in found] == [f"c-{i}" for i in range(1, 7)]


async def test_a_poll_killed_after_page_two_resumes_from_its_last_commit(
    services: Services, settings: Settings, fake_ats: FakeATS, tmp_path: Path
) -> None:
    six_candidates(fake_ats)
    conn = await polled(services, fake_ats)
    # The third page never comes: the process is killed while waiting for it.
    fake_ats.script.append(Step(match="/sr/candidates", hang=True, after=2))
    log = tmp_path / "poll.log"
    with log.open("wb") as out:
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "app.cli", "poll", "acme", "smartrecruiters"),
            *("--since", "2026-05-31T09:00:00Z"),
            env=worker_env(settings),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        end = time.monotonic() + 30
        while len(list_calls(fake_ats)) < 3:
            assert child.returncode is None, log.read_text()
            assert time.monotonic() < end, log.read_text()
            await asyncio.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        assert await asyncio.wait_for(child.wait(), 10) == -signal.SIGKILL
    finally:
        with contextlib.suppress(ProcessLookupError):
            child.kill()
    fake_ats.released.set()

    cursor = await position(services, conn, "candidates")
    assert (cursor.page, cursor.pages) == ("pg-4", 2)
    assert len(await records(services)) == 4
    # The session that held the lock died with the process, and the lock with it.
    poller = Poller(services)
    async with poller.exclusive(conn.id) as held:
        assert held

    resumed = await poller.run(conn)
    assert resumed.status == "done" and resumed.resources[0].recorded == 2
    first, resumed_call = list_calls(fake_ats)[0], list_calls(fake_ats)[-1]
    assert query(resumed_call)["pageId"] == "pg-4"
    assert query(resumed_call)["updatedAfter"] == query(first)["updatedAfter"]
    found = await records(services)
    assert [r.subjects["person"] for r in found] == [f"c-{i}" for i in range(1, 7)]
    assert len({r.dedupe_key for r in found}) == 6


async def test_a_poll_whose_lock_session_dies_stops_writing(
    services: Services, fake_ats: FakeATS
) -> None:
    six_candidates(fake_ats)
    conn = await polled(services, fake_ats)
    done: list[PageDone] = []
    # Page 2 is slow: the lock's session is terminated while it is being fetched.
    fake_ats.script.append(Step(match="/sr/candidates", delay_s=1.0, after=1))
    task = asyncio.create_task(Poller(services).run(conn, since=SINCE, progress=done.append))
    while not done:  # noqa: ASYNC110 - the progress callback runs in this loop
        await asyncio.sleep(0.01)
    [killed] = await rows(
        services,
        "SELECT pg_terminate_backend(pid) AS ok FROM pg_locks "
        "WHERE locktype = 'advisory' AND objid::bigint = :id AND objsubid = 2",
        id=conn.id,
    )
    assert killed.ok
    report = await task

    # Another poll could have taken the lock by now: page 2 was not committed.
    assert report.resources[0].error == "lost the poll lock"
    assert len(await records(services)) == 2
    cursor = await position(services, conn, "candidates")
    assert (cursor.page, cursor.pages) == ("pg-2", 1)
    resumed = await Poller(services).run(conn)
    assert resumed.status == "done" and resumed.resources[0].recorded == 4


async def test_a_429_mid_poll_waits_for_retry_after_and_loses_nothing(
    services: Services, fake_ats: FakeATS
) -> None:
    six_candidates(fake_ats)
    conn = await polled(services, fake_ats)
    fake_ats.script.append(
        Step(match="/sr/candidates", status=429, headers={"Retry-After": "1"}, after=1)
    )
    started = time.monotonic()
    report = await Poller(services).run(conn, since=SINCE)

    assert report.status == "done" and report.resources[0].recorded == 6
    calls = list_calls(fake_ats)
    assert [c.status for c in calls] == [200, 429, 200, 200]
    # The refused page is asked again, once the ATS's Retry-After has passed.
    assert query(calls[1])["pageId"] == query(calls[2])["pageId"] == "pg-2"
    assert calls[2].started - calls[1].finished >= 0.9
    assert time.monotonic() - started >= 1.0
    assert len(await records(services)) == 6


async def test_two_concurrent_polls_of_one_connection_make_one_sequence_of_calls(
    services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    six_candidates(fake_ats)
    fake_ats.delay_s = 0.2
    conn = await polled(services, fake_ats)
    # Two sets of services stand for two worker processes: separate pools, separate sessions.
    other = create_services(settings)
    try:
        reports = await asyncio.gather(
            Poller(services).run(conn, since=SINCE), Poller(other).run(conn, since=SINCE)
        )
    finally:
        await other.close()

    assert sorted(r.status for r in reports) == ["busy", "done"]
    calls = list_calls(fake_ats)
    assert [query(c).get("pageId") for c in calls] == [None, "pg-2", "pg-4"]
    assert fake_ats.max_inflight["/sr/candidates"] == 1
    assert all(a.finished <= b.started for a, b in itertools.pairwise(calls))
    assert len(await records(services)) == 6


async def test_the_cron_enqueues_due_connections_and_a_worker_polls_them(
    services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    six_candidates(fake_ats)
    conn = await polled(services, fake_ats)
    # Nothing polled yet: the first poll starts one refresh interval back, so seed a cursor
    # that reaches back to the fixture's dates.
    async with services.engine.begin() as db:
        await cursors.advance(db, conn.id, "candidates", Position(since=SINCE).dump())
    ctx = {"services": services}
    assert await poll_due(ctx) == 1
    assert await poll_due(ctx) == 0  # already queued under poll:<id>
    assert f"poll:{conn.id}" in await arq_queue(services.queue.redis)

    await run_worker(fast_settings(settings))
    assert len(await records(services)) == 6
    assert len(await rows(services, "SELECT * FROM candidate")) == 6
    # Swept a moment ago: not due again until the refresh interval has passed.
    assert await poll_due(ctx) == 0


async def test_the_backfill_command_shows_progress_and_records_once(
    services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    six_candidates(fake_ats)
    await polled(services, fake_ats)

    # The first run as its own process, as the operator runs it (its progress bar on stderr);
    # the rest in process.
    backfill = ["acme", "smartrecruiters", "--since", "2026-05-31"]
    first = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "app.cli", "poll", *backfill],
        env=worker_env(settings, log_format="console"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert first.returncode == 0, first.stderr
    assert "candidates: 3 page(s), 6 item(s), 6 recorded, 0 already recorded" in first.stdout
    assert "6/6" in first.stderr  # the progress bar
    assert SR_TOKEN not in first.stdout + first.stderr
    assert len(await records(services)) == 6
    assert len(await arq_queue(services.queue.redis)) == 6

    again = await hirehook(settings, "poll", *backfill)
    assert again.returncode == 0, again.stderr
    assert "6 item(s), 0 recorded, 6 already recorded" in again.stdout
    bad = await hirehook(settings, "poll", "acme", "smartrecruiters", "--since", "last tuesday")
    assert bad.returncode == 2 and "ISO date" in bad.stderr
    missing = await hirehook(settings, "poll", "nobody", "smartrecruiters")
    assert missing.returncode == 2 and "options.polling" in missing.stderr


async def test_the_jobs_resource_is_the_same_code_with_another_configuration(
    services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    fake_ats.add_sr_job("j-1", createdOn=stamp(1), updatedOn=stamp(1))
    fake_ats.add_sr_job("j-2", createdOn=BEFORE, updatedOn=stamp(5))
    fake_ats.add_sr_job("j-3", createdOn=BEFORE, updatedOn=stamp(6))
    six_candidates(fake_ats)
    conn = await polled(services, fake_ats, candidates=CANDIDATES, jobs=JOBS)
    report = await Poller(services).run(conn, resources=["jobs"], since=SINCE)

    assert [(r.name, r.pages, r.recorded) for r in report.resources] == [("jobs", 2, 3)]
    calls = list_calls(fake_ats, "/sr/jobs")
    assert {query(c)["updatedAfter"] for c in calls} == {"2026-05-31T09:00:00.000+00:00"}
    assert list_calls(fake_ats) == []  # candidates were not asked for
    found = await records(services)
    assert [(r.event_type, r.subjects) for r in found] == [
        ("job.created", {"job": "j-1"}),
        ("job.updated", {"job": "j-2"}),
        ("job.updated", {"job": "j-3"}),
    ]
    await run_worker(fast_settings(settings))
    jobs = await rows(services, "SELECT external_id, title FROM job ORDER BY 1")
    assert [(j.external_id, j.title) for j in jobs] == [
        (f"j-{i}", f"Compiler Engineer j-{i}") for i in (1, 2, 3)
    ]


async def test_an_item_without_an_id_is_quarantined_and_the_rest_recorded(
    services: Services, fake_ats: FakeATS
) -> None:
    fake_ats.add_sr_candidate("c-1", createdOn=stamp(1))
    fake_ats.add_sr_candidate("c-2", createdOn=stamp(2), updatedOn=stamp(2))
    fake_ats.add_sr_candidate("c-3", createdOn=stamp(3))
    fake_ats.sr_candidates["c-3"]["id"] = ""
    conn = await polled(services, fake_ats)
    report = await Poller(services).run(conn, since=SINCE)

    assert report.resources[0].recorded == 3 and report.resources[0].quarantined == 1
    states = await rows(
        services,
        "SELECT r.state, d.reason, d.detail FROM record r "
        "LEFT JOIN dead_letter d ON d.record_id = r.id ORDER BY r.payload->>'id'",
    )
    assert [(s.state, s.reason) for s in states] == [
        ("quarantined", "unexpected_shape"),
        ("received", None),
        ("received", None),
    ]
    assert "id: missing" in states[0].detail
    # Quarantined records get no job; the others do.
    assert len(await arq_queue(services.queue.redis)) == 2


async def test_polling_options_are_checked_when_the_tenants_file_is_loaded(
    services: Services,
) -> None:
    async def load(options: dict[str, Any], secrets: dict[str, Any] | None = None) -> None:
        spec = TenantSpec(
            slug="acme",
            name="Acme",
            connection=[
                ConnectionSpec(
                    source="smartrecruiters",
                    secrets={"api_key": SR_TOKEN} if secrets is None else secrets,
                    options=options,
                )
            ],
        )
        await apply_tenants(
            TenantsFile(tenant=[spec]), engine=services.engine, cipher=services.cipher
        )

    base = {"base_url": "https://api.smartrecruiters.com"}
    bad_format = {**CANDIDATES, "datesConfiguration": {"updatedDateFormat": "dd MMM yyyy"}}
    cases = [
        ({**base, **polling_options(candidates=bad_format)}, None, "'MMM' is not supported"),
        (
            {**base, **polling_options(candidates={**CANDIDATES, "pagination": {"limit": 500}})},
            None,
            "pagination.limit",
        ),
        (
            {**base, **polling_options(candidates={**CANDIDATES, "url": "https://evil.example/x"})},
            None,
            "must be a path",
        ),
        (
            {**base, **polling_options(candidates={**CANDIDATES, "url": "/c?a=${date}"})},
            None,
            "unknown placeholder",
        ),
        ({"base_url": "http://api.example.com", **polling_options()}, None, "https://"),
        (polling_options(), None, "base_url"),
        ({**base, **polling_options()}, {"access_token": "t" * 40}, "secrets.api_key"),
        ({**base, "polling": {"resources": {}}}, None, "options.polling: resources"),
    ]
    for options, secrets, message in cases:
        with pytest.raises(ValueError, match="smartrecruiters connection") as caught:
            await load(options, secrets)
        assert message in str(caught.value), (message, str(caught.value))
        assert SR_TOKEN not in str(caught.value)
    await load({**base, **polling_options(candidates=CANDIDATES, jobs=JOBS)})
    [row] = await rows(services, "SELECT options FROM connection")
    assert set(row.options["polling"]["resources"]) == {"candidates", "jobs"}


def test_templates_dates_and_cursor_rules() -> None:
    at = datetime(2026, 11, 1, 10, 0, 0, 123999, tzinfo=UTC)
    rendered = polling.render_template(
        "/c?a=${gmtDate:yyyy-MM-dd'T'HH:mm:ss.SSS'Z'}&b=${isoDate}&c=${epoch}&d=${epoch:s}", at
    )
    # Fractions are truncated (a cursor never moves forward by rounding), values encoded.
    assert rendered == (
        "/c?a=2026-11-01T10%3A00%3A00.123Z&b=2026-11-01T10%3A00%3A00.123%2B00%3A00"
        "&c=1793527200123&d=1793527200"
    )
    reader = polling.DateReader("yyyy-MM-dd HH:mm:ss", "Europe/Oslo")
    assert reader.read("2026-11-01 11:00:00") == datetime(2026, 11, 1, 10, tzinfo=UTC)
    # [C] SmartRecruiters' documented form, with an offset, read by the default format too.
    iso = polling.DateReader(polling.DEFAULT_DATE_FORMAT, "GMT")
    assert iso.read("2013-10-20T19:20:30+01:00") == datetime(2013, 10, 20, 18, 20, 30, tzinfo=UTC)
    with pytest.raises(ValueError, match="time zone"):
        polling.DateReader(polling.DEFAULT_DATE_FORMAT, "Mars/Olympus")
    with pytest.raises(ValidationError, match="refresh_interval_min"):
        polling.PollingOptions.model_validate({"refresh_interval_min": 0, "resources": {}})

    start = datetime(2026, 6, 1, tzinfo=UTC)
    hour = timedelta(hours=1)
    sweep = Position(since=start).started(start + 5 * hour)
    # The newest date seen bounds the next window, minus the overlap...
    done = sweep.after_page("p2", start + hour).after_sweep(
        start + 2 * hour, hour / 60, start + 6 * hour
    )
    assert done.since == start + 2 * hour - hour / 60 and not done.in_sweep
    # ...but never past the sweep's start: what changed while it ran is read again.
    late = sweep.after_sweep(start + 9 * hour, hour / 60, start + 6 * hour)
    assert late.since == start + 5 * hour - hour / 60
    # An empty sweep keeps the window where it was; the cursor never moves back.
    assert sweep.after_sweep(None, hour, start + 6 * hour).since == start
    assert sweep.after_sweep(start - hour, hour, start + 6 * hour).since == start
    # Due: after the interval, at once mid-sweep, and after a failure's backoff.
    assert not done.due(start + 6 * hour, hour, retry_cap=hour)
    assert done.due(start + 7 * hour, hour, retry_cap=hour)
    assert sweep.after_page("p2", None).due(start + 5 * hour, hour, retry_cap=hour)
    failed = done.failed("401", start + 6 * hour)
    assert not failed.due(start + 6 * hour + timedelta(seconds=29), hour, retry_cap=hour)
    assert failed.due(start + 6 * hour + timedelta(seconds=30), hour, retry_cap=hour)


async def test_items_quarantined_by_a_wrong_date_format_are_released_once_it_is_fixed(
    services: Services, fake_ats: FakeATS
) -> None:
    from app.admin import dead_letters
    from app.admin.service import reparsers

    # This ATS writes day-first dates, which the configured (default) format cannot read.
    for i in (1, 2):
        fake_ats.add_sr_candidate(f"c-{i}", createdOn=BEFORE, updatedOn=stamp(i))
        fake_ats.sr_candidates[f"c-{i}"]["modified"] = f"01/06/2026 09:0{i}"
    wrong = {**CANDIDATES, "datesConfiguration": {"updatedDateField": "modified"}}
    conn = await polled(services, fake_ats, candidates=wrong)
    report = await Poller(services).run(conn, since=SINCE)
    assert report.resources[0].quarantined == 2
    assert await arq_queue(services.queue.redis) == []

    fixed = {
        **CANDIDATES,
        "datesConfiguration": {
            "updatedDateField": "modified",
            "updatedDateFormat": "dd/MM/yyyy HH:mm",
            "updatedDateTimezone": "Europe/Oslo",
        },
    }
    await polled(services, fake_ats, candidates=fixed)
    filters = dead_letters.Filters(stage="intake")
    assert await dead_letters.retry(services.engine, services.queue, filters, reparsers()) == 2
    found = await records(services)
    assert [(r.state, r.event_type, r.known) for r in found] == [
        ("received", "candidate.updated", True)
    ] * 2
    assert len(await arq_queue(services.queue.redis)) == 2


# Cloud Elements' "Example cURL with Polling" (docs/ats/cloudelements.md) request body, copied as it
# is.
SEED_INSTANCE_BODY = r"""{
"element": {
  "key": "smartrecruiters"
},
"configuration": {
    "api.key": "xxxxxxxxxxxxxxxxxxxxxxxxx",
    "event.notification.enabled": true,
    "event.vendor.type": "polling",
      "event.notification.callback.url": "https://api.cloud-elements.com/elements/api-v2/events//",
    "event.notification.signature.key": "asdfo08e$fd",
    "event.poller.refresh_interval": "15",
    "event.poller.configuration":{
      "candidates":{
        "url":"/hubs/humancapital/candidates?where=updatedAfter='${gmtDate:yyyy-MM-dd'T'HH:mm:ss.SSS'Z'}'",
        "idField":"id",
        "datesConfiguration":{
          "updatedDateField":"updatedOn",
          "updatedDateFormat":"yyyy-MM-dd'T'HH:mm:ss.SSS'Z'",
          "updatedDateTimezone":"GMT",
          "createdDateField":"createdOn",
          "createdDateFormat":"yyyy-MM-dd'T'HH:mm:ss.SSS'Z'",
          "createdDateTimezone":"GMT"
          }
        }
    }
  },
  "tags": [
    "Docs"
  ],
  "name": "API Instance with Polling"
}"""
SEED_API_KEY = "xxxxxxxxxxxxxxxxxxxxxxxxx"


async def stored_connection(services: Services) -> tuple[dict[str, Any], dict[str, Any]]:
    [row] = await rows(services, "SELECT options, secrets FROM connection")
    return row.options, services.cipher.decrypt_json(row.secrets)


async def test_the_seeds_cloud_elements_block_pasted_in_a_tenants_file_polls_smartrecruiters(
    services: Services, fake_ats: FakeATS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The tenants file holds the JSON Cloud Elements shows, pasted between ''' as it is.
    tenants = tmp_path / "tenants.toml"
    tenants.write_text(
        '[[tenant]]\nslug = "acme"\nname = "Acme"\n'
        '[[tenant.connection]]\nsource = "smartrecruiters"\n'
        f'[tenant.connection.options]\nbase_url = "{fake_ats.sr_base}"\n'
        f"polling = '''\n{SEED_INSTANCE_BODY}\n'''\n"
    )
    await apply_tenants(read_tenants_file(tenants), engine=services.engine, cipher=services.cipher)
    options, secrets = await stored_connection(services)
    # api.key is the poller's credential, stored encrypted; the signature key (callbacks
    # only) is not stored at all; neither stays in the options, which are shown in clear.
    assert secrets == {"api_key": SEED_API_KEY}
    assert SEED_API_KEY not in str(options) and "asdfo08e" not in str(options)

    monkeypatch.setattr("tests.support.fake_ats.SR_TOKEN", SEED_API_KEY)
    fake_ats.add_sr_candidate("c-1", createdOn=stamp(1))
    fake_ats.add_sr_candidate("c-2", createdOn=BEFORE, updatedOn=stamp(2))
    services.connections.invalidate()
    conn = await services.connections.by_tenant("acme", "smartrecruiters")
    assert conn is not None
    config = polling.parse(conn.options, conn.secrets)
    assert config.options.refresh_interval_min == 15
    report = await Poller(services).run(conn, since=SINCE)

    assert report.status == "done" and report.resources[0].recorded == 2
    # The hub URL and its where clause became SmartRecruiters' own GET /candidates?updatedAfter.
    [call] = list_calls(fake_ats)
    assert query(call)["updatedAfter"] == "2026-05-31T09:00:00.000Z"
    assert call.headers["x-smarttoken"] == SEED_API_KEY
    assert [(r.event_type, r.subjects) for r in await records(services)] == [
        ("candidate.created", {"person": "c-1"}),
        ("candidate.updated", {"person": "c-2"}),
    ]


async def test_the_seeds_block_as_json_through_the_admin_api_and_as_toml_keys(
    services: Services, fake_ats: FakeATS
) -> None:
    from app.admin import schemas as admin_schemas
    from app.admin import service as admin

    body = json.loads(SEED_INSTANCE_BODY)
    await apply_tenants(
        TenantsFile(tenant=[TenantSpec(slug="acme", name="Acme")]),
        engine=services.engine,
        cipher=services.cipher,
    )
    created = await admin.create_connection(
        services,
        spec=admin_schemas.ConnectionCreate(
            tenant="acme",
            source="smartrecruiters",
            options={"base_url": fake_ats.sr_base, "polling": body["configuration"]},
        ),
    )
    assert created.secrets.names == ["api_key"]
    assert "api.key" not in created.options["polling"]
    assert created.options["polling"]["event.poller.refresh_interval"] == "15"

    # The same keys written as TOML (quoted dotted names) load the same way.
    toml_block = tomllib.loads(
        """
        "event.vendor.type" = "polling"
        "event.poller.refresh_interval" = 5
        ["event.poller.configuration".candidates]
        url = "/hubs/humancapital/candidates?where=updatedAfter='${isoDate}'"
        idField = "id"
        """
    )
    config = polling.parse(
        {"base_url": fake_ats.sr_base, "polling": toml_block}, {"api_key": SR_TOKEN}
    )
    assert config.options.refresh_interval_min == 5
    assert config.resources["candidates"].url == "/candidates?updatedAfter=${isoDate}"


def test_cloud_elements_keys_that_mean_nothing_here_or_are_mistyped() -> None:
    block = json.loads(SEED_INSTANCE_BODY)["configuration"]
    del block["api.key"]
    base = {"base_url": "https://api.smartrecruiters.com"}
    secrets = {"api_key": SR_TOKEN}
    # The callback URL and signature key are accepted and ignored.
    polling.parse({**base, "polling": block}, secrets)

    def refused(changes: dict[str, Any], secret: dict[str, Any] = secrets) -> str:
        with pytest.raises(ValueError) as caught:
            polling.parse({**base, "polling": {**block, **changes}}, secret)
        return str(caught.value)

    assert "event.poller.refresh_intervall: Extra inputs are not permitted" in refused(
        {"event.poller.refresh_intervall": "15"}
    )
    resources = block["event.poller.configuration"]
    typo = {"candidates": {**resources["candidates"], "idFeild": "id"}}
    assert "candidates.idFeild: Extra inputs are not permitted" in refused(
        {"event.poller.configuration": typo}
    )
    assert "only a polling configuration" in refused({"event.vendor.type": "webhook"})
    assert "would poll nothing" in refused({"event.notification.enabled": False})
    assert "a number of minutes" in refused({"event.poller.refresh_interval": "<minutes>"})
    assert "same setting" in refused({"refresh_interval_min": 5})
    where = {"candidates": {**resources["candidates"], "url": "/hubs/hr/candidates?where=a>'1'"}}
    assert "name='value' conditions" in refused({"event.poller.configuration": where})
    # A key that could not be moved to the secrets (they hold another) is named, never shown.
    message = refused({"api.key": "k" * 40})
    assert "api.key: a secret" in message and "k" * 40 not in message


async def test_urls_are_rendered_in_the_configured_time_zone(
    services: Services, fake_ats: FakeATS
) -> None:
    new_york = {
        "url": "/candidates?updatedAfter=${gmtDate:yyyy-MM-dd'T'HH:mm:ss.SSSXXX}",
        "datesConfiguration": {
            "updatedDateTimezone": "America/New_York",
            "createdDateTimezone": "America/New_York",
        },
    }
    iso = {
        "url": "/jobs?updatedAfter=${isoDate}",
        "datesConfiguration": new_york["datesConfiguration"],
    }
    conn = await polled(services, fake_ats, candidates=new_york, jobs=iso)
    await Poller(services).run(conn, since=SINCE)

    # [C] "Unless configured for a specific time zone, polling occurs in UTC": configured, the
    # window's start is written in that zone (09:00 UTC is 05:00 in New York in June).
    assert query(list_calls(fake_ats)[0])["updatedAfter"] == "2026-05-31T05:00:00.000-04:00"
    jobs = list_calls(fake_ats, "/sr/jobs")[0]
    assert query(jobs)["updatedAfter"] == "2026-05-31T05:00:00.000-04:00"


async def test_an_item_created_and_updated_between_two_polls_is_reported_as_created(
    services: Services, fake_ats: FakeATS
) -> None:
    fake_ats.add_sr_candidate("c-1", createdOn=stamp(1))
    conn = await polled(services, fake_ats)
    await Poller(services).run(conn, since=SINCE)

    # Between the two polls: c-2 created and changed; c-1 (seen created) changed.
    fake_ats.add_sr_candidate("c-2", createdOn=stamp(2), updatedOn=stamp(3))
    fake_ats.sr_candidates["c-1"]["updatedOn"] = stamp(4)
    await Poller(services).run(conn)

    assert [(r.event_type, r.subjects["person"]) for r in await records(services)] == [
        ("candidate.created", "c-1"),
        ("candidate.updated", "c-1"),
        ("candidate.created", "c-2"),
    ]
    # A third poll reads c-1 and c-2 again through the overlap: nothing new, and c-2,
    # though created after the overlapped window's start, is not created twice.
    fake_ats.sr_candidates["c-2"]["updatedOn"] = stamp(5)
    third = await Poller(services).run(conn)
    assert third.resources[0].recorded == 1
    assert [(r.event_type, r.subjects["person"]) for r in await records(services)][-1] == (
        "candidate.updated",
        "c-2",
    )
