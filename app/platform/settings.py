"""Every setting in one place, read from the environment with the ``HIREHOOK_`` prefix."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, PostgresDsn, RedisDsn, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Environment = Literal["development", "test", "production"]

# A key that is printed in the README must never protect production data.
DEVELOPMENT_SECRET_KEY = "hirehook-development-only-key-do-not-use-in-production"  # noqa: S105


class Settings(BaseSettings):
    """Runtime configuration; see docs/configuration.md for each variable."""

    model_config = SettingsConfigDict(env_prefix="HIREHOOK_", env_file=".env", extra="ignore")

    environment: Environment = "production"
    database_url: PostgresDsn | None = None
    redis_url: RedisDsn | None = None
    # Comma-separated; the first key encrypts, every key decrypts (rotation).
    secret_key: SecretStr | None = None

    tenants_file: Path | None = None
    # Hosts (names, addresses or CIDR networks, comma-separated) exempt from the outbound-URL
    # policy (app/platform/outbound.py): http:// and link-local addresses are then accepted for
    # them.
    outbound_allow: str = ""
    public_base_url: str = "http://127.0.0.1:8000"
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_workers: int = Field(default=1, ge=1)
    # Connection limits (app/server.py). Senders open a connection per event or reuse it
    # briefly, so an idle connection is soon closed.
    api_keepalive_s: int = Field(default=5, ge=1)
    # From accepting a connection, or from the first byte of a later request on it, to the
    # request's last header: a client that sends nothing or trickles headers is dropped.
    api_header_timeout_s: float = Field(default=10.0, gt=0)
    api_max_header_bytes: int = Field(default=64 * 1024, ge=1024)
    # An answer sent before its request's body was read (a body over the cap) is followed by
    # reading and discarding the rest of the body, for at most this long and this much, so a
    # client that writes the whole body before reading gets the answer, not a reset. The time
    # is the real bound (as nginx's lingering_time); the bytes only stop a fast flood early,
    # and nothing read is kept, so they sit well above what senders post by mistake.
    api_linger_s: float = Field(default=5.0, gt=0, le=60)
    api_linger_bytes: int = Field(default=64 * 1024 * 1024, ge=0)
    # Per process; a request on a further connection is answered 503. Keep `ulimit -n`
    # well above it: the database pool, Redis and refused connections need descriptors too.
    api_max_connections: int = Field(default=500, ge=1)
    api_backlog: int = Field(default=2048, ge=1)
    # On shutdown, requests in flight get this long: above the request deadline so none is
    # cut short, below the common 30 s before a supervisor kills the process.
    api_shutdown_timeout_s: int = Field(default=28, ge=1)

    # Senders give up after 30 s; answering inside 25 s leaves room for the network.
    request_deadline_s: float = Field(default=25.0, gt=0, le=29)
    # The longest an event request waits for PostgreSQL: the connection lookup, and then the
    # recording's pool checkout, connect and statements together. A database that does not
    # answer costs a sender this long, then a 503 (the timeouts below bound everything else).
    db_request_timeout_s: float = Field(default=2.0, gt=0)
    db_connect_timeout_s: float = Field(default=3.0, gt=0)
    db_statement_timeout_s: float = Field(default=5.0, gt=0)
    db_pool_size: int = Field(default=20, ge=1)
    db_pool_timeout_s: float = Field(default=3.0, gt=0)
    redis_timeout_s: float = Field(default=0.5, gt=0)
    # Group commit (app/platform/group_commit.py): how many batches of records may be in flight at
    # once
    # (each on its own pooled connection) and how many records one batch may hold. Requests
    # queue only while every writer is busy, so these bound the work, not the latency.
    intake_batch_writers: int = Field(default=2, ge=1)
    intake_batch_max: int = Field(default=256, ge=1, le=5000)
    # Committed records' jobs are published at once while the API is quiet, and at most this
    # often under load, each job carrying what committed since (app/intake/publisher.py).
    intake_publish_interval_s: float = Field(default=0.02, ge=0, le=1)

    # Brute-force guard on inbound credentials (app/intake/guard.py), shared by replicas via
    # Redis: a
    # client id or address failing more often than its limit within the window has its
    # failures answered 429 for auth_block_s. Right credentials are always accepted.
    auth_failure_limit_per_client: int = Field(default=20, ge=1)
    # One address may front many senders (an ATS's egress, a proxy that hides clients'
    # addresses), so this limit is looser, and 0 turns it off.
    auth_failure_limit_per_address: int = Field(default=60, ge=0)
    auth_failure_window_s: float = Field(default=60.0, gt=0, le=3600)
    auth_block_s: float = Field(default=300.0, gt=0, le=86400)
    # An address past auth_failure_delay_after failures in the window has each further refusal
    # (401, or the 429 of a block) held this long before it is sent. A sender that waits for
    # its answer, as every HTTP client does, then costs one refusal per connection per delay,
    # whatever rate it could otherwise drive; a misconfigured ATS's first failures are answered
    # at once. Held answers are capped per process (auth_failure_delay_max_held), past which
    # refusals are answered at once, so holding never takes all the connection slots.
    auth_failure_delay_s: float = Field(default=1.0, ge=0, le=30)
    auth_failure_delay_after: int = Field(default=5, ge=0)
    # A flood spread over many addresses never makes one address fail often: past this many
    # refusals a second in one API process, every further refusal that second is held, from
    # whichever address. 0 turns this off.
    auth_failure_delay_above_per_s: int = Field(default=50, ge=0)
    auth_failure_delay_max_held: int = Field(default=200, ge=0)

    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    # Real events are a few KB: a request may inflate to this much, and no more than this many
    # times its wire size (gzip bombs are refused long before they cost memory).
    max_decompressed_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_compression_ratio: int = Field(default=100, ge=2)

    # Worker side.
    # A worker process serves its Prometheus metrics on this port (none when unset); every
    # worker process is its own scrape target (docs/observability.md).
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    worker_metrics_host: str = "0.0.0.0"  # noqa: S104 - scraped from other pods
    worker_concurrency: int = Field(default=20, ge=1)
    # A worker starts queued jobs only when it polls: at most worker_concurrency per poll.
    worker_poll_delay_s: float = Field(default=0.05, gt=0)
    job_timeout_s: float = Field(default=30.0, gt=0)
    sweep_interval_s: int = Field(default=10, ge=1, le=60)
    outbox_grace_s: float = Field(default=15.0, ge=0)
    connection_cache_ttl_s: float = Field(default=5.0, ge=0)

    # Personal data (docs/privacy.md). Days a record's bodies, the normalized documents and
    # the delivery bodies are kept, for tenants that set no retention_days; unset: kept.
    retention_days: int | None = Field(default=None, ge=1)
    # Finished work rows are deleted this long after they were done.
    outbox_keep_hours: float = Field(default=24.0, ge=0)
    delivery_keep_days: float = Field(default=7.0, ge=0)
    # Rows per statement of the purge and clean-up jobs: short transactions, short locks.
    purge_batch_size: int = Field(default=1000, ge=1, le=100_000)
    # Minutes of the hour at which the privacy maintenance job runs (comma-separated).
    maintenance_minutes: str = Field(default="17,47", pattern=r"^\d{1,2}(,\d{1,2})*$")

    # Outbound ATS API calls.
    api_call_timeout_s: float = Field(default=10.0, gt=0)
    document_cache_ttl_s: float = Field(default=300.0, gt=0)

    # Enrichment. A worker that dies mid-job is replaced after job_timeout_s + this margin.
    worker_lease_margin_s: float = Field(default=5.0, gt=0)
    enrich_max_attempts: int = Field(default=8, ge=1)
    enrich_retry_base_s: float = Field(default=2.0, gt=0)
    enrich_retry_cap_s: float = Field(default=600.0, gt=0)
    # Events about one resource received this close to a fetch reuse its document.
    coalesce_window_s: float = Field(default=2.0, ge=0)
    # How long one fetch may hold a resource before others stop waiting for it.
    coalesce_lock_s: float | None = Field(default=None, gt=0)
    # Longer waits for the rate budget are turned into a deferred retry, not a sleep.
    budget_max_wait_s: float = Field(default=5.0, ge=0)
    # For sources without published limits, unless a connection sets its own.
    default_rate_per_s: float = Field(default=5.0, gt=0)
    default_burst: int = Field(default=5, ge=1)
    default_concurrency: int = Field(default=4, ge=1)

    # Delivery of normalized events to the tenant's destination (Standard Webhooks timing).
    delivery_timeout_s: float = Field(default=15.0, gt=0)
    delivery_retry_schedule_s: list[float] = Field(
        default=[5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400], min_length=1
    )

    log_level: str = "INFO"
    log_format: Literal["console", "json"] = "json"

    @model_validator(mode="after")
    def _console_logs_in_development(self) -> Settings:
        # JSON is for log collectors; a developer reads the console form unless told otherwise.
        if self.environment == "development" and "log_format" not in self.model_fields_set:
            self.log_format = "console"
        return self

    @model_validator(mode="after")
    def _require_real_key_outside_development(self) -> Settings:
        if self.environment != "development" and self.secret_key is None:
            raise ValueError(
                "HIREHOOK_SECRET_KEY must be set outside development: it encrypts ATS "
                "credentials at rest. Generate one with `hirehook keygen`."
            )
        if (
            self.environment == "production"
            and self.secret_key is not None
            and DEVELOPMENT_SECRET_KEY in self.secret_key.get_secret_value()
        ):
            raise ValueError("HIREHOOK_SECRET_KEY is the published development key.")
        return self

    @property
    def secret_keys(self) -> list[str]:
        """Keys in rotation order; the development key when none is configured."""
        if self.secret_key is None:
            return [DEVELOPMENT_SECRET_KEY]
        return [k.strip() for k in self.secret_key.get_secret_value().split(",") if k.strip()]

    @property
    def outbound_allow_list(self) -> list[str]:
        """``outbound_allow`` as a list of hosts, addresses and networks."""
        return [h.strip() for h in self.outbound_allow.split(",") if h.strip()]

    @property
    def worker_lease_s(self) -> float:
        """How long a running job is presumed alive; after that another worker takes it."""
        return self.job_timeout_s + self.worker_lease_margin_s

    @property
    def claim_slack_s(self) -> float:
        """How far ahead a row may be due and still be claimed by a batch job
        (app.store.work.claim_many): past the sweeper's hold on what it republishes."""
        return self.sweep_interval_s + 1.0

    @property
    def coalesce_lock_ttl_s(self) -> float:
        """How long one fetch holds a resource; a dead holder blocks others no longer."""
        return self.coalesce_lock_s or self.api_call_timeout_s + 2.0

    @property
    def database_dsn(self) -> str:
        """The SQLAlchemy URL for the asyncpg driver."""
        if self.database_url is None:
            raise RuntimeError("HIREHOOK_DATABASE_URL is not set (use `hirehook dev` for one)")
        url = str(self.database_url)
        for prefix in ("postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+asyncpg://" + url[len(prefix) :]
        return url

    @property
    def redis_dsn(self) -> str:
        """The Redis URL."""
        if self.redis_url is None:
            raise RuntimeError("HIREHOOK_REDIS_URL is not set (use `hirehook dev` for one)")
        return str(self.redis_url)


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
