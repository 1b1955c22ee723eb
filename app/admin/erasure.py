"""Erasure of one candidate's data on the operator's request."""

from __future__ import annotations

import structlog
from redis.exceptions import RedisError

from app.admin import privacy
from app.admin import schemas as s
from app.admin.common import not_found
from app.platform.errors import AppError
from app.services import Services
from app.sources import REGISTRY

log = structlog.get_logger(__name__)


async def erase_candidate(
    services: Services, *, request: s.ErasureRequest, actor: str
) -> s.ErasureView:
    """Erase everything stored about one candidate (app.admin.privacy), audited under ``actor``."""
    if request.source not in REGISTRY:
        raise AppError(
            400, f"Unknown source; one of {', '.join(sorted(REGISTRY))}.", code="invalid_request"
        )
    try:
        report = await privacy.erase(
            services.engine,
            services.queue.redis,
            tenant=request.tenant,
            source=request.source,
            candidate_id=request.candidate_id,
            actor=actor,
            email=request.email,
        )
    except privacy.UnknownTenantError:
        raise not_found(f"Tenant {request.tenant!r}") from None
    except (RedisError, OSError, TimeoutError) as exc:
        # Nothing was erased: the cached documents go before the transaction commits.
        raise AppError(
            503, "Redis did not answer; nothing was erased. Please retry.", type(exc).__name__
        ) from exc
    log.info("admin.candidate_erased", tenant=request.tenant, source=request.source)
    return s.ErasureView.model_validate(report, from_attributes=True)
