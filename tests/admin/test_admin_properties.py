"""Property tests: hostile values in every kind of admin input reach only documented 4xx.

Text with NUL bytes or lone surrogates, integers past int64 either way and times at the ends
of the calendar (with offsets that carry them past it) go into the query parameters, path
parameters and JSON bodies of the admin API, and into the console's filters. Every answer is
below 500 and, when a refusal, in the route's own error shape; text holding a NUL is always a
400 that says so. Cases are drawn deterministically and in bounded numbers, then sent to the
app in-process against the real PostgreSQL and Redis, so the module stays fast.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.support.admin import ADMIN, auth, log_in

T = TypeVar("T")


def draw(strategy: st.SearchStrategy[T], n: int) -> list[T]:
    """``n`` examples of ``strategy``, the same ones every run."""
    drawn: list[T] = []

    @settings(
        max_examples=n,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(value: T) -> None:
        drawn.append(value)

    collect()
    return drawn


nul_text = st.builds(lambda a, b: f"{a}\x00{b}", st.text(max_size=8), st.text(max_size=8))
# A lone surrogate can only arrive through JSON's escape; a URL cannot carry one.
surrogate_text = st.builds(
    lambda a, s: a + s,
    st.text(max_size=6),
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
)
huge_ints = st.one_of(st.integers(min_value=2**63), st.integers(max_value=-(2**63) - 1))
offsets = st.builds(
    lambda minutes: timezone(timedelta(minutes=minutes)), st.integers(-(23 * 60 + 59), 23 * 60 + 59)
)
# Hypothesis takes naive bounds and attaches the offsets itself.
edge_times = st.one_of(
    st.datetimes(datetime(1, 1, 1), datetime(1, 1, 3), timezones=offsets),  # noqa: DTZ001
    st.datetimes(datetime(9999, 12, 29), datetime(9999, 12, 31), timezones=offsets),  # noqa: DTZ001
).map(datetime.isoformat)
url_values = st.one_of(nul_text, huge_ints.map(str), edge_times)
body_values = st.one_of(nul_text, surrogate_text, huge_ints, edge_times)

QUERIES = {
    "/records": [
        "tenant", "source", "event_type", "state", "received_from", "received_to", "person",
        "job", "application", "cursor", "limit",
    ],
    "/stats": ["since", "until", "tenant", "source"],
    "/dead-letters": ["tenant", "source", "limit", "kind"],
    "/connections": ["tenant", "source"],
}  # fmt: skip
PATHS = [
    ("GET", "/tenants/{}"),
    ("PATCH", "/tenants/{}"),
    ("GET", "/connections/{}"),
    ("PATCH", "/connections/{}"),
    ("POST", "/connections/{}/disable"),
    ("GET", "/records/{}"),
]
_REPLAY = ["filters.tenant", "filters.received_from", "filters.person", "confirm"]
_ERASURE = {"tenant": "acme", "source": "keldair", "candidate_id": "c"}
_CONNECTION = {"tenant": "acme", "source": "keldair", "name": "n"}
BODIES: list[tuple[str, str, dict[str, Any], list[str]]] = [
    ("POST", "/replays", {"filters": {"tenant": "acme"}}, _REPLAY),
    ("POST", "/dead-letters/retry", {"all": True}, ["ids.0", "note", "tenant"]),
    ("POST", "/dead-letters/discard", {"ids": [1]}, ["ids.0", "note", "source"]),
    ("POST", "/erasures", _ERASURE, ["candidate_id", "tenant"]),
    ("POST", "/tenants", {"slug": "fresh", "name": "Fresh"}, ["name"]),
    ("PATCH", "/tenants/acme", {"name": "Acme"}, ["name"]),
    ("POST", "/connections", _CONNECTION, ["name", "account", "options.x"]),
]


def _put(body: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """``body`` with ``value`` at ``dotted`` (``a.b`` a member of a member, ``ids.0`` a list
    of one)."""
    copy: dict[str, Any] = orjson.loads(orjson.dumps(body))
    *parents, last = dotted.split(".")
    if last == "0":
        copy[".".join(parents)] = [value]
        return copy
    node = copy
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return copy


def _dumps(body: dict[str, Any]) -> bytes:
    # Python's encoder escapes a lone surrogate as \\ud800, as a client would send it.
    return json.dumps(body).encode()


def assert_answered(response: httpx.Response, value: Any) -> None:
    assert response.status_code < 500, (response.request.url, value, response.text)
    if response.status_code >= 400:
        assert set(response.json()) == {"error"}, response.text
    if isinstance(value, str) and "\x00" in value:
        assert response.status_code == 400 and "NUL" in response.text, (value, response.text)


async def test_hostile_query_parameters(client: httpx.AsyncClient, admin_key: str) -> None:
    drawn = draw(
        st.sampled_from(sorted(QUERIES)).flatmap(
            lambda path: st.tuples(st.just(path), st.sampled_from(QUERIES[path]), url_values)
        ),
        120,
    )
    for path, name, value in drawn:
        response = await client.get(ADMIN + path, params={name: value}, headers=auth(admin_key))
        assert_answered(response, value)


async def test_hostile_path_parameters(client: httpx.AsyncClient, admin_key: str) -> None:
    # A "/" (even as %2F) makes another path, routed elsewhere: one segment each.
    segments = url_values.map(lambda v: v.replace("/", "_"))
    for (method, template), value in draw(st.tuples(st.sampled_from(PATHS), segments), 80):
        body = {"name": "x"} if method == "PATCH" else None
        response = await client.request(
            method,
            ADMIN + template.format(quote(value, safe="")),
            json=body,
            headers=auth(admin_key),
        )
        assert_answered(response, value)


async def test_hostile_bodies(client: httpx.AsyncClient, admin_key: str) -> None:
    await client.post(
        ADMIN + "/tenants", json={"slug": "acme", "name": "Acme"}, headers=auth(admin_key)
    )
    drawn = draw(
        st.sampled_from(range(len(BODIES))).flatmap(
            lambda i: st.tuples(st.just(i), st.sampled_from(BODIES[i][3]), body_values)
        ),
        150,
    )
    for index, place, value in drawn:
        method, path, body, _ = BODIES[index]
        response = await client.request(
            method,
            ADMIN + path,
            content=_dumps(_put(body, place, value)),
            headers={**auth(admin_key), "content-type": "application/json"},
        )
        assert_answered(response, value)


async def test_hostile_console_filters(client: httpx.AsyncClient, admin_key: str) -> None:
    await log_in(client, admin_key)
    names = QUERIES["/records"]
    for name, value in draw(st.tuples(st.sampled_from(names), url_values), 60):
        page = await client.get("/console/records", params={name: value})
        assert page.status_code < 500, (name, value, page.text)
        if "\x00" in value:
            assert page.status_code == 400 and "NUL" in page.text


def test_times_inside_the_range_are_kept_and_outside_refused() -> None:
    from app.admin.schemas import TIME_MAX, TIME_MIN, storable_time

    for value in draw(st.datetimes(timezones=offsets), 200):
        try:
            utc = value.astimezone(UTC)
        except OverflowError:
            inside = False
        else:
            inside = TIME_MIN <= utc <= TIME_MAX
        if inside:
            assert storable_time(value) == value
        else:
            with pytest.raises(ValueError, match="between"):
                storable_time(value)
