"""What each process's /metrics declares: only the families it serves, no ``*_created``
series, the build it runs, and a backlog family per kind of work. Also the admin statistics'
rounding (a percentile of integer milliseconds is not precise to the microsecond)."""

from __future__ import annotations

import platform
from importlib.metadata import version

import httpx
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from app.admin import service
from app.services import Services
from tests.support.admin import post_keldair
from tests.support.app import add_connection
from tests.support.keldair import SECRET
from tests.support.keldair import event as keldair_event

# Moved only by arq jobs, in a worker process.
WORKER_ONLY = (
    "hirehook_job_seconds",
    "hirehook_records_processed",
    "hirehook_job_retries",
    "hirehook_dead_letters",
    "hirehook_deliveries",
)
API_ONLY = ("hirehook_ack_seconds", "hirehook_refused", "hirehook_outbox_backlog")


def families(exposition: str) -> dict[str, set[str]]:
    """Family name -> the names of its samples."""
    return {f.name: {s.name for s in f.samples} for f in text_string_to_metric_families(exposition)}


async def test_the_api_declares_its_own_families_without_created_series(
    client: httpx.AsyncClient, services: Services
) -> None:
    await add_connection(
        services, tenant="acme", source="keldair", secrets={"signing_secrets": [SECRET]}
    )
    assert (await post_keldair(client, keldair_event())).status_code == 200
    body = (await client.get("/metrics")).text
    found = families(body)

    assert "hirehook_events" in found and "hirehook_ack_seconds" in found
    for name in WORKER_ONLY:
        assert name not in found, name
    assert "_created" not in body
    assert not [n for n in found if n.endswith("_created")]

    [info] = [
        s
        for f in text_string_to_metric_families(body)
        if f.name == "hirehook_build_info"
        for s in f.samples
    ]
    assert info.value == 1
    assert info.labels == {"version": version("hirehook"), "python": platform.python_version()}

    # Enrichment and delivery backlogs are families of their own, with no table label.
    for kind in ("outbox", "delivery"):
        for part in ("backlog", "due", "oldest_seconds"):
            [sample] = [
                s
                for f in text_string_to_metric_families(body)
                if f.name == f"hirehook_{kind}_{part}"
                for s in f.samples
            ]
            assert sample.labels == {}
    assert 'table="' not in body


def test_the_worker_declares_its_own_families_without_created_series() -> None:
    from prometheus_client import REGISTRY

    from app.platform import metrics

    # What `hirehook worker --metrics-port` serves.
    body = generate_latest(getattr(metrics, "WORKER", REGISTRY)).decode()
    found = families(body)
    for name in (*WORKER_ONLY, "hirehook_ats_calls", "hirehook_build_info"):
        assert name in found, name
    for name in API_ONLY:
        assert name not in found, name
    assert "_created" not in body


async def test_admin_stats_round_milliseconds_and_ratios(
    client: httpx.AsyncClient, services: Services
) -> None:
    await add_connection(
        services, tenant="acme", source="keldair", secrets={"signing_secrets": [SECRET]}
    )
    first, second = keldair_event(), keldair_event()
    for body in (first, second, first):
        assert (await post_keldair(client, body)).status_code == 200
    # Two records waiting 1 and 2 ms: p50 1.5, p99 1.99 (interpolated); 1 duplicate in 3.
    async with services.engine.begin() as conn:
        ids = (await conn.execute(text("SELECT id FROM record ORDER BY id"))).scalars().all()
        for ms, record_id in zip((1, 2), ids, strict=True):
            await conn.execute(
                text("UPDATE record SET ack_ms = :ms WHERE id = :id"), {"ms": ms, "id": record_id}
            )

    [row] = (await service.stats(services, tenant="acme")).sources
    assert (row.ack_p50_ms, row.ack_p99_ms) == (1.5, 2.0)
    assert row.duplicates == 1
    assert row.duplicate_ratio == 0.333
