"""What a failed command prints: one line naming the cause on stderr, and exit status 1.

An operator who mistypes a path or runs a command while PostgreSQL is down needs the cause,
not a hundred lines of frames; ``--debug`` (or ``HIREHOOK_DEBUG=1``) shows the traceback
instead. No line here quotes a setting's value or a whole URL: both may carry a password
or a token.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from app.cli.common import DEV_ENV_FILE

if TYPE_CHECKING:
    import httpx
    import pydantic

DEBUG_HINT = "--debug or HIREHOOK_DEBUG=1 shows the traceback"

# Where an exception without a telling type (a refused connection is an OSError wherever it
# happens) was raised decides what it is about; the deepest match wins.
_SERVICES = (
    ("asyncpg", "PostgreSQL", "HIREHOOK_DATABASE_URL"),
    ("sqlalchemy", "PostgreSQL", "HIREHOOK_DATABASE_URL"),
    ("redis", "Redis", "HIREHOOK_REDIS_URL"),
    ("arq", "Redis", "HIREHOOK_REDIS_URL"),
)


def debug_requested() -> bool:
    """Whether the environment asks for tracebacks (``--debug`` sets it for this process)."""
    return os.environ.get("HIREHOOK_DEBUG", "").strip().lower() in {"1", "true", "yes", "on"}


def describe(exc: BaseException) -> str:
    """One line for ``exc``: its cause when it is a known failure, else its type and message
    with a hint how to see more."""
    known = _known(exc)
    if known is not None:
        return _one_line(known)
    return _one_line(f"unexpected {type(exc).__name__}: {exc} ({DEBUG_HINT})")


def _known(exc: BaseException) -> str | None:  # noqa: PLR0911 - one answer per kind of failure
    import httpx
    import pydantic
    from redis.exceptions import RedisError
    from sqlalchemy.exc import DBAPIError

    from app.platform.errors import AppError

    if isinstance(exc, AppError):
        return exc.user_message
    if isinstance(exc, pydantic.ValidationError):
        return _invalid(exc)
    if isinstance(exc, httpx.TransportError):
        return f"cannot reach {_request_origin(exc)}: {_cause_text(exc)}"
    if isinstance(exc, httpx.HTTPStatusError):
        return f"{_request_origin(exc)} answered {exc.response.status_code}"
    if isinstance(exc, RedisError):
        return _service_failure("Redis", "HIREHOOK_REDIS_URL", exc)
    if isinstance(exc, DBAPIError):
        # The wrapper's text carries the statement and its parameters; the driver's error
        # alone says what PostgreSQL refused.
        failure = _service_failure("PostgreSQL", "HIREHOOK_DATABASE_URL", exc.orig or exc)
        if getattr(exc.orig, "sqlstate", None) == "42P01":  # undefined_table
            failure += " (is the database migrated? `hirehook migrate`)"
        return failure
    service = _raised_in(exc)
    if service is not None and isinstance(exc, OSError):
        name, variable = service
        return _service_failure(name, variable, exc)
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or type(exc).__name__}"
    if (
        _raised_by_module(exc, "app.platform.settings")
        or _raised_by_module(exc, "app.platform.migrate")
        or _is_alembic_command_error(exc)
    ):
        # A setting the command needs is missing, or Alembic cannot find a revision: the
        # message already says which and what to do.
        return str(exc)
    return None


def _is_alembic_command_error(exc: BaseException) -> bool:
    # Importing Alembic just to ask would log its plugin set-up lines on stderr; when the
    # error is Alembic's, Alembic is loaded.
    loaded = sys.modules.get("alembic.util.exc")
    return loaded is not None and isinstance(exc, loaded.CommandError)


def _invalid(exc: pydantic.ValidationError) -> str:
    settings = exc.title == "Settings"
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        message = str(error["msg"]).removeprefix("Value error, ")
        loc = [str(part) for part in error["loc"]]
        if not loc:
            problems.append(message)
        elif settings:
            item = f" (item {'.'.join(loc[1:])})" if len(loc) > 1 else ""
            problems.append(f"HIREHOOK_{loc[0].upper()}{item}: {message}")
        else:
            problems.append(f"{'.'.join(loc)}: {message}")
    what = "invalid settings" if settings else f"invalid {exc.title}"
    hint = ""
    if settings and "HIREHOOK_ENVIRONMENT" not in os.environ and not DEV_ENV_FILE.exists():
        # Most often a command run beside `make dev` but from another directory.
        hint = f" (no `hirehook dev` runs in this directory: {DEV_ENV_FILE} not found)"
    return f"{what}: {'; '.join(problems)}{hint}"


def _service_failure(name: str, variable: str, exc: BaseException) -> str:
    target = host_port(os.environ.get(variable, ""))
    where = f" at {target}" if target else ""
    return f"cannot use {name}{where} ({variable}): {_cause_text(exc)}"


def host_port(url: str) -> str:
    """``host:port`` of a URL, never its credentials, path or query."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return ""
    if not parts.hostname:
        return ""
    return f"{parts.hostname}:{port}" if port else parts.hostname


def _request_origin(exc: httpx.TransportError | httpx.HTTPStatusError) -> str:
    # A webhook URL may carry its token in the path (url_token connections): origin only.
    try:
        url = exc.request.url
    except RuntimeError:
        return "the server"
    return f"{url.scheme}://{url.host}" + (f":{url.port}" if url.port else "")


def _cause_text(exc: BaseException) -> str:
    # SQLAlchemy's asyncpg adapter prefixes the driver's class: "<class 'asyncpg...'>: ".
    text = re.sub(r"^<class '[\w.]+'>: ", "", str(exc).strip())
    return text or type(exc).__name__


def _frames(tb: TracebackType | None) -> Iterator[str]:
    while tb is not None:
        yield str(tb.tb_frame.f_globals.get("__name__", ""))
        tb = tb.tb_next


def _raised_in(exc: BaseException) -> tuple[str, str] | None:
    found = None
    for module in _frames(exc.__traceback__):
        for prefix, name, variable in _SERVICES:
            if module == prefix or module.startswith(prefix + "."):
                found = (name, variable)
    return found


def _raised_by_module(exc: BaseException, module: str) -> bool:
    *_, deepest = ["", *_frames(exc.__traceback__)]
    return deepest == module


def _one_line(text: str) -> str:
    return " ".join(text.split())
