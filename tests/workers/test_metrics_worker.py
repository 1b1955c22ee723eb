"""The worker's metrics move with what its jobs do: runs by outcome, ATS calls and their 429s,
deliveries, retries and dead letters (counted in this process, as a worker's /metrics is)."""

from __future__ import annotations

from prometheus_client import REGISTRY

from app.platform.settings import Settings
from app.services import Services
from tests.support.fake_ats import FakeATS, Step
from tests.support.workers import add_source, fast_settings, record_event, run_worker


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_run_that_is_rate_limited_then_delivered_is_counted(
    services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    fake_ats.add_sr_candidate("c-1")
    # One 429 from the ATS (a retry of the processing job), then one 503 from the
    # destination: the processing job's send fails, and the delivery goes on alone.
    fake_ats.script.append(Step(match="/sr/candidates", status=429))
    fake_ats.script.append(Step(match="/vendor", status=503))
    conn = await add_source(services, fake_ats, "smartrecruiters", destination=True)
    tenant = str(conn.tenant_id)
    sr = {"source": "smartrecruiters", "tenant": tenant}
    series: dict[str, tuple[str, dict[str, str]]] = {
        "processed": (
            "hirehook_job_seconds_count",
            {"job": "process_record", "outcome": "processed"},
        ),
        "delivered_run": (
            "hirehook_job_seconds_count",
            {"job": "deliver_record", "outcome": "delivered"},
        ),
        "retries": ("hirehook_job_retries_total", {"job": "process_record"}),
        "delivery_retries": ("hirehook_job_retries_total", {"job": "deliver_record"}),
        "calls_ok": ("hirehook_ats_calls_total", {**sr, "result": "2xx"}),
        "calls_429": ("hirehook_ats_calls_total", {**sr, "result": "429"}),
        "limited": ("hirehook_ats_rate_limited_total", sr),
        "delivered": ("hirehook_deliveries_total", {"outcome": "delivered"}),
        "retrying": ("hirehook_deliveries_total", {"outcome": "retrying"}),
    }
    before = {key: value(name, **labels) for key, (name, labels) in series.items()}
    await record_event(services, conn, "candidate.updated", {"id": "c-1"})
    await run_worker(fast_settings(settings))
    assert len(fake_ats.deliveries()) == 1
    moved = {key: value(name, **labels) - before[key] for key, (name, labels) in series.items()}

    assert moved["processed"] == 1
    assert moved["delivered_run"] == 1
    assert moved["retries"] >= 1
    # Not a retry of a delivery job: the failed send was the processing job's.
    assert moved["delivery_retries"] == 0
    assert moved["calls_429"] == 1
    assert moved["limited"] == 1
    assert moved["calls_ok"] >= 1
    assert moved["delivered"] == 1
    assert moved["retrying"] == 1


async def test_dead_letters_are_counted_by_stage_cause_and_reason(
    services: Services, settings: Settings, fake_ats: FakeATS
) -> None:
    labels = {"stage": "enrichment", "kind": "configuration", "reason": "credentials_refused"}
    before = value("hirehook_dead_letters_total", **labels)
    conn = await add_source(services, fake_ats, "smartrecruiters", secrets={"api_key": "expired"})
    await record_event(services, conn, "candidate.updated", {"id": "c-1"})
    await run_worker(fast_settings(settings))
    assert value("hirehook_dead_letters_total", **labels) - before == 1
    assert value("hirehook_job_seconds_count", job="process_record", outcome="dead-letter") >= 1
