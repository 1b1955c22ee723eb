"""A fetch whose call spends a known budget takes the budget's grant with the cache probe that
decides to fetch and gives the slot back with the store: two Redis round trips, not four, with
the budget's guarantees unchanged."""

from __future__ import annotations

import asyncio
import time

import pytest

from app.clients.base import ApiError, BudgetKey, Document
from app.clients.budget import RedisBudget
from app.services import Services
from app.workers.fetch import Fetched, fetch_document

KEY = BudgetKey(41, "hrmanager")


def _budget(services: Services) -> RedisBudget:
    assert isinstance(services.budget, RedisBudget)
    return services.budget


async def _scripts_run(services: Services) -> int:
    stats = await services.queue.redis.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def _fetch(services: Services, call: object, external_id: str = "c-1") -> Fetched:
    return await fetch_document(
        services,
        tenant_id=KEY.tenant_id,
        source=KEY.source,
        kind="candidate",
        external_id=external_id,
        # An event received a second ago: a document fetched since may stand for it.
        not_before=int((time.time() - 1) * 1_000_000),
        call=call,  # type: ignore[arg-type]
        budget_key=KEY,
    )


async def test_a_fetch_costs_two_round_trips_and_leaves_no_slot_held(services: Services) -> None:
    budget = _budget(services)
    inflight = (await budget.ticket(KEY)).inflight[0]
    held_during_call: list[int] = []

    async def call() -> Document:
        async with budget.slot(KEY):
            held_during_call.append(await services.queue.redis.zcard(inflight))
            return Document({"Id": "c-1"}, time.time())

    # Redis learns the script on its first run (a NOSCRIPT answer, then a load).
    await services.cache.unlock("warm-up", "token")
    before = await _scripts_run(services)
    fetched = await _fetch(services, call)
    assert fetched.document == {"Id": "c-1"}
    # The probe (lock and grant) and the store (document, lock and slot): nothing else.
    assert await _scripts_run(services) - before == 2
    assert held_during_call == [1]
    assert await services.queue.redis.zcard(inflight) == 0
    assert await budget.calls_today(KEY) == 1
    # The next event is served from the cache, without spending the budget.
    assert (await _fetch(services, call)).from_cache
    assert await budget.calls_today(KEY) == 1


async def test_a_budget_that_cannot_grant_at_once_is_waited_for_by_the_call(
    services: Services,
) -> None:
    """The probe takes nothing it cannot grant; the call then waits in the budget as always."""
    budget = _budget(services)
    inflight = (await budget.ticket(KEY)).inflight[0]
    released = asyncio.Event()
    all_given_back = asyncio.Event()

    async def hold() -> None:
        # HR Manager's default cap is four calls at a time: hold all four.
        async with budget.slot(KEY), budget.slot(KEY), budget.slot(KEY), budget.slot(KEY):
            await released.wait()
        all_given_back.set()

    holder = asyncio.create_task(hold())
    while await services.queue.redis.zcard(inflight) < 4:  # noqa: ASYNC110
        await asyncio.sleep(0.01)

    async def call() -> Document:
        async with budget.slot(KEY):
            # The call may get its slot as soon as the first of the four is given back: once
            # all are, the only slot held is the call's (the probe took none).
            await all_given_back.wait()
            assert await services.queue.redis.zcard(inflight) == 1
            return Document({"Id": "c-2"}, time.time())

    fetching = asyncio.create_task(_fetch(services, call, "c-2"))
    await asyncio.sleep(0.2)
    assert not fetching.done()
    released.set()
    await holder
    assert (await fetching).document == {"Id": "c-2"}
    assert await services.queue.redis.zcard(inflight) == 0


async def test_a_failed_call_gives_back_its_slot_and_its_lock(services: Services) -> None:
    budget = _budget(services)
    inflight = (await budget.ticket(KEY)).inflight[0]

    async def failing() -> Document:
        async with budget.slot(KEY):
            raise ApiError("hrmanager candidate c-3: server error 503", status=503, transient=True)

    with pytest.raises(ApiError):
        await _fetch(services, failing, "c-3")
    assert await services.queue.redis.zcard(inflight) == 0

    async def call() -> Document:
        async with budget.slot(KEY):
            return Document({"Id": "c-3"}, time.time())

    # The lock is free again: the next event fetches at once.
    assert (await _fetch(services, call, "c-3")).document == {"Id": "c-3"}
    assert await budget.calls_today(KEY) == 2


async def test_a_grant_is_spent_by_one_call_only(services: Services) -> None:
    """A call that makes two requests under the key asks the budget for the second."""
    budget = _budget(services)
    inflight = (await budget.ticket(KEY)).inflight[0]

    async def twice() -> Document:
        async with budget.slot(KEY):
            pass
        async with budget.slot(KEY):
            assert await services.queue.redis.zcard(inflight) == 2
        return Document({"Id": "c-4"}, time.time())

    await _fetch(services, twice, "c-4")
    assert await budget.calls_today(KEY) == 2
    assert await services.queue.redis.zcard(inflight) == 0
