"""A batch job notes its successful sends' attempts (the records' stories) in one exchange per
wave of sends, the same waves in which it writes them down, not one statement per send."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from app.platform.settings import Settings
from app.services import Services
from tests.support.fake_ats import FakeATS
from tests.support.workers import batch_settings, record_batch, rows, run_worker, webhook_ids


@pytest.fixture
def statements() -> Iterator[list[str]]:
    """Every statement any engine of this process sends (an executemany counts once)."""
    sent: list[str] = []

    def before(*args: Any) -> None:
        sent.append(str(args[2]))

    event.listen(Engine, "before_cursor_execute", before)
    yield sent
    event.remove(Engine, "before_cursor_execute", before)


async def test_a_waves_attempts_are_noted_in_one_exchange(
    services: Services, settings: Settings, fake_ats: FakeATS, statements: list[str]
) -> None:
    ids = await record_batch(services, fake_ats, 20)

    await run_worker(batch_settings(settings))

    assert webhook_ids(fake_ats) == sorted(str(i) for i in ids)
    # Every send is in its record's story, with the destination's answer.
    noted = await rows(services, "SELECT record_id, status FROM delivery_attempt")
    assert sorted((str(r.record_id), r.status) for r in noted) == sorted((str(i), 200) for i in ids)
    notes = [s for s in statements if "INSERT INTO delivery_attempt" in s]
    waves = [s for s in statements if "UPDATE delivery SET done_at = now(), last_error = NULL" in s]
    assert waves, statements
    # One note per wave written down, not one per send.
    assert len(notes) == len(waves) < len(ids)
