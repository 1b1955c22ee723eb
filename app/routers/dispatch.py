"""The event routes, called straight from the ASGI scope under the request context.

Between :class:`~app.routers.request_context.RequestContext` (the app's outermost layer, see
``app.main``) and an event route, Starlette and FastAPI run the server-error, telemetry,
body-limit and exception middleware, FastAPI's exit-stack middleware, the router (which tries
each included router's routes to choose it, then again to choose within it) and FastAPI's
``request_response`` (a Request, the exception wrapper, two exit stacks): about a fifth of an
accepted event's CPU in the API (bench/README.md, "API profile"). None of it does anything for
an event route: its route class renders every refusal itself
(:func:`app.routers.common.error_route`), and anything else it raises reaches the request
context, which answers the plain 500 Starlette's server-error middleware would. So a request
under an event prefix that one of its source's routes takes is answered by that route's
``direct_handle`` from here; everything else (no route takes the path or its method, a route
whose endpoint FastAPI must solve, dependency overrides set by a test) goes down the stack as
before, and gets the same 404, 405 or answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import Request
from fastapi.routing import iter_route_contexts
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from app.platform.metrics import OTHER
from app.routers.common import ErrorRoute, Handler
from app.routers.request_context import source_in

Routes = tuple[tuple[ErrorRoute, Handler], ...]


def event_routes(routes: Sequence[BaseRoute], paths: Mapping[str, str]) -> dict[str, Routes]:
    """For each source label of ``paths`` (prefix -> label, from the registry), the routes of
    ``routes`` (an app's, as its router tries them) to try for a path under its prefixes, with
    their handles, in the router's order.

    A source's list ends before the first route whose path template could take a path under
    its prefixes but that cannot be called from here (it is no direct route, it was included
    under another path, or FastAPI caps its body itself): the router would try that one before
    any that follow."""
    prefixes: dict[str, list[str]] = {}
    for prefix, source in paths.items():
        prefixes.setdefault(source, []).append(prefix)
    found: dict[str, list[tuple[ErrorRoute, Handler]]] = {source: [] for source in prefixes}
    ended: set[str] = set()
    every = [p for under in prefixes.values() for p in under]
    for context in iter_route_contexts([r for r in routes if _may_serve(r, every)]):
        path = context.path
        route = context.original_route
        # Up to its first parameter, a template is literal: only paths starting so can match.
        head = path.split("{", 1)[0] if path is not None else ""
        for source, under in prefixes.items():
            if source in ended or not _overlaps(head, under):
                continue
            if (
                not isinstance(route, ErrorRoute)
                or route.direct_handle is None
                or path != route.path
                or context.max_body_size is not None
                or not any(head.startswith(p) for p in under)
            ):
                ended.add(source)
                continue
            found[source].append((route, route.direct_handle))
    return {source: tuple(routes) for source, routes in found.items()}


def _may_serve(route: BaseRoute, prefixes: Sequence[str]) -> bool:
    """Whether ``route`` may take a path under one of ``prefixes``: False only for a router
    included under a path that cannot (the admin API, the console), which is left out before
    FastAPI builds its routes' contexts (their parameters' models: ~0.25 s for the admin API,
    spent on an app's first event request, and then never used)."""
    router = getattr(route, "original_router", None)
    include = getattr(route, "include_context", None)
    if router is None or include is None:
        return True
    return _overlaps(f"{include.prefix}{router.prefix}", prefixes)


def _overlaps(head: str, prefixes: Sequence[str]) -> bool:
    """Whether a path starting with ``head`` may also start with one of ``prefixes``."""
    return any(p.startswith(head) or head.startswith(p) for p in prefixes)


class EventDispatch:
    """Answers the event routes' requests with their routes' handles, below
    :class:`~app.routers.request_context.RequestContext` (whose source label it reads)."""

    def __init__(self, app: ASGIApp, *, paths: Mapping[str, str]) -> None:
        self.app = app
        self.paths = dict(paths)
        # Built on the first request, from the app the scope names: a middleware is given
        # only the layer below it.
        self._routes: dict[str, Routes] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        source = source_in(scope) if scope["type"] == "http" else OTHER
        app: Any = scope.get("app")
        if source != OTHER and app is not None and not app.dependency_overrides:
            if self._routes is None:
                self._routes = event_routes(app.router.routes, self.paths)
            for route, handle in self._routes.get(source, ()):
                match, child_scope = route.matches(scope)
                if match is Match.FULL:
                    # What the router leaves for the route: "route", "endpoint" and
                    # "path_params" (child_scope), and itself.
                    scope.update(child_scope)
                    scope.setdefault("router", app.router)
                    response = await handle(Request(scope, receive, send))
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)
