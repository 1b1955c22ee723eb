"""The sources this build knows: one :class:`Source` per ATS, and nothing that imports FastAPI.

Adding a source: a schema module, a verifier and a client if it needs them, a worker handler,
a module here with its descriptor and sample sender, a router mounted by ``app.main``, and one
line in ``REGISTRY`` below.
"""

from __future__ import annotations

from app.clients.budget import Limits
from app.services import Services
from app.settings import Settings
from app.sources.base import Source
from app.sources.cloudelements import CLOUDELEMENTS
from app.sources.hrmanager import HRMANAGER
from app.sources.icims import ICIMS
from app.sources.keldair import KELDAIR
from app.sources.smartrecruiters import SMARTRECRUITERS
from app.workers.context import RecordHandler

REGISTRY: dict[str, Source] = {
    s.name: s for s in (KELDAIR, ICIMS, HRMANAGER, SMARTRECRUITERS, CLOUDELEMENTS)
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


def create_services(settings: Settings) -> Services:
    """A process's services, with every source's API limits and stored headers."""
    return Services.create(settings, limits(), stored_headers())


__all__ = ["REGISTRY", "Source", "create_services", "handlers", "limits", "stored_headers"]
