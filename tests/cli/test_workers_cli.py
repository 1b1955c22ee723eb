"""``hirehook dead-letters list | retry | discard``: the first command as its own process, as the
operator runs it, the rest in process (the same command line, without starting Python each time)."""

from __future__ import annotations

import orjson

from app.platform.settings import Settings
from app.services import Services
from tests.support.cli import hirehook, hirehook_process
from tests.support.fake_ats import SR_TOKEN, FakeATS
from tests.support.workers import (
    add_source,
    fast_settings,
    record_event,
    rows,
    run_worker,
)


async def test_dead_letters_are_listed_by_kind_retried_and_discarded(
    services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    fake_ats.add_sr_candidate("c-1")
    sr = await add_source(services, fake_ats, "smartrecruiters", secrets={"api_key": "expired"})
    hrm = await add_source(services, fake_ats, "hrmanager", tenant="globex")
    refused = await record_event(services, sr, "candidate.updated", {"id": "c-1"})
    missing = await record_event(services, hrm, "CandidateUpdated", {"CandidateId": "nobody"})
    fast = fast_settings(settings)
    await run_worker(fast)

    listed = await hirehook_process(settings, "dead-letters", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    letters = orjson.loads(listed.stdout)["items"]
    assert {(x["record_id"], x["kind"], x["reason"], x["tenant"]) for x in letters} == {
        (str(refused), "configuration", "credentials_refused", "acme"),
        (str(missing), "pipeline", "not_found", "globex"),
    }
    config_only = await hirehook(settings, "dead-letters", "list", "--kind", "configuration")
    assert config_only.returncode == 0
    assert "credentials_refused" in config_only.stdout and "not_found" not in config_only.stdout
    assert "expired" not in listed.stdout + config_only.stdout + config_only.stderr

    # Acting on nothing in particular is refused rather than applied to everything.
    refused_all = await hirehook(settings, "dead-letters", "retry")
    assert refused_all.returncode != 0 and "--all" in refused_all.stderr

    await add_source(services, fake_ats, "smartrecruiters", secrets={"api_key": SR_TOKEN})
    retried = await hirehook(settings, "dead-letters", "retry", "--kind", "configuration")
    assert retried.returncode == 0 and "1 dead letter(s) retried" in retried.stdout
    await run_worker(fast)
    [state] = await rows(services, "SELECT state FROM record WHERE id = :id", id=refused)
    assert state.state == "processed"

    pipeline_id = next(x["id"] for x in letters if x["kind"] == "pipeline")
    discarded = await hirehook(settings, "dead-letters", "discard", str(pipeline_id))
    assert discarded.returncode == 0 and "1 dead letter(s) discarded" in discarded.stdout
    [state] = await rows(services, "SELECT state FROM record WHERE id = :id", id=missing)
    assert state.state == "discarded"
    remaining = await hirehook(settings, "dead-letters", "list", "--json")
    assert orjson.loads(remaining.stdout) == {"items": [], "next_cursor": None}
    history = await hirehook(settings, "dead-letters", "list", "--resolved", "--json")
    resolutions = {x["resolution"] for x in orjson.loads(history.stdout)["items"]}
    assert resolutions == {"retried", "discarded"}
