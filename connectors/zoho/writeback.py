"""Writing the fiscal identifiers back onto the Zoho invoice, and what a failure means.

The customer prints the invoice from Zoho Books, so the fiscal number, ZKI, JIR and QR
URL must reach the invoice's custom fields (`PUT /invoice/{id}/customfields`, scope
`ZohoBooks.invoices.UPDATE`). Which custom field holds which value is the integration's
choice (`FieldMap`: role -> customfield_id, picked from `invoice_custom_fields()`).

A failure is either worth retrying (Zoho busy, throttled, down, the token window) or
needs the customer (reconnect for a missing scope or a dead grant, a custom field that
no longer exists, an invoice deleted in Zoho): retrying those only burns the quota.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from connectors.zoho.client import ZohoBooksClient
from connectors.zoho.errors import (
    ClientInvalid,
    OAuthError,
    RateLimited,
    RefreshLimitReached,
    TokenInvalid,
    ZohoApiError,
    ZohoError,
)

ROLES = ("fiscal_number", "zki", "jir", "qr_url")
"""What FiscoBridge writes back; the portal maps each to one of the customer's fields."""

SCOPE_MISSING = 57
TOKEN_INVALID = 14
NOT_FOUND = 1002


class Action(StrEnum):
    RETRY = "retry"
    NEEDS_CUSTOMER = "needs_customer"


@dataclass(frozen=True)
class Failure:
    action: Action
    reason: str
    retry_at: datetime | None = None


@dataclass(frozen=True)
class FieldMap:
    """role -> the customer's invoice customfield_id."""

    fields: Mapping[str, str]

    def __post_init__(self) -> None:
        unknown = set(self.fields) - set(ROLES)
        if unknown:
            raise ValueError(f"unknown write-back roles {sorted(unknown)}; one of {ROLES}")

    def values(self, written: Mapping[str, str]) -> dict[str, str]:
        """customfield_id -> value for the roles that are mapped (others are not written)."""
        return {self.fields[role]: value for role, value in written.items() if role in self.fields}


def classify(error: ZohoError) -> Failure:
    if isinstance(error, RefreshLimitReached | RateLimited):
        return Failure(Action.RETRY, str(error), error.retry_at)
    if isinstance(error, TokenInvalid | ClientInvalid):
        return Failure(
            Action.NEEDS_CUSTOMER,
            "Zoho no longer accepts this integration's authorization: reconnect Zoho Books",
        )
    if isinstance(error, OAuthError):
        if error.transient:
            return Failure(Action.RETRY, str(error))
        return Failure(Action.NEEDS_CUSTOMER, f"Zoho refused the authorization: {error}")
    if isinstance(error, ZohoApiError):
        if error.transient:
            return Failure(Action.RETRY, str(error))
        if error.http_status == 401 and error.code == SCOPE_MISSING:
            return Failure(
                Action.NEEDS_CUSTOMER,
                "the Zoho authorization lacks the permission to update invoices"
                " (ZohoBooks.invoices.UPDATE): reconnect Zoho Books to grant it",
            )
        if error.http_status == 401:
            return Failure(
                Action.NEEDS_CUSTOMER, "Zoho refuses the access token: reconnect Zoho Books"
            )
        if error.code == NOT_FOUND or error.http_status == 404:
            return Failure(
                Action.NEEDS_CUSTOMER,
                "the invoice no longer exists in Zoho Books, so the fiscal data cannot be"
                " written onto it",
            )
        return Failure(
            Action.NEEDS_CUSTOMER,
            f"Zoho refused the fiscal fields ({error.message}): check the custom fields"
            " mapped for write-back in the portal",
        )
    return Failure(Action.RETRY, str(error))


async def write_back(
    client: ZohoBooksClient, invoice_id: str, fields: FieldMap, written: Mapping[str, str]
) -> Failure | None:
    """Write the mapped values onto the invoice; None on success, else what to do."""
    values = fields.values(written)
    if not values:
        return Failure(
            Action.NEEDS_CUSTOMER,
            "no invoice custom field is mapped for the fiscal data: map them in the portal",
        )
    try:
        await client.update_custom_fields(invoice_id, values)
    except ZohoError as error:
        return classify(error)
    return None
