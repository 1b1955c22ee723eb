"""SmartRecruiters Customer API: candidates and jobs by id.

[C] ``GET /candidates/{id}`` and ``GET /jobs/{id}`` on ``https://api.smartrecruiters.com``,
authenticated with ``X-SmartToken`` (or an OAuth bearer token); 10 requests/s and 8 concurrent
per credential, and ``GET /candidates`` one at a time (docs/ats/smartrecruiters.md).
"""

from __future__ import annotations

from urllib.parse import quote

import httpx

from app.clients.base import ApiClient, ApiError, BudgetKey, Document, RateBudget
from app.clients.budget import Limits, RouteLimits
from app.intake.connections import ConnectionInfo
from app.schemas.smartrecruiters_config import SmartRecruitersConfig, SmartRecruitersSecrets

SOURCE = "smartrecruiters"
DEFAULT_BASE_URL = "https://api.smartrecruiters.com"
CANDIDATES_ROUTE = "GET /candidates"
# [C] 10 requests per second per credential, counted so that no 1 s window holds more (a
# client's token bucket with a burst of 10 drew 429s). [I] The one-at-a-time limit is
# documented for GET /candidates; we apply it to every GET /candidates/... call too, the safe
# reading. options.limits.routes can relax it. [I] X-RateLimit-Remaining is read as what is
# left of the current 1 s window (the documented headers do not name their window).
DEFAULT_LIMITS = Limits(
    rate_per_s=10,
    window_s=1.0,
    burst=10,
    concurrency=8,
    rate_limit_headers="window",
    routes={CANDIDATES_ROUTE: RouteLimits(concurrency=1)},
)


def auth_headers(secrets: SmartRecruitersSecrets) -> dict[str, str] | None:
    """The headers that carry the connection's credential ([C] ``X-SmartToken``, or an OAuth
    bearer token), with ``accept``; None when it has neither."""
    if secrets.api_key:
        headers = {"X-SmartToken": secrets.api_key}
    elif secrets.access_token:
        headers = {"Authorization": f"Bearer {secrets.access_token}"}
    else:
        return None
    headers["accept"] = "application/json"
    return headers


class SmartRecruitersClient(ApiClient):
    """One tenant's SmartRecruiters API, spending that tenant's budget."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        budget: RateBudget,
        connection: ConnectionInfo,
        config: SmartRecruitersConfig,
    ) -> None:
        super().__init__(http, budget, BudgetKey(connection.tenant_id, SOURCE))
        headers = auth_headers(config.secrets)
        if headers is None:
            raise ApiError(
                "smartrecruiters: no credentials (secrets.api_key or secrets.access_token)",
                transient=False,
                config_problem=True,
            )
        self._headers = headers
        self._base = (config.options.base_url or DEFAULT_BASE_URL).rstrip("/")

    async def candidate(self, candidate_id: str) -> Document:
        """One candidate, with its primary and secondary assignments (applications)."""
        return await self.get_document(
            f"{self._base}/candidates/{quote(candidate_id, safe='')}",
            what=f"smartrecruiters candidate {candidate_id}",
            route=CANDIDATES_ROUTE,
            headers=self._headers,
        )

    async def job(self, job_id: str) -> Document:
        """One job."""
        return await self.get_document(
            f"{self._base}/jobs/{quote(job_id, safe='')}",
            what=f"smartrecruiters job {job_id}",
            headers=self._headers,
        )
