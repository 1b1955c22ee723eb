"""HR Manager: identifiers in, normalized candidates, jobs and applications out; one API call per
burst of duplicates."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
from sqlalchemy import text

from app.intake.connections import ConnectionInfo
from app.intake.core import Deadline, Intake, json_answer
from app.platform.settings import Settings
from app.schemas.hrmanager import parse
from app.services import Services
from tests.support.fake_ats import HRM_KEY, FakeATS, Step
from tests.support.workers import (
    add_source,
    fast_settings,
    record_event,
    rows,
    run_worker,
)


async def record_hrm(
    services: Services, conn: ConnectionInfo, event_type: str, payload: dict[str, Any]
) -> uuid.UUID:
    """Record one event with the subjects intake derives (as the route does), and publish it."""
    parsed = parse(payload, url_event=event_type, fields=conn.options.get("payload_fields"))
    assert not parsed.problems, parsed.problems
    outcome = await services.intake.record(
        Intake.event(
            conn,
            parsed,
            dedupe_key=uuid.uuid4().hex,
            payload=payload,
            raw_body=orjson.dumps(payload),
            headers={},
        ),
        answer_for=lambda rid: json_answer(200, {"record_id": str(rid)}),
        deadline=Deadline(5),
    )
    await services.intake.publish(outcome, known=True)
    return outcome.record_id


async def test_candidate_event_is_fetched_and_normalized(
    services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    fake_ats.add_hrm_candidate("1001", positions=["77"], LastUpdated="/Date(1790000000000)/")
    fake_ats.add_hrm_position("77")
    conn = await add_source(services, fake_ats, "hrmanager")
    rid = await record_hrm(
        services, conn, "CandidateStatusUpdated", {"CandidateId": 1001, "PositionId": "77"}
    )
    await run_worker(fast_settings(settings))

    [call] = fake_ats.calls_to("/hrm/restful.svc/v2/acme-corp/Candidates/1001")
    assert call.headers["apikey"] == HRM_KEY
    assert len(fake_ats.calls_to("/hrm/restful.svc/v2/acme-corp/Positions/77")) == 1
    [candidate] = await rows(services, "SELECT * FROM candidate")
    assert (candidate.source, candidate.external_id) == ("hrmanager", "1001")
    assert (candidate.first_name, candidate.last_name) == ("Ada", "Lovelace")
    assert candidate.email == "ada.1001@example.com"
    assert candidate.document["PositionList"][0]["PositionId"] == "77"
    assert candidate.source_updated_at.timestamp() == 1790000000
    assert candidate.version > 0 and candidate.deleted_at is None
    [job] = await rows(services, "SELECT * FROM job")
    assert (job.external_id, job.title, job.status) == ("77", "Engineer 77", "Published")
    [application] = await rows(services, "SELECT * FROM application")
    assert application.external_id == "1001:77"
    assert (application.candidate_external_id, application.job_external_id) == ("1001", "77")
    assert application.status == "Interview"
    [record] = await rows(services, "SELECT state, processed_at FROM record WHERE id = :id", id=rid)
    assert record.state == "processed" and record.processed_at is not None
    # No destination configured: the normalized rows are the output.
    assert await rows(services, "SELECT * FROM delivery") == []


async def test_duplicate_storm_inside_the_window_costs_one_fetch(
    services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    fake_ats.add_hrm_candidate("2002")
    # A slow answer keeps every job waiting on the same fetch at once.
    fake_ats.delay_s = 0.3
    conn = await add_source(services, fake_ats, "hrmanager")
    kinds = ["CandidateUpdated", "CandidateRegistered", "CandidateStatusUpdated"]
    ids = await asyncio.gather(
        *(record_hrm(services, conn, kinds[i % 3], {"CandidateId": "2002"}) for i in range(24))
    )
    assert len(set(ids)) == 24
    await run_worker(fast_settings(settings, worker_concurrency=12))

    assert len(fake_ats.calls_to("/hrm")) == 1
    processed = await rows(services, "SELECT count(*) AS n FROM record WHERE state = 'processed'")
    assert processed[0].n == 24
    [candidate] = await rows(services, "SELECT external_id FROM candidate")
    assert candidate.external_id == "2002"


async def test_an_event_after_the_window_fetches_again(
    services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    fake_ats.add_hrm_candidate("3003")
    conn = await add_source(services, fake_ats, "hrmanager")
    fast = fast_settings(settings, coalesce_window_s=0.2)
    await record_hrm(services, conn, "CandidateUpdated", {"CandidateId": "3003"})
    await run_worker(fast)
    await asyncio.sleep(0.3)
    fake_ats.script.append(Step(patch={"FirstName": "Augusta"}))
    await record_hrm(services, conn, "CandidateUpdated", {"CandidateId": "3003"})
    await run_worker(fast)

    # The cached document predates the second event by more than the window: not reused.
    assert len(fake_ats.calls_to("/hrm")) == 2
    [candidate] = await rows(services, "SELECT first_name FROM candidate")
    assert candidate.first_name == "Augusta"


async def test_payload_field_names_are_configurable(
    services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    fake_ats.add_hrm_candidate("abc-9")
    conn = await add_source(
        services,
        fake_ats,
        "hrmanager",
        options={"payload_fields": {"candidate_id": ["Candidate.Guid"]}},
    )
    await record_hrm(services, conn, "CandidateHired", {"Candidate.Guid": "abc-9"})
    await run_worker(fast_settings(settings))
    [candidate] = await rows(services, "SELECT external_id FROM candidate")
    assert candidate.external_id == "abc-9"


async def test_position_event_fetches_the_position_only(
    services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    fake_ats.add_hrm_position("88", Name="Data Engineer")
    conn = await add_source(services, fake_ats, "hrmanager")
    await record_hrm(services, conn, "PositionPublished", {"PositionId": "88", "CandidateId": "x"})
    await run_worker(fast_settings(settings))
    assert [c.path for c in fake_ats.calls] == ["/hrm/restful.svc/v2/acme-corp/Positions/88"]
    [job] = await rows(services, "SELECT external_id, title FROM job")
    assert (job.external_id, job.title) == ("88", "Data Engineer")


async def test_deletion_fetches_nothing_and_keeps_the_last_known_fields(
    services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    fake_ats.add_hrm_candidate("4004")
    conn = await add_source(services, fake_ats, "hrmanager")
    fast = fast_settings(settings)
    await record_hrm(services, conn, "CandidateUpdated", {"CandidateId": "4004"})
    await run_worker(fast)
    await record_hrm(services, conn, "CandidateDeletedByUser", {"CandidateId": "4004"})
    await run_worker(fast)
    assert len(fake_ats.calls_to("/hrm")) == 1
    [candidate] = await rows(services, "SELECT first_name, deleted_at FROM candidate")
    assert candidate.first_name == "Ada" and candidate.deleted_at is not None


async def test_a_record_without_the_id_its_type_needs_is_a_pipeline_dead_letter(
    services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    # The route quarantines such an event (tests/sources/hrmanager/test_hrmanager.py); a record
    # made some other way cannot be enriched, and no retry helps.
    conn = await add_source(services, fake_ats, "hrmanager")
    rid = await record_event(services, conn, "CandidateUpdated", {"Something": "else"})
    await run_worker(fast_settings(settings))
    assert fake_ats.calls == []
    [letter] = await rows(services, "SELECT * FROM dead_letter")
    assert (letter.record_id, letter.kind, letter.reason) == (rid, "pipeline", "invalid_event")
    assert letter.attempts == 1


async def test_options_broken_since_load_are_a_configuration_dead_letter_not_a_call(
    services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    # The worker reads the connection through its typed configuration, as the route does: a
    # mapping that no longer validates is the tenant's to fix, and nothing is fetched with it.
    fake_ats.add_hrm_candidate("6006")
    conn = await add_source(services, fake_ats, "hrmanager")
    rid = await record_hrm(services, conn, "CandidateUpdated", {"CandidateId": "6006"})
    async with services.engine.begin() as db:
        await db.execute(
            text(
                "UPDATE connection SET options = options || "
                """'{"payload_fields": {"nonsense": ["X"]}}'::jsonb WHERE id = :id"""
            ),
            {"id": conn.id},
        )
    await run_worker(fast_settings(settings))
    assert fake_ats.calls_to("/hrm") == []
    [letter] = await rows(services, "SELECT * FROM dead_letter")
    assert (letter.record_id, letter.kind, letter.reason) == (
        rid,
        "configuration",
        "invalid_configuration",
    )
    assert "payload_fields" in letter.detail


async def test_a_connection_can_opt_out_of_caching_and_coalescing(
    services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    fake_ats.add_hrm_candidate("5005")
    conn = await add_source(services, fake_ats, "hrmanager", options={"coalesce": False})
    for _ in range(3):
        await record_hrm(services, conn, "CandidateUpdated", {"CandidateId": "5005"})
    await run_worker(fast_settings(settings))
    assert len(fake_ats.calls_to("/hrm")) == 3
