"""Fixtures of the admin API's tests."""

from __future__ import annotations

import httpx
import pytest

from tests.support.admin import Recorder


@pytest.fixture
def admin(client: httpx.AsyncClient, admin_key: str) -> Recorder:
    """The admin API with a valid key, every answer kept to be searched for secrets."""
    return Recorder(client, admin_key)
