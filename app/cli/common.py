"""What every command group shares: settings with logging configured, services for a command."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from app.settings import Settings


def load_settings() -> Settings:
    """Settings from the environment, with logging configured from them."""
    from app import outbound
    from app.logs import configure

    settings = Settings()
    configure(settings.log_level, settings.log_format)
    outbound.configure(outbound.OutboundPolicy.from_settings(settings))
    return settings


async def with_services(settings: Settings, action: Callable[[Any], Awaitable[Any]]) -> Any:
    """Run ``action(services)`` with a process's services, closed afterwards."""
    from app.sources import create_services

    services = create_services(settings)
    try:
        return await action(services)
    finally:
        await services.close()
