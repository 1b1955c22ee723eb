"""Talentech HR Manager: the source descriptor (its webhook route comes with its receiver)."""

from __future__ import annotations

from typing import Any

from app.clients.hrmanager import DEFAULT_LIMITS, SOURCE
from app.sources.base import Source
from app.workers import hrmanager as worker


def check(options: dict[str, Any], secrets: dict[str, Any]) -> None:
    """Enrichment needs an API key and a customer alias when it is configured at all."""
    if "api_key" in secrets and not isinstance(secrets["api_key"], str):
        raise ValueError("secrets.api_key: must be a string")
    alias = options.get("customer_alias")
    if alias is not None and not isinstance(alias, str):
        raise ValueError("options.customer_alias: must be a string")


HRMANAGER = Source(
    name=SOURCE,
    title="Talentech HR Manager",
    check=check,
    handler=worker.handle,
    limits=DEFAULT_LIMITS,
)
