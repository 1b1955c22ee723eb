"""SmartRecruiters webhook notifications as SmartRecruiters signs them, and the CLI in its own
process."""

from __future__ import annotations

import asyncio
import sys
import uuid
from typing import Any

import httpx
import orjson

from tests.support.fake_smartrecruiters import (
    sr_headers,
)

KEY_A = "sr-signing-key-alpha-000000000000000001"


URL = "/v1/smartrecruiters/acme/events"


async def post(
    client: httpx.AsyncClient,
    payload: Any,
    *,
    keys: list[str] | None = None,
    event_name: str = "candidate.created",
    event_id: str | None = None,
    url: str = URL,
    **kw: Any,
) -> httpx.Response:
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    headers = sr_headers(
        keys or [KEY_A], body, event_name=event_name, event_id=event_id or str(uuid.uuid4()), **kw
    )
    return await client.post(url, content=body, headers=headers)


async def cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app.cli",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()
