"""Writing the fiscal identifiers back onto the Zoho invoice, and what a failure means.

The customer prints the invoice from Zoho Books, so the fiscal number, ZKI, JIR and QR
URL must reach the invoice's custom fields (`PUT /invoice/{id}/customfields`, scope
`ZohoBooks.invoices.UPDATE`). Which custom field holds which value is the integration's
choice (`FieldMap`: role -> customfield_id, picked from `invoice_custom_fields()`).

A credit note is fiscalized as a storno of its own, printed from the credit note: its
values go into the credit note's custom fields (`PUT /creditnotes/{id}` with
`custom_fields`, scope `ZohoBooks.creditnotes.UPDATE`; see
`ZohoBooksClient.update_credit_note_custom_fields` for the source and what is
uncertain). Zoho keeps custom fields per module, so those are mapped apart, under the
roles `creditnote.<role>` (picked from `credit_note_custom_fields()`).

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
CREDIT_NOTE_PREFIX = "creditnote."
CREDIT_NOTE_ROLES = tuple(CREDIT_NOTE_PREFIX + role for role in ROLES)
"""The same values for a credit note's storno, mapped onto credit note custom fields."""
ALL_ROLES = ROLES + CREDIT_NOTE_ROLES

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
    """role -> the customer's customfield_id: an invoice field for ROLES, a credit note
    field for CREDIT_NOTE_ROLES."""

    fields: Mapping[str, str]

    def __post_init__(self) -> None:
        unknown = set(self.fields) - set(ALL_ROLES)
        if unknown:
            raise ValueError(f"unknown write-back roles {sorted(unknown)}; one of {ALL_ROLES}")

    def maps(self, *, credit_note: bool = False) -> bool:
        """Whether any field is mapped for this kind of document."""
        roles = CREDIT_NOTE_ROLES if credit_note else ROLES
        return any(role in self.fields for role in roles)

    def mapped_roles(self, *, credit_note: bool = False) -> set[str]:
        """The plain roles (ROLES) mapped for this kind of document."""
        prefix = CREDIT_NOTE_PREFIX if credit_note else ""
        return {role for role in ROLES if prefix + role in self.fields}

    def values(self, written: Mapping[str, str], *, credit_note: bool = False) -> dict[str, str]:
        """customfield_id -> value for the roles (plain ROLES names in `written`) that are
        mapped for this kind of document; others are not written."""
        prefix = CREDIT_NOTE_PREFIX if credit_note else ""
        return {self.fields[prefix + role]: value for role, value in written.items()
                if role in ROLES and prefix + role in self.fields}


def classify(error: ZohoError, *, credit_note: bool = False) -> Failure:
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
            what, scope = (("credit notes", "ZohoBooks.creditnotes.UPDATE") if credit_note
                           else ("invoices", "ZohoBooks.invoices.UPDATE"))
            return Failure(
                Action.NEEDS_CUSTOMER,
                f"the Zoho authorization lacks the permission to update {what}"
                f" ({scope}): reconnect Zoho Books to grant it",
            )
        if error.http_status == 401:
            return Failure(
                Action.NEEDS_CUSTOMER, "Zoho refuses the access token: reconnect Zoho Books"
            )
        if error.code == NOT_FOUND or error.http_status == 404:
            return Failure(
                Action.NEEDS_CUSTOMER,
                f"the {'credit note' if credit_note else 'invoice'} no longer exists in Zoho"
                " Books, so the fiscal data cannot be written onto it",
            )
        return Failure(
            Action.NEEDS_CUSTOMER,
            f"Zoho refused the fiscal fields ({error.message}): check the custom fields"
            " mapped for write-back in the portal",
        )
    return Failure(Action.RETRY, str(error))


async def write_back(
    client: ZohoBooksClient, invoice_id: str, fields: FieldMap, written: Mapping[str, str],
    *, credit_note: bool = False,
) -> Failure | None:
    """Write the mapped values onto the invoice (or, with credit_note, the credit note
    `invoice_id` names); None on success, else what to do."""
    values = fields.values(written, credit_note=credit_note)
    if not values:
        return Failure(
            Action.NEEDS_CUSTOMER,
            f"no {'credit note' if credit_note else 'invoice'} custom field is mapped for the"
            " fiscal data: map them in the portal",
        )
    try:
        if credit_note:
            await client.update_credit_note_custom_fields(invoice_id, values)
        else:
            await client.update_custom_fields(invoice_id, values)
    except ZohoError as error:
        return classify(error, credit_note=credit_note)
    return None


STORNO_COMMENT_HEADING = "Fiskalizirani storno (FiscoBridge)"
STORNO_NUMBER_LABEL = "Broj storno računa"


def storno_comment(written: Mapping[str, str]) -> str:
    """The comment that carries a voided invoice's storno (it has no Zoho document of its
    own): a heading, then one line per value. The fiscal number's line identifies it."""
    labels = (("fiscal_number", STORNO_NUMBER_LABEL), ("zki", "ZKI"), ("jir", "JIR"),
              ("qr_url", "QR"))
    lines = [f"{label}: {written[role]}" for role, label in labels if role in written]
    return STORNO_COMMENT_HEADING + "\n" + "\n".join(lines)


def has_storno_comment(comments: list[dict[str, object]], written: Mapping[str, str]) -> bool:
    """Whether the invoice already carries this storno's comment: one under the heading
    with the same fiscal number (a storno keeps its number however often it is signed
    or delivered), or, without a number, the same JIR."""
    role, label = (("fiscal_number", STORNO_NUMBER_LABEL) if "fiscal_number" in written
                   else ("jir", "JIR"))
    if role not in written:
        return False
    wanted = f"{label}: {written[role]}"
    for comment in comments:
        lines = str(comment.get("description") or "").splitlines()
        if lines and lines[0].strip() == STORNO_COMMENT_HEADING and wanted in (
            line.strip() for line in lines[1:]
        ):
            return True
    return False


async def add_storno_comment(
    client: ZohoBooksClient, invoice_id: str, written: Mapping[str, str]
) -> tuple[bool, Failure | None]:
    """Comment the storno onto the invoice it takes back, unless a redelivery or replay
    already did: (added, failure). The comments are read first, so a comment whose answer
    was lost is found rather than added again."""
    try:
        if has_storno_comment(await client.invoice_comments(invoice_id), written):
            return False, None
        await client.add_comment(invoice_id, storno_comment(written))
    except ZohoError as error:
        return False, classify(error)
    return True, None
