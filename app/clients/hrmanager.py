"""Talentech HR Manager (TalentRecruiter) REST API v2: candidates, positions and users by id.

[C] ``https://recruiter-api.hr-manager.net/restful.svc/v2/{CUSTOMER-ALIAS}/Candidates/`` (also
``Positions/``, ``Departments/``, ``Users/``) with the key in an ``apikey`` header
(docs/ats/hrmanager.md). [I] Fetching one resource as ``Candidates/{id}``, ``Positions/{id}`` and
``Users/{id}`` is assumed; a connection may name other paths in ``options.candidate_path`` /
``position_path`` / ``user_path`` (app/schemas/hrmanager_config.py). No webhook event names a
department, so ``Departments/`` is not called.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from app.clients.base import ApiClient, ApiError, BudgetKey, Document, RateBudget
from app.clients.budget import Limits
from app.intake.connections import ConnectionInfo
from app.schemas.hrmanager import SOURCE
from app.schemas.hrmanager_config import HRManagerConfig

DEFAULT_BASE_URL = "https://recruiter-api.hr-manager.net/restful.svc/v2"
# [I] HR Manager publishes no figures, only that "API limits still apply": stay modest (5 in
# any second), and let each connection set its own in options.limits. What its
# X-RateLimit-Remaining would count, if it sends one, is not published either: ignored unless a
# connection says (options.limits.rate_limit_headers).
DEFAULT_LIMITS = Limits(rate_per_s=5, burst=5, concurrency=4, rate_limit_headers="none")


class HRManagerClient(ApiClient):
    """One tenant's HR Manager API, spending that tenant's budget."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        budget: RateBudget,
        connection: ConnectionInfo,
        config: HRManagerConfig,
    ) -> None:
        super().__init__(http, budget, BudgetKey(connection.tenant_id, SOURCE))
        options = config.options
        alias = options.customer_alias or connection.account
        api_key = config.secrets.api_key
        if not alias:
            raise ApiError(
                "hrmanager: no customer alias (options.customer_alias or account)",
                transient=False,
                config_problem=True,
            )
        if not api_key:
            raise ApiError(
                "hrmanager: no API key (secrets.api_key)", transient=False, config_problem=True
            )
        base = (options.base_url or DEFAULT_BASE_URL).rstrip("/")
        self._root = f"{base}/{quote(alias, safe='')}"
        self._headers = {"apikey": api_key, "accept": "application/json"}
        self._paths = {
            "candidate": options.candidate_path or "Candidates/{id}",
            "position": options.position_path or "Positions/{id}",
            "user": options.user_path or "Users/{id}",
        }

    async def candidate(self, candidate_id: str) -> Document:
        """One candidate (Id, FirstName, LastName, Email, PositionList, ...)."""
        return await self._one("candidate", candidate_id)

    async def position(self, position_id: str) -> Document:
        """One position."""
        return await self._one("position", position_id)

    async def user(self, user_id: str) -> Document:
        """One HR Manager user (a recruiter)."""
        return await self._one("user", user_id)

    async def _one(self, kind: str, external_id: str) -> Document:
        path = self._paths[kind].format(id=quote(external_id, safe=""))
        what = f"hrmanager {kind} {external_id}"
        document = await self.get_document(f"{self._root}/{path}", what=what, headers=self._headers)
        body: Any = document.body
        # [I] A collection endpoint filtered to one id may answer with a one-element list.
        if isinstance(body, list):
            if not body:
                raise ApiError(f"{what}: not found", status=404, transient=False)
            body = body[0]
        if not isinstance(body, dict):
            raise ApiError(f"{what}: not a JSON object", status=200, transient=False)
        return Document(body, document.requested_at)
