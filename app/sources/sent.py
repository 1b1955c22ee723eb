"""What ``hirehook send`` reports of each answer its sample sender got: a line, or, while the
command runs with ``--json`` (:func:`collecting`), an item of one JSON document."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import httpx
import orjson
import typer

from app.clients.http import verified_context

_COLLECTED: ContextVar[list[dict[str, Any]] | None] = ContextVar("sent", default=None)


def answered(
    response: httpx.Response, *, event: str | None = None, line: str | None = None
) -> None:
    """Report one answer: ``line`` (default: the status and the body) on stdout, or, when
    collecting, the event, status, whether it was a duplicate, and the body."""
    collected = _COLLECTED.get()
    if collected is None:
        typer.echo(line if line is not None else f"{response.status_code} {response.text}")
        return
    collected.append(
        {
            "event": event,
            "status": response.status_code,
            "duplicate": "hirehook-duplicate" in response.headers,
            "location": response.headers.get("location"),
            "answer": _body(response),
        }
    )


@contextmanager
def collecting() -> Iterator[list[dict[str, Any]]]:
    """Collect the answers reported meanwhile instead of printing them."""
    answers: list[dict[str, Any]] = []
    token = _COLLECTED.set(answers)
    try:
        yield answers
    finally:
        _COLLECTED.reset(token)


def post(url: str, **kwargs: Any) -> httpx.Response:
    """``httpx.post`` on the process's one TLS context: each ``httpx.post`` otherwise loads
    the CA bundle again (~45 ms of CPU per sample sent)."""
    return httpx.post(url, verify=verified_context(), **kwargs)


def _body(response: httpx.Response) -> Any:
    try:
        return orjson.loads(response.content) if response.content else None
    except orjson.JSONDecodeError:
        return response.text
