"""Deeply nested JSON is a 400 that says so, never a RecursionError turned into a 500.

orjson parses up to 1024 levels, so a body 800 deep reaches our own code (NUL stripping, the
depth check); one 100,000 deep is refused by orjson itself. Neither may crash the request.
"""

from __future__ import annotations

import sys
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from app.intake.payload import MAX_DEPTH, TooDeepError, parse_json, strip_nul
from app.platform.errors import AppError
from app.services import Services
from tests.support.app import add_connection
from tests.support.icims import add_icims, basic_header, error_of
from tests.support.keldair import SECRET, URL, signed


def nested(depth: int) -> bytes:
    """``depth`` arrays, one inside the other."""
    return b"[" * depth + b"]" * depth


def keldair_body(depth: int) -> bytes:
    return b'{"id":"evt_deep","type":"applicant.hired","data":{"id":"ap_1","x":' + (
        nested(depth) + b"}}"
    )


def icims_body(depth: int) -> bytes:
    return b'{"customerId":"1234","eventType":"JobUnpostToWebEvent","systemId":"1","x":' + (
        nested(depth) + b"}"
    )


async def no_records(services: Services) -> None:
    async with services.engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM record"))).scalar_one() == 0


# (depth, what the answer says): our depth limit, then orjson's own.
DEPTHS = [
    (800, f"nested deeper than {MAX_DEPTH} levels"),
    (100_000, "depth limit exceeded"),
]


@pytest.mark.parametrize(("depth", "reason"), DEPTHS, ids=["800", "100000"])
async def test_deep_keldair_event_is_400_with_a_reason(
    client: httpx.AsyncClient, services: Services, depth: int, reason: str
) -> None:
    await add_connection(
        services, tenant="acme", source="keldair", secrets={"signing_secrets": [SECRET]}
    )
    body = keldair_body(depth)
    response = await client.post(URL, content=body, headers=signed(body))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "bad_json"
    assert reason in error["message"]
    await no_records(services)


@pytest.mark.parametrize(("depth", "reason"), DEPTHS, ids=["800", "100000"])
async def test_deep_icims_event_is_400_with_a_reason(
    client: httpx.AsyncClient, services: Services, depth: int, reason: str
) -> None:
    await add_icims(services)
    # Plain, not gzip'd: 100,000 brackets compress past the inflate ratio cap, a refusal of
    # its own that would hide what this test is about.
    response = await client.post(
        "/v1/icims/events",
        content=icims_body(depth),
        headers={"content-type": "application/json"} | basic_header(),
    )
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert "could not read" in error["userMessage"]
    assert reason in error["debugErrorMessage"]
    await no_records(services)


def deep_list(depth: int, leaf: Any) -> list[Any]:
    """``depth`` lists, one inside the other, ``leaf`` in the innermost; built iteratively."""
    top: list[Any] = [leaf]
    for _ in range(depth - 1):
        top = [top]
    return top


def test_strip_nul_walks_ten_thousand_levels_without_recursion() -> None:
    depth = 10_000
    assert depth > sys.getrecursionlimit()
    value = deep_list(depth, {"k\x00ey": "a\x00b"})
    assert strip_nul(value, max_depth=depth + 1) is value
    node: Any = value
    for _ in range(depth - 1):
        node = node[0]
    assert node == [{"key": "ab"}]


def test_strip_nul_refuses_past_its_depth_limit_with_its_own_error() -> None:
    with pytest.raises(TooDeepError):
        strip_nul(deep_list(10_000, "x"))
    # Exactly at the limit is fine.
    assert strip_nul(deep_list(5, "x\x00"), max_depth=5) == deep_list(5, "x")
    with pytest.raises(TooDeepError):
        strip_nul(deep_list(6, "x"), max_depth=5)


def test_parse_json_strips_nul_from_keys_and_values_at_any_level() -> None:
    body = b'{"a\\u0000b": "x\\u0000y", "l": ["\\u0000", {"n\\u0000": ["z\\u0000"]}], "i": 1}'
    assert parse_json(body) == {"ab": "xy", "l": ["", {"n": ["z"]}], "i": 1}
    # A raw NUL byte is not JSON at all: it is refused, not silently kept.
    with pytest.raises(AppError) as refused:
        parse_json(b'{"a": "x\x00y"}')
    assert refused.value.status == 400


def test_parse_json_depth_limit_is_exact_and_ignores_brackets_in_strings() -> None:
    # The object itself is one level: MAX_DEPTH levels in all are accepted.
    value = parse_json(b'{"a":' + nested(MAX_DEPTH - 1) + b"}")
    levels, node = 1, value["a"]
    while isinstance(node, list):
        levels, node = levels + 1, node[0] if node else None
    assert levels == MAX_DEPTH
    with pytest.raises(AppError) as too_deep:
        parse_json(b'{"a":' + nested(MAX_DEPTH) + b"}")
    assert too_deep.value.status == 400
    assert f"nested deeper than {MAX_DEPTH} levels" in too_deep.value.user_message
    # Brackets inside strings nest nothing.
    brackets = "[{" * 1000
    assert parse_json(b'{"s": "' + brackets.encode() + b'\\u0000"}') == {"s": brackets}
