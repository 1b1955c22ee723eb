"""Schemathesis hooks for ``bench.fuzz``: hostile values the schema alone would not make.

Loaded by ``st run`` through ``SCHEMATHESIS_HOOKS=bench.fuzz_hooks``. For every admin operation
a generated case keeps its schema-valid shape, but often one of its values is swapped for
one that has broken a store or a driver before: a NUL (U+0000, which no PostgreSQL text or
JSONB holds), a lone surrogate (JSON's ``\\ud800``; bodies only, HTTP cannot carry one in a
URL), integers past int64 either way, times at the edges of the calendar with offsets that
push them past it, and (bodies) a string that makes the body larger than the 1 MiB cap. The
answer must still be a documented 4xx, never a 5xx or a dropped connection.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import strategies as st

ADMIN = "/v1/admin/"
# Over the admin API's body cap (app.routers.admin.MAX_BODY_BYTES).
OVERSIZED = "x" * (1024 * 1024 + 1)

NUL_TEXT = ["\x00", "a\x00b", "acme\x00", "\x00" * 3]
SURROGATES = ["\ud800", "x\udfff", "\udbff\udc00\ud800"]
HUGE_INTS = [2**63, -(2**63) - 1, 2**64, 10**30, -(10**30)]
EXTREME_TIMES = [
    "9999-12-31T23:59:59-23:59",
    "0001-01-01T00:00:00+23:59",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999999+00:00",
    "10000-01-01T00:00:00Z",
]

in_urls = st.sampled_from([*NUL_TEXT, *HUGE_INTS, *EXTREME_TIMES])
in_bodies = st.one_of(
    st.sampled_from([*NUL_TEXT, *SURROGATES, *HUGE_INTS, *EXTREME_TIMES]),
    st.lists(st.sampled_from(HUGE_INTS), min_size=1, max_size=3),
    st.dictionaries(
        st.sampled_from(["k", "\x00", "\ud800"]), st.sampled_from(NUL_TEXT), min_size=1
    ),
    st.just(OVERSIZED),
)


def _admin(context: Any) -> bool:
    operation = getattr(context, "operation", None)
    return operation is not None and str(operation.path).startswith(ADMIN)


def _leaves(value: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON value where a hostile value can go (objects' members, lists'
    items), the value itself first."""
    places = [at]
    if isinstance(value, dict):
        for key, item in value.items():
            places += _leaves(item, (*at, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            places += _leaves(item, (*at, index))
    return places


def _put(value: Any, at: tuple[Any, ...], hostile: Any) -> Any:
    if not at:
        return hostile
    head, rest = at[0], at[1:]
    if isinstance(value, dict):
        return {**value, head: _put(value[head], rest, hostile)}
    copy = list(value)
    copy[head] = _put(copy[head], rest, hostile)
    return copy


def _poisoned(value: Any, hostile: st.SearchStrategy[Any], top: bool) -> st.SearchStrategy[Any]:
    """``value`` as generated (half the time), or with one place swapped for a hostile value
    (the whole value only when ``top``: a query or path needs its mapping)."""
    places = [p for p in _leaves(value) if top or p]
    if not places:
        return st.just(value)
    swapped = st.builds(
        lambda place, bad: _put(value, place, bad), st.sampled_from(places), hostile
    )
    return st.one_of(st.just(value), swapped)


@schemathesis.hook
def flatmap_body(context: Any, body: Any) -> st.SearchStrategy[Any]:
    if not _admin(context) or body is None:
        return st.just(body)
    return _poisoned(body, in_bodies, top=True)


@schemathesis.hook
def flatmap_query(context: Any, query: Any) -> st.SearchStrategy[Any]:
    if not _admin(context):
        return st.just(query)
    # Optional parameters are mostly left out: every declared one is a place to poison.
    declared = {p.name: None for p in context.operation.query}
    if not declared:
        return st.just(query)
    given = dict(query or {})
    added = st.builds(
        lambda name, bad: {**given, name: bad}, st.sampled_from(sorted(declared)), in_urls
    )
    return st.one_of(st.just(query), added)


@schemathesis.hook
def flatmap_path_parameters(context: Any, path_parameters: Any) -> st.SearchStrategy[Any]:
    if not _admin(context) or not path_parameters:
        return st.just(path_parameters)
    return _poisoned(path_parameters, in_urls, top=False)
