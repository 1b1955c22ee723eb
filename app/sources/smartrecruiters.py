"""SmartRecruiters: the source descriptor (its webhook route comes with its receiver)."""

from __future__ import annotations

from typing import Any

from app.clients.smartrecruiters import DEFAULT_LIMITS, SOURCE
from app.sources.base import Source
from app.workers import smartrecruiters as worker


def check(options: dict[str, Any], secrets: dict[str, Any]) -> None:
    """API credentials, where given, are strings."""
    for name in ("api_key", "access_token"):
        if name in secrets and not isinstance(secrets[name], str):
            raise ValueError(f"secrets.{name}: must be a string")
    base = options.get("base_url")
    if base is not None and not isinstance(base, str):
        raise ValueError("options.base_url: must be a string")


SMARTRECRUITERS = Source(
    name=SOURCE,
    title="SmartRecruiters",
    check=check,
    handler=worker.handle,
    limits=DEFAULT_LIMITS,
)
