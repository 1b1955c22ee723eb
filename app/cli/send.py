"""``hirehook send <source>``: correctly signed sample events, one command per source."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Annotated, Any

import typer

from app.cli.output import print_list
from app.sources import REGISTRY, sent

send_cli = typer.Typer(
    help="Send correctly signed sample events to a running instance.", no_args_is_help=True
)

_JSON = inspect.Parameter(
    "as_json",
    inspect.Parameter.KEYWORD_ONLY,
    default=False,
    annotation=Annotated[
        bool,
        typer.Option(
            "--json",
            help='Print the answers as one JSON document, {"items": [{"event", "status", '
            '"duplicate", "location", "answer"}, ...], "next_cursor": null}.',
        ),
    ],
)


def with_json(sender: Callable[..., None]) -> Callable[..., None]:
    """``sender`` with a ``--json`` option: the answers it reports (:mod:`app.sources.sent`)
    are printed as one list at the end instead of a line each, also when it exits 1 because
    one was a refusal."""

    @functools.wraps(sender)
    def command(*args: Any, as_json: bool = False, **kwargs: Any) -> None:
        if not as_json:
            sender(*args, **kwargs)
            return
        with sent.collecting() as answers:
            try:
                sender(*args, **kwargs)
            except typer.Exit:
                if answers:
                    print_list(answers, as_json=True, columns=[])
                raise
        print_list(answers, as_json=True, columns=[])

    # Evaluated: the sources write their annotations as strings (PEP 563), and typer reads
    # the options from this signature as it is.
    signature = inspect.signature(sender, eval_str=True)
    command.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*signature.parameters.values(), _JSON]
    )
    return command


for _source in REGISTRY.values():
    if _source.send is not None:
        send_cli.command(_source.name, help=_source.send.__doc__)(with_json(_source.send))
