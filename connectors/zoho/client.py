"""The Zoho Books API adapter: authenticated, rate-limited GETs at the integration's api_domain.

Every body carries `code` (0 = success) and `message`, also under HTTP 200, and is
checked. Bodies are parsed with exact numbers (Decimal amounts, integer ids).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx

from connectors.zoho.errors import DailyLimitReached, ZohoApiError, ZohoUnavailable
from connectors.zoho.oauth import AccessTokenProvider
from connectors.zoho.ratelimit import RateLimiter

__all__ = ["ZohoBooksClient"]

MAX_PER_PAGE = 200


class ZohoBooksClient:
    """One organization of one integration.

    A 429 for the per-minute or concurrency limit is retried after the limiter's
    backoff (up to `throttle_retries` times), a 401 once after a token refresh; a
    spent daily quota raises `DailyLimitReached` at once.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        api_domain: str,
        organization_id: str,
        tokens: AccessTokenProvider,
        limiter: RateLimiter,
        *,
        throttle_retries: int = 10,
    ):
        self._http = http
        self._base = api_domain.rstrip("/") + "/books/v3"
        self.organization_id = organization_id
        self._tokens = tokens
        self.limiter = limiter
        self._throttle_retries = throttle_retries

    async def organizations(self) -> list[dict[str, Any]]:
        """Every organization the token reaches; the user picks one (never the first)."""
        body = await self._get("/organizations", {}, with_organization=False)
        return list(body.get("organizations") or [])

    async def list_invoices(
        self,
        page: int = 1,
        per_page: int = MAX_PER_PAGE,
        sort_column: str = "last_modified_time",
        sort_order: str = "D",
        **filters: str,
    ) -> tuple[list[dict[str, Any]], bool]:
        """One page of invoices (no line items) and whether another page follows."""
        if not 1 <= per_page <= MAX_PER_PAGE:
            raise ValueError(f"per_page must be 1..{MAX_PER_PAGE}")
        params = {
            "page": str(page),
            "per_page": str(per_page),
            "sort_column": sort_column,
            "sort_order": sort_order,
            **filters,
        }
        body = await self._get("/invoices", params)
        context = body.get("page_context") or {}
        return list(body.get("invoices") or []), bool(context.get("has_more_page"))

    async def invoice(self, invoice_id: str) -> dict[str, Any]:
        """The invoice with line items and taxes."""
        body = await self._get(f"/invoices/{invoice_id}", {})
        invoice = body.get("invoice")
        if not isinstance(invoice, dict):
            raise ZohoApiError(-1, f"answer for invoice {invoice_id} has no invoice object")
        return invoice

    async def _get(
        self, path: str, params: dict[str, str], *, with_organization: bool = True
    ) -> dict[str, Any]:
        if with_organization:
            params = {**params, "organization_id": self.organization_id}
        throttles = 0
        refreshed = False
        while True:
            async with self.limiter.slot():
                token = await self._tokens.access_token()
                # httpx percent-encodes params, so a "+" in an offset travels as %2B.
                try:
                    response = await self._http.get(
                        self._base + path,
                        params=params,
                        headers={"Authorization": f"Zoho-oauthtoken {token}"},
                    )
                except httpx.HTTPError as failure:
                    raise ZohoUnavailable(
                        -1, f"{self._base} unreachable: {type(failure).__name__}"
                    ) from failure
            self.limiter.observe(response.headers)
            body = _body(response)
            code = _code(body)
            if response.status_code == 429:
                error = self.limiter.throttled(code, _message(body), response.headers)
                throttles += 1
                if isinstance(error, DailyLimitReached) or throttles > self._throttle_retries:
                    raise error
                continue  # the limiter now holds every call back for the backoff
            if response.status_code == 401 and not refreshed:
                self._tokens.invalidate(token)
                refreshed = True
                continue
            if code != 0 or response.status_code >= 400:
                raise ZohoApiError(
                    code if code != 0 else -1, _message(body), http_status=response.status_code
                )
            return body


def _body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = json.loads(response.content, parse_float=Decimal)
    except (UnicodeDecodeError, json.JSONDecodeError):
        body = None
    if not isinstance(body, dict):
        raise ZohoApiError(
            -1,
            f"answer is not a JSON object: {response.content[:200]!r}",
            http_status=response.status_code,
        )
    return body


def _code(body: dict[str, Any]) -> int:
    try:
        return int(body.get("code", -1))
    except (TypeError, ValueError):
        return -1


def _message(body: dict[str, Any]) -> str:
    return str(body.get("message") or "no message")
