"""The Zoho Books API adapter: authenticated, rate-limited calls at the integration's
api_domain.

Every body carries `code` (0 = success) and `message`, also under HTTP 200, and is
checked. Bodies are parsed with exact numbers (Decimal amounts, integer ids).

Lists: a `sort_column` Zoho does not know is ignored, and the answer's
`page_context.sort_column` says what it applied instead (recorded: an undocumented
`last_modified_time` comes back as `created_time`). When a sort is asked for, the echo
is checked and a different one raises `SortNotHonoured`, never silently accepted.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx

from connectors.zoho.errors import DailyLimitReached, SortNotHonoured, ZohoApiError, ZohoUnavailable
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
        self.scopes_missing: set[str] = set()  # modules the grant was refused (401, code 57)

    async def organizations(self) -> list[dict[str, Any]]:
        """Every organization the token reaches; the user picks one (never the first)."""
        body = await self._get("/organizations", {}, with_organization=False)
        return list(body.get("organizations") or [])

    async def list_invoices(
        self,
        page: int = 1,
        per_page: int = MAX_PER_PAGE,
        sort_column: str | None = None,
        sort_order: str | None = None,
        **filters: str,
    ) -> tuple[list[dict[str, Any]], bool]:
        """One page of invoices (summaries: no line items) and whether another follows."""
        return await self._list(
            "/invoices", "invoices", page, per_page, sort_column, sort_order, filters
        )

    async def list_credit_notes(
        self,
        page: int = 1,
        per_page: int = MAX_PER_PAGE,
        sort_column: str | None = None,
        sort_order: str | None = None,
        **filters: str,
    ) -> tuple[list[dict[str, Any]], bool]:
        """One page of credit notes (summaries) and whether another follows."""
        return await self._list(
            "/creditnotes", "creditnotes", page, per_page, sort_column, sort_order, filters
        )

    async def invoice(self, invoice_id: str) -> dict[str, Any]:
        """The invoice with line items and taxes."""
        return await self._record(f"/invoices/{invoice_id}", "invoice", invoice_id)

    async def credit_note(self, creditnote_id: str) -> dict[str, Any]:
        """The credit note with line items, taxes and `invoices_credited[]`."""
        return await self._record(f"/creditnotes/{creditnote_id}", "creditnote", creditnote_id)

    async def contact(self, contact_id: str) -> dict[str, Any]:
        """`GET /contacts/{id}` (scope ZohoBooks.contacts.READ): the buyer's tax numbers
        and custom fields (connectors.zoho.contacts caches it)."""
        return await self._record(f"/contacts/{contact_id}", "contact", contact_id)

    async def invoice_payments(self, invoice_id: str) -> list[dict[str, Any]]:
        """Payments recorded against the invoice (its GET carries none), with payment_mode."""
        body = await self._request("GET", f"/invoices/{invoice_id}/payments", {})
        payments = body.get("payments")
        if not isinstance(payments, list):
            raise ZohoApiError(-1, f"answer for invoice {invoice_id} payments has no list")
        return payments

    async def taxes(self) -> list[dict[str, Any]]:
        """The organization's taxes: `GET /settings/taxes` (scope ZohoBooks.settings.READ),
        each with `tax_id`, `tax_name` and `tax_percentage`, for mapping each to what the
        tax authority is told (VAT, exempt, not subject, ...).

        The endpoint and those three keys are what integrators read (public client code);
        whether the answer is paged is *uncertain*: the first page is read, with Zoho's
        largest page size, which holds more taxes than an organization has.
        """
        body = await self._request("GET", "/settings/taxes",
                                   {"page": "1", "per_page": str(MAX_PER_PAGE)})
        taxes = body.get("taxes")
        if not isinstance(taxes, list):
            raise ZohoApiError(-1, "taxes answer has no list of taxes")
        return taxes

    async def invoice_custom_fields(self) -> list[dict[str, Any]]:
        """The organization's invoice custom fields, for mapping the write-back onto.

        `GET /settings/customfields?entity=invoice` is the endpoint integrators use; it
        is *uncertain* in Zoho's published reference, so the answer's list is read from
        `customfields` and, failing that, `custom_fields`.
        """
        return await self._custom_fields("invoice")

    async def credit_note_custom_fields(self) -> list[dict[str, Any]]:
        """The organization's credit note custom fields (Zoho keeps custom fields per
        module: a credit note's have ids of their own). `entity=creditnote` is
        *uncertain* as the invoice one is."""
        return await self._custom_fields("creditnote")

    async def _custom_fields(self, entity: str) -> list[dict[str, Any]]:
        body = await self._request("GET", "/settings/customfields", {"entity": entity})
        fields = body.get("customfields", body.get("custom_fields"))
        if not isinstance(fields, list):
            raise ZohoApiError(-1, f"{entity} custom fields answer has no list of fields")
        return fields

    async def update_custom_fields(
        self, invoice_id: str, values: dict[str, str]
    ) -> list[dict[str, Any]]:
        """`PUT /invoice/{id}/customfields` (singular `invoice`): a bare array of
        `{customfield_id, value}`. Keeps the invoice's status and lines."""
        body = await self._request(
            "PUT",
            f"/invoice/{invoice_id}/customfields",
            {},
            json_body=[{"customfield_id": k, "value": v} for k, v in values.items()],
        )
        return list(body.get("custom_fields") or [])

    async def update_credit_note_custom_fields(
        self, creditnote_id: str, values: dict[str, str]
    ) -> list[dict[str, Any]]:
        """`PUT /creditnotes/{id}` with only `custom_fields: [{customfield_id, value}]`
        (scope `ZohoBooks.creditnotes.UPDATE`).

        Source: Zoho Books API v3, Credit Notes, "Update a credit note"
        (https://www.zoho.com/books/api/v3/credit-notes/), whose arguments include
        `custom_fields`; its endpoint list has no per-credit-note `customfields` call
        like the invoice's. *Uncertain*: the reference does not say that a body with
        `custom_fields` alone keeps the credit note's lines and status, as a partial PUT
        on an invoice does (design/zoho-books.md); a refusal is classified like the
        invoice's and shown with Zoho's message.
        """
        body = await self._request(
            "PUT",
            f"/creditnotes/{creditnote_id}",
            {},
            json_body={
                "custom_fields": [{"customfield_id": k, "value": v} for k, v in values.items()]
            },
        )
        note = body.get("creditnote")
        return list(note.get("custom_fields") or []) if isinstance(note, dict) else []

    async def invoice_comments(self, invoice_id: str) -> list[dict[str, Any]]:
        """`GET /invoices/{id}/comments` ("List invoice comments & history"): comments and
        history entries, each with a `description`."""
        body = await self._request("GET", f"/invoices/{invoice_id}/comments", {})
        comments = body.get("comments")
        if not isinstance(comments, list):
            raise ZohoApiError(-1, f"answer for invoice {invoice_id} comments has no list")
        return comments

    async def add_comment(
        self, invoice_id: str, text: str, *, show_to_client: bool = False
    ) -> dict[str, Any]:
        body = await self._request(
            "POST",
            f"/invoices/{invoice_id}/comments",
            {},
            json_body={"description": text, "show_comment_to_clients": show_to_client},
        )
        return dict(body.get("comment") or {})

    async def _list(
        self,
        path: str,
        key: str,
        page: int,
        per_page: int,
        sort_column: str | None,
        sort_order: str | None,
        filters: dict[str, str],
    ) -> tuple[list[dict[str, Any]], bool]:
        if not 1 <= per_page <= MAX_PER_PAGE:
            raise ValueError(f"per_page must be 1..{MAX_PER_PAGE}")
        params = {"page": str(page), "per_page": str(per_page), **filters}
        if sort_column is not None:
            params["sort_column"] = sort_column
        if sort_order is not None:
            params["sort_order"] = sort_order
        body = await self._request("GET", path, params)
        context = body.get("page_context") or {}
        for asked, echo in ((sort_column, "sort_column"), (sort_order, "sort_order")):
            if asked is not None and context.get(echo) != asked:
                raise SortNotHonoured(
                    -1,
                    f"{path} was asked for {echo}={asked} but says it applied"
                    f" {context.get(echo)!r}: its pages cannot be read in that order",
                )
        return list(body.get(key) or []), bool(context.get("has_more_page"))

    async def _record(self, path: str, key: str, record_id: str) -> dict[str, Any]:
        body = await self._request("GET", path, {})
        record = body.get(key)
        if not isinstance(record, dict):
            raise ZohoApiError(-1, f"answer for {key} {record_id} has no {key} object")
        return record

    async def _get(
        self, path: str, params: dict[str, str], *, with_organization: bool = True
    ) -> dict[str, Any]:
        return await self._request("GET", path, params, with_organization=with_organization)

    async def _request(
        self,
        method: str,
        path: str,
        params: dict[str, str],
        *,
        json_body: Any = None,
        with_organization: bool = True,
    ) -> dict[str, Any]:
        if with_organization:
            params = {**params, "organization_id": self.organization_id}
        content = None if json_body is None else json.dumps(json_body).encode()
        throttles = 0
        refreshed = False
        while True:
            async with self.limiter.slot():
                token = await self._tokens.access_token()
                headers = {"Authorization": f"Zoho-oauthtoken {token}"}
                if content is not None:
                    headers["Content-Type"] = "application/json"
                # httpx percent-encodes params, so a "+" in an offset travels as %2B.
                try:
                    response = await self._http.request(
                        method, self._base + path, params=params, headers=headers, content=content
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
            if response.status_code == 401 and code != 57 and not refreshed:
                self._tokens.invalidate(token)  # 57: the scope is missing, a token won't help
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
