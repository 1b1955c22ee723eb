"""One output convention for every command (docs/admin.md, "Output"): ``--json`` prints one
JSON document (a list is ``{"items": [...], "next_cursor": ...}``), humans get tables with
headers; times are ISO 8601 in UTC with ``Z``, an absent value is ``-`` (never ``None``), and
only the result goes to stdout (logs, progress and hints go to stderr)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import typer
from pydantic import BaseModel

# A column: its header, and how to read the cell from a row.
Column = tuple[str, Callable[[Any], Any]]


def data(value: Any) -> Any:
    """What ``--json`` prints for a model, a dataclass, or a list or dict of them."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: data(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [data(v) for v in value]
    if isinstance(value, dict):
        return {k: data(v) for k, v in value.items()}
    return value


def print_json(value: Any) -> None:
    """One JSON document on stdout (times in UTC with ``Z``)."""
    option = orjson.OPT_INDENT_2 | orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC
    typer.echo(orjson.dumps(data(value), option=option).decode())


def print_list(
    items: Sequence[Any],
    *,
    as_json: bool,
    columns: Sequence[Column],
    next_cursor: str | None = None,
) -> None:
    """A list: ``{"items": [...], "next_cursor": ...}`` with ``--json``, else a table."""
    if as_json:
        print_json({"items": list(items), "next_cursor": next_cursor})
        return
    table(items, columns)
    if next_cursor:
        typer.echo(f"more: --cursor {next_cursor}", err=True)


def table(items: Sequence[Any], columns: Sequence[Column]) -> None:
    """Rows under one header line, on stdout; no rules, never wrapped or cut, so ``tail -n +2``
    and ``grep`` read it a row a line."""
    from rich.console import Console
    from rich.table import Table

    grid = Table(box=None, pad_edge=False, padding=(0, 3, 0, 0))
    for header, _ in columns:
        grid.add_column(header, no_wrap=True, overflow="ignore")
    for item in items:
        grid.add_row(*(cell(read(item)) for _, read in columns))
    Console(width=10_000, highlight=False, soft_wrap=True, markup=False).print(grid)


def cell(value: Any) -> str:
    """A value as a human reads it: times in UTC with ``Z``, nothing as ``-``."""
    if value is None or value == "":
        return "-"
    if isinstance(value, datetime):
        return timestamp(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def timestamp(value: datetime | None) -> str:
    """ISO 8601 in UTC to the second, with ``Z``; ``-`` for none."""
    if value is None:
        return "-"
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def or_dash(value: Any) -> str:
    """A value inside a human sentence: ``-`` for nothing, never ``None``."""
    return cell(value)


def nothing_done(message: str) -> typer.Exit:
    """A command that changed nothing says why on stderr and exits non-zero."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)
