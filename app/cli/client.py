"""The admin API as the operator commands reach it: one client, two transports.

With ``--url`` (or ``HIREHOOK_URL``) a command talks HTTP to that deployment with the admin
key of ``--key`` (or ``HIREHOOK_ADMIN_KEY``), as the console does: an operator needs a key,
not the database. Without a URL, on a host holding Hirehook's settings, the same requests go
to the app built from those settings in this process (``httpx.ASGITransport``), as the host's
operator (:func:`app.admin.keys.local_operator`): whoever holds the database credentials and
the secret key can do all of this anyway. Either way a command sends the same requests and
reads the same answers, so it has one implementation and prints the same output.
"""

from __future__ import annotations

import asyncio
import getpass
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, TypeVar

import httpx
import typer
from pydantic import BaseModel, TypeAdapter, ValidationError

from app.cli.common import VERBOSITY, load_settings, use_dev_env
from app.platform.errors import AppError

T = TypeVar("T")

PREFIX = "/v1/admin"
# A replay of many records or an erasure answers when it is done: minutes, not seconds.
TIMEOUT = httpx.Timeout(10.0, read=600.0)


@dataclass
class Target:
    """Where the admin API is: the root options ``--url`` and ``--key`` of this invocation."""

    url: str | None = None
    key: str | None = None


TARGET = Target()


class AdminClient:
    """The admin API's operations as requests; each answer is read into its admin schema, so a
    command prints a model whichever transport carried it."""

    def __init__(self, http: httpx.AsyncClient, *, remote: bool, stores: str = "") -> None:
        self._http = http
        self._remote = remote
        # In process: where this host's settings point, named in a 503's line.
        self._stores = stores

    async def get(self, path: str, answer: type[T], **params: Any) -> T:
        """``GET`` with query parameters (``None`` left out)."""
        return await self.send("GET", path, answer, params=params)

    async def post(self, path: str, answer: type[T], body: Any = None) -> T:
        """``POST`` a body (a model as the fields it was given)."""
        return await self.send("POST", path, answer, body=body)

    async def put(self, path: str, answer: type[T], body: Any) -> T:
        """``PUT`` a body."""
        return await self.send("PUT", path, answer, body=body)

    async def patch(self, path: str, answer: type[T], body: Any) -> T:
        """``PATCH`` a body."""
        return await self.send("PATCH", path, answer, body=body)

    async def send(
        self,
        method: str,
        path: str,
        answer: type[T],
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
    ) -> T:
        """One request; the answer as ``answer``, or an :class:`AppError` saying why not."""
        response = await self._http.request(
            method,
            PREFIX + path,
            params=_params(params or {}),
            json=_body(body) if body is not None else None,
        )
        if response.status_code >= 400:
            raise self._refusal(response)
        try:
            return TypeAdapter(answer).validate_json(response.content)
        except ValidationError:
            raise self._not_ours(response) from None

    def _refusal(self, response: httpx.Response) -> AppError:
        message = _message(response)
        if message is None:
            return self._not_ours(response)
        status = response.status_code
        if status == 401 and self._remote:
            message = (
                f"{_origin(response)} refused the admin key (--key or HIREHOOK_ADMIN_KEY): "
                f"{message}"
            )
        elif status == 503 and not self._remote:
            message = f"{message} ({self._stores})"
        elif status >= 500:
            message = f"{_origin(response)} answered {status}: {message}"
        return AppError(status, message, code="refused")

    def _not_ours(self, response: httpx.Response) -> AppError:
        kind = response.headers.get("content-type", "").split(";")[0] or "no content type"
        return AppError(
            502,
            f"{_origin(response)} answered {response.status_code} with {kind}, not the admin "
            "API's JSON: is the URL a Hirehook API (its base, e.g. https://hirehook.example)?",
            code="not_admin_api",
        )


def admin(action: Callable[[AdminClient], Awaitable[T]]) -> T:
    """Run ``action`` with the admin API of this invocation; a refusal (the API's message) or
    an unreachable API is one line on stderr and exit status 1."""
    from app.cli.errors import describe

    try:
        return asyncio.run(_run(action))
    except (AppError, httpx.HTTPError) as exc:
        typer.echo(f"error: {describe(exc)}", err=True)
        raise typer.Exit(1) from exc


