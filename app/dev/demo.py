"""The demo tenants file that `hirehook dev` loads and the sample senders read credentials from."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEMO_TENANTS = Path(__file__).resolve().parents[2] / "demo" / "tenants.toml"
# Where `hirehook dev` serves the stand-in ATS APIs (app/dev/demo_ats.py); the demo file names it.
DEMO_ATS_PORT = 8099


def demo_connection(
    source: str, match: Callable[[dict[str, Any], dict[str, Any]], bool] | None = None
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(tenant table, connection table) of the first demo connection to ``source`` that
    ``match(tenant, connection)`` accepts; None if the file has none."""
    with DEMO_TENANTS.open("rb") as fh:
        spec = tomllib.load(fh)
    for tenant in spec.get("tenant", []):
        for conn in tenant.get("connection", []):
            if conn.get("source") == source and (match is None or match(tenant, conn)):
                return tenant, conn
    return None
