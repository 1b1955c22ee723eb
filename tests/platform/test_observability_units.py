"""The small pieces of observability: request ids, route sources, bounded labels, log format."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import httpx
import pytest
import structlog
from prometheus_client import generate_latest
from pydantic import SecretStr

from app import sources
from app.platform.queue import carried_context
from app.platform.settings import Settings
from app.routers.request_context import request_id_from, source_of
from app.services import Services
from tests.support.app import add_connection
from tests.support.keldair import SECRET, event, post


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        (b"abc-123", True),
        (b"01J9Z8.trace:span_1", True),
        (b"x" * 128, True),
        (b"x" * 129, False),
        (b"has space", False),
        (b"-leading-dash", False),
        (b"line\r\nbreak", False),
        (b"", False),
    ],
)
def test_a_callers_request_id_is_kept_only_when_plain(sent: bytes, kept: bool) -> None:
    chosen = request_id_from([(b"X-Request-Id", sent)])
    assert (chosen == sent.decode("latin-1")) is kept
    if not kept:
        assert len(chosen) == 32 and chosen.isalnum()


def test_a_request_without_an_id_gets_a_fresh_one() -> None:
    assert request_id_from([]) != request_id_from([])


def test_only_event_routes_name_a_source() -> None:
    assert source_of("/v1/keldair/acme/events", sources.paths()) == "keldair"
    assert source_of("/v1/cloud-elements/acme/events", sources.paths()) == "cloudelements"
    assert source_of("/v1/icims/events", sources.paths()) == "icims"
    assert source_of("/oauth/token", sources.paths()) == "oauth"
    assert source_of("/metrics", sources.paths()) == "other"
    assert source_of("/v1/anything-else/x", sources.paths()) == "other"


def test_jobs_inherit_the_request_id_bound_to_the_log_context() -> None:
    assert carried_context() == {}
    with structlog.contextvars.bound_contextvars(request_id="req-1"):
        assert carried_context() == {"request_id": "req-1"}


def test_console_logs_in_development_unless_json_is_asked_for() -> None:
    assert Settings(_env_file=None, environment="development").log_format == "console"
    explicit = Settings(_env_file=None, environment="development", log_format="json")
    assert explicit.log_format == "json"
    production = Settings(_env_file=None, environment="test", secret_key=SecretStr("k" * 40))
    assert production.log_format == "json"


def test_the_backlog_is_in_the_default_exposition_only_once_read() -> None:
    # Registered at import; nothing is reported before a scrape read PostgreSQL.
    from app.platform.metrics import BACKLOG

    saved = BACKLOG.tables
    BACKLOG.tables = None
    try:
        assert "\nhirehook_outbox_backlog " not in generate_latest().decode()
    finally:
        BACKLOG.tables = saved


async def test_an_unknown_event_type_is_counted_as_other(
    client: httpx.AsyncClient, services: Services
) -> None:
    await add_connection(
        services, tenant="acme", source="keldair", secrets={"signing_secrets": [SECRET]}
    )
    chosen = f"made.up.{uuid.uuid4().hex}"
    answer = await post(client, event(type=chosen))
    assert answer.status_code == 200
    assert answer.headers["x-request-id"]
    body = (await client.get("/metrics")).text
    assert chosen not in body
    assert 'event_type="other",outcome="recorded",source="keldair"' in body


def test_the_multiprocess_directory_is_emptied_and_exported(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from app.platform.metrics import (
        MULTIPROC_ENV,
        prepare_multiprocess_dir,
        remove_multiprocess_dir,
    )

    # Set (empty, which means unset) rather than deleted, so the test's end removes what
    # prepare_multiprocess_dir exports: later tests must not run in multiprocess mode.
    monkeypatch.setenv(MULTIPROC_ENV, "")
    given = tmp_path / "given"
    given.mkdir()
    (given / "counter_1.db").write_bytes(b"stale")
    (given / "keep.txt").write_text("not ours")
    assert prepare_multiprocess_dir(str(given)) == str(given)
    assert os.environ[MULTIPROC_ENV] == str(given)
    assert sorted(p.name for p in given.iterdir()) == ["keep.txt"]

    # Without one, a fresh temporary directory, removed when the API stops.
    monkeypatch.setenv(MULTIPROC_ENV, "")
    fresh = Path(prepare_multiprocess_dir())
    assert fresh.is_dir() and fresh.name.startswith("hirehook-metrics-")
    remove_multiprocess_dir(str(fresh))
    assert not fresh.exists()


def test_no_test_leaves_multiprocess_mode_behind() -> None:
    # Runs after the one above (file order): the session's /metrics must stay this process's.
    assert not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
