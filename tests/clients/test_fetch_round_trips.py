"""Every ATS's enrichment fetches a document in two Redis round trips: the cache probe that
takes the coalescing lock takes the rate budget's grant too, and the store that releases the
lock gives the grant's slot back (app/workers/fetch.py). Counted at the client, per handler
run, against the documents the fake API served."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from redis.asyncio import Redis

from app.clients.icims import DEFAULT_TOKENS
from app.intake.connections import ConnectionInfo
from app.services import Services
from app.workers import hrmanager, icims, smartrecruiters
from app.workers.context import RecordRow
from tests.support.fake_ats import FakeATS
from tests.support.fake_icims import FakeIcims
from tests.support.icims import (
    API_CLIENT_ID,
    API_SECRET,
    CUSTOMER,
    JOB,
    PERSON,
    WORKFLOW,
    add_icims,
    api_options,
    icims_secrets,
)
from tests.support.workers import add_source


class RoundTrips:
    """Counts the commands and pipelines sent on one Redis client (each is one round trip)."""

    def __init__(self, redis: Redis, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sent: list[str] = []
        command: Any = redis.execute_command
        pipeline: Any = redis.pipeline

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.sent.append(str(args[0]))
            return await command(*args, **kwargs)

        def counted_pipeline(*args: Any, **kwargs: Any) -> Any:
            pipe = pipeline(*args, **kwargs)
            execute = pipe.execute

            async def counted_execute(*a: Any, **kw: Any) -> Any:
                self.sent.append("PIPELINE")
                return await execute(*a, **kw)

            pipe.execute = counted_execute
            return pipe

        monkeypatch.setattr(redis, "execute_command", counted)
        monkeypatch.setattr(redis, "pipeline", counted_pipeline)


def _record(
    connection: ConnectionInfo, event_type: str, payload: dict[str, Any], subjects: dict[str, str]
) -> RecordRow:
    return RecordRow(
        id=uuid.uuid4(),
        tenant_id=connection.tenant_id,
        connection_id=connection.id,
        source=connection.source,
        event_type=event_type,
        payload=payload,
        headers={},
        attempts=0,
        subjects=subjects,
        connection=connection,
    )


async def _count(services: Services, monkeypatch: pytest.MonkeyPatch) -> RoundTrips:
    """A counter, once Redis knows the cache's script (its first call costs a NOSCRIPT answer
    and a load, once per Redis, not per fetch). The sources' default budgets grant the few
    calls of these tests at once: a call the budget holds back asks it again while it waits,
    as it should."""
    await services.cache.unlock("warm-up", "token")
    return RoundTrips(services.queue.redis, monkeypatch)


async def test_hrmanager_fetches_a_document_in_two_round_trips(
    services: Services, fake_ats: FakeATS, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_ats.add_hrm_candidate("c-1")
    connection = await add_source(services, fake_ats, "hrmanager")
    record = _record(connection, "CandidateUpdated", {"CandidateId": "c-1"}, {"candidate": "c-1"})
    counter = await _count(services, monkeypatch)

    await hrmanager.handle(services, record)

    documents = len(fake_ats.calls_to("/hrm"))
    assert documents == 1
    assert len(counter.sent) == 2 * documents, counter.sent


async def test_smartrecruiters_fetches_each_document_in_two_round_trips(
    services: Services, fake_ats: FakeATS, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The candidate (its own one-at-a-time route's budget as well) and the job."""
    fake_ats.add_sr_candidate("c-1", jobs=["j-1"])
    fake_ats.add_sr_job("j-1")
    connection = await add_source(services, fake_ats, "smartrecruiters")
    record = _record(
        connection,
        "application.status.updated",
        {"job_id": "j-1", "candidate_id": "c-1"},
        {"person": "c-1", "job": "j-1"},
    )
    counter = await _count(services, monkeypatch)

    await smartrecruiters.handle(services, record)

    documents = len(fake_ats.calls_to("/sr"))
    assert documents == 2
    assert len(counter.sent) == 2 * documents, counter.sent


@pytest.fixture
def fake_icims() -> Iterator[FakeIcims]:
    fake = FakeIcims().start()
    DEFAULT_TOKENS.clear()
    fake.add_client(API_CLIENT_ID, API_SECRET)
    fake.put(CUSTOMER, "people", "2468", dict(PERSON))
    fake.put(CUSTOMER, "jobs", "1209", dict(JOB))
    fake.put(CUSTOMER, "applicantworkflows", "13", dict(WORKFLOW))
    yield fake
    fake.stop()


async def test_icims_fetches_each_profile_in_two_round_trips(
    services: Services, fake_icims: FakeIcims, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The workflow, the person and the job it links (the token call spends no budget)."""
    await add_icims(
        services,
        options=api_options(fake_icims),
        secrets=icims_secrets(api_client_secret=API_SECRET),
    )
    connection = await services.connections.by_tenant("acme", "icims")
    assert connection is not None
    record = _record(
        connection,
        "AssessmentEvent",
        {"customerId": CUSTOMER, "eventType": "AssessmentEvent"},
        {"application": "13"},
    )
    counter = await _count(services, monkeypatch)

    await icims.handle(services, record)

    documents = len(fake_icims.profile_requests())
    assert documents == 3
    assert len(counter.sent) == 2 * documents, counter.sent
