"""The sources this build knows: one :class:`Source` per ATS, and nothing that imports FastAPI.

Adding a source: a schema module, a verifier and a client if it needs them, a worker handler if
it enriches, a router module, a module here with its descriptor (naming the router, its paths
and OpenAPI tags) and sample sender, and one line in ``REGISTRY`` below. Mounting, the request
context and the OpenAPI tags come from here (``app.main``).
"""

from __future__ import annotations

from app.clients.budget import Limits
from app.platform.settings import Settings
from app.services import Services
from app.sources.base import Source
from app.sources.cloudelements import CLOUDELEMENTS
from app.sources.hmac import HMAC
from app.sources.hrmanager import HRMANAGER
from app.sources.icims import ICIMS
from app.sources.keldair import KELDAIR
from app.sources.smartrecruiters import SMARTRECRUITERS
from app.workers.context import RecordHandler

REGISTRY: dict[str, Source] = {
    s.name: s for s in (KELDAIR, ICIMS, HRMANAGER, SMARTRECRUITERS, CLOUDELEMENTS, HMAC)
}


def limits() -> dict[str, Limits]:
    """Each source's published API limits."""
    return {name: s.limits for name, s in REGISTRY.items() if s.limits is not None}


def handlers() -> dict[str, RecordHandler]:
    """Each source's enrichment handler."""
    return {name: s.handler for name, s in REGISTRY.items() if s.handler is not None}


def stored_headers() -> dict[str, frozenset[str]]:
    """Each source's request headers kept with its records (beside the common ones)."""
    return {name: s.stored_headers for name, s in REGISTRY.items()}


def paths() -> dict[str, str]:
    """Every source's route path prefixes -> the label their requests are counted under."""
    return {prefix: label for s in REGISTRY.values() for prefix, label in s.paths.items()}


def tenant_in_path() -> frozenset[str]:
    """The labels whose routes name the tenant in their path (/v1/<label>/<tenant>/...)."""
    return frozenset(
        label for s in REGISTRY.values() if s.tenant_in_path for label in s.paths.values()
    )


def routers() -> list[str]:
    """The modules of the sources' routers, in registry order, for app.main to mount."""
    return [s.router for s in REGISTRY.values() if s.router is not None]


def openapi_tags() -> list[tuple[str, str]]:
    """The sources' OpenAPI tags, (name, description), in registry order."""
    return [tag for s in REGISTRY.values() for tag in s.openapi_tags]


def create_services(settings: Settings) -> Services:
    """A process's services, with every source's API limits and stored headers."""
    return Services.create(settings, limits(), stored_headers())


__all__ = [
    "REGISTRY",
    "Source",
    "create_services",
    "handlers",
    "limits",
    "openapi_tags",
    "paths",
    "routers",
    "stored_headers",
    "tenant_in_path",
]