async def _run(action: Callable[[AdminClient], Awaitable[T]]) -> T:
    async with connect() as client:
        return await action(client)


@asynccontextmanager
async def connect() -> AsyncIterator[AdminClient]:
    """The client of this invocation: over HTTP to ``--url``, else in process."""
    # The environment (and a running `hirehook dev`'s file) complete what the options omit.
    use_dev_env(os.environ)
    url = TARGET.url or os.environ.get("HIREHOOK_URL", "").strip()
    if url:
        key = TARGET.key or os.environ.get("HIREHOOK_ADMIN_KEY", "").strip()
        if not key:
            raise AppError(
                400, "an admin key is needed with --url: --key or HIREHOOK_ADMIN_KEY", code="usage"
            )
        if not url.startswith(("http://", "https://")):
            raise AppError(400, "--url must start with http:// or https://", code="usage")
        async with httpx.AsyncClient(
            base_url=url.rstrip("/"),
            headers={"authorization": f"Bearer {key}", "user-agent": "hirehook-cli"},
            timeout=TIMEOUT,
        ) as http:
            yield AdminClient(http, remote=True)
        return
    if TARGET.key:
        # Without a URL the command would run on this host's settings and ignore the key.
        raise AppError(
            400, "--key needs --url (or HIREHOOK_URL): which API is it for?", code="usage"
        )
    async with _in_process() as client:
        yield client


@asynccontextmanager
async def _in_process() -> AsyncIterator[AdminClient]:
    from app.admin.keys import local_operator
    from app.main import create_app

    settings = load_settings()
    # Fail here, as before any request, if the settings name no database or Redis.
    stores = (settings.database_dsn, settings.redis_dsn)
    app = create_app(settings, operator=local_operator(f"cli:{getpass.getuser()}"))
    async with app.router.lifespan_context(app), _refusals_unlogged():
        # A failure inside the app (PostgreSQL refusing) reaches the command as raised, so its
        # line names the store and the setting (app.cli.errors).
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=True)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://hirehook.local", timeout=TIMEOUT
        ) as http:
            yield AdminClient(http, remote=False, stores=_named_stores(*stores))


@asynccontextmanager
async def _refusals_unlogged() -> AsyncIterator[None]:
    """A refusal the app answers is this command's error line; the app's warning of it
    (``request.failed``) would print it twice, unless ``--verbose`` asks for the logs."""
    import logging

    logger = logging.getLogger("app.routers.common")
    level = logger.level
    if not VERBOSITY.verbose:
        logger.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        logger.setLevel(level)


def _named_stores(database: str, redis: str) -> str:
    from app.cli.errors import host_port

    return (
        f"PostgreSQL at {host_port(database)} (HIREHOOK_DATABASE_URL), "
        f"Redis at {host_port(redis)} (HIREHOOK_REDIS_URL)"
    )


def _params(params: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in params.items():
        if value is None:
            continue
        if isinstance(value, BaseModel):
            out.update(_params(value.model_dump(exclude_none=True)))
        elif isinstance(value, bool):
            out[name] = "true" if value else "false"
        elif isinstance(value, datetime):
            out[name] = value.isoformat()
        elif isinstance(value, Enum):
            out[name] = value.value
        else:
            out[name] = value
    return out


def _body(body: Any) -> Any:
    if isinstance(body, BaseModel):
        # Only what was given: the API tells "absent" from "null" (a connection's account).
        return body.model_dump(mode="json", exclude_unset=True)
    return body


def _message(response: httpx.Response) -> str | None:
    """The API's message in an error answer (ours, or FastAPI's own ``detail``)."""
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        if isinstance(body.get("detail"), str):
            return str(body["detail"])
    return None


def _origin(response: httpx.Response) -> str:
    url = response.request.url
    return f"{url.scheme}://{url.host}" + (f":{url.port}" if url.port else "")
