"""The long-lived objects a process shares, built once at start-up."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from app.clients.base import RateBudget
from app.clients.budget import ConnectionLimits, Limits, RedisBudget
from app.clients.document_cache import DocumentCache
from app.clients.http import OutboundClient, PolicyTransport
from app.intake.connections import ConnectionStore
from app.intake.core import Intake
from app.intake.guard import FailureLimiter
from app.intake.refusals import RefusalLog
from app.platform import outbound
from app.platform.crypto import Cipher
from app.platform.db import create_engine, settle_abandoned
from app.platform.outbound import OutboundPolicy
from app.platform.queue import Queue, create_redis
from app.platform.settings import Settings

_HTTP_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)


@dataclass(slots=True)
class Services:
    """Engine, queue, connection store and intake of one process."""

    settings: Settings
    engine: AsyncEngine
    # The same pool for single-statement work, where BEGIN/COMMIT would be wasted round trips.
    autocommit: AsyncEngine
    cipher: Cipher
    connections: ConnectionStore
    queue: Queue
    intake: Intake
    # Outbound calls to ATS APIs and vendor callbacks; one pool per process.
    http: httpx.AsyncClient
    budget: RateBudget
    cache: DocumentCache
    # Authentication failures per client and address, shared with every replica via Redis.
    guard: FailureLimiter
    # Refused requests counted in memory, written every few seconds (app.intake.refusals).
    refusals: RefusalLog = field(default_factory=RefusalLog)

    @classmethod
    def create(
        cls,
        settings: Settings,
        limits: Mapping[str, Limits] | None = None,
        stored_headers: Mapping[str, frozenset[str]] | None = None,
    ) -> Services:
        """Build every service; nothing connects until first used.

        ``limits`` are the published API limits per source and ``stored_headers`` the request
        headers each source keeps with its records (see :mod:`app.sources`); the caller passes
        them so this module depends on no source.
        """
        # The URLs this process calls are checked against its settings' policy, at load and send.
        outbound.configure(OutboundPolicy.from_settings(settings))
        engine = create_engine(settings)
        autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        cipher = Cipher(settings.secret_keys)
        queue = Queue(
            create_redis(settings.redis_dsn, settings.redis_timeout_s), settings.redis_timeout_s
        )
        connections = ConnectionStore(
            engine,
            cipher,
            settings.connection_cache_ttl_s,
            timeout_s=settings.db_request_timeout_s,
        )
        fallback = Limits(
            rate_per_s=settings.default_rate_per_s,
            burst=settings.default_burst,
            concurrency=settings.default_concurrency,
        )
        return cls(
            settings=settings,
            engine=engine,
            autocommit=autocommit,
            cipher=cipher,
            connections=connections,
            queue=queue,
            intake=Intake(
                autocommit,
                queue,
                db_timeout_s=settings.db_request_timeout_s,
                writers=settings.intake_batch_writers,
                max_batch=settings.intake_batch_max,
                publish_interval_s=settings.intake_publish_interval_s,
                stored_headers=stored_headers,
            ),
            # One client per process, so calls reuse kept-alive connections. Mounted, not
            # passed as the transport: proxies from the environment still take precedence.
            # OutboundClient keeps no cookies: it is shared by every tenant.
            http=OutboundClient(
                timeout=httpx.Timeout(settings.api_call_timeout_s, connect=3.0),
                limits=_HTTP_LIMITS,
                mounts={"all://": PolicyTransport(limits=_HTTP_LIMITS)},
                headers={"user-agent": "Hirehook/0.1"},
            ),
            budget=RedisBudget(
                queue.redis,
                ConnectionLimits(
                    connections, limits or {}, fallback, settings.connection_cache_ttl_s
                ),
                max_wait_s=settings.budget_max_wait_s,
                # A slot outlives the longest call, so a crashed holder frees it soon after.
                lease_s=settings.api_call_timeout_s + 1.0,
            ),
            cache=DocumentCache(queue.redis, settings.document_cache_ttl_s),
            guard=FailureLimiter.from_settings(queue.redis, settings),
        )

    async def close(self) -> None:
        """Release pools."""
        await self.intake.drain()
        await self.refusals.close(self.engine)
        await self.http.aclose()
        await self.queue.close()
        # Requests answered 503 may have left connections closing; let them finish first.
        await settle_abandoned(self.settings.db_connect_timeout_s)
        await self.engine.dispose()
