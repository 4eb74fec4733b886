"""Zoho Books webhooks (Workflow Rules): signature check and payload parsing. Pure.

The signature covers the query-string/form parameters sorted by key, each written as
key then value with no separator, followed by the raw body. Zoho does not document
the digest's encoding for Books (its Billing docs show hex); both lowercase hex and
base64 are accepted, always compared in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import string
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from connectors.zoho.mapping import (
    InvoiceMappingError,
    MappingOptions,
    map_credit_note,
    map_invoice,
)
from connectors.zoho.rejected import Rejected, rejected_document
from schemas.invoice import Invoice, PaymentMethod

SIGNATURE_HEADER = "X-Zoho-Webhook-Signature"
_ALPHANUMERIC = string.ascii_letters + string.digits


class PayloadInvalid(ValueError):
    """The webhook body is not an invoice we can map; `reason` is a stable code.
    `rejected`: the document the mapping refused, identified (connectors.zoho.rejected);
    None when the body carries no document to identify."""

    def __init__(self, reason: str, message: str, rejected: Rejected | None = None):
        super().__init__(message)
        self.reason = reason
        self.rejected = rejected


def _digest(secret: str, body: bytes, params: Mapping[str, str] | None) -> bytes:
    prefix = "".join(key + value for key, value in sorted((params or {}).items()))
    return hmac.new(secret.encode(), prefix.encode() + body, hashlib.sha256).digest()


def signature_of(secret: str, body: bytes, params: Mapping[str, str] | None = None) -> str:
    """The lowercase hex HMAC-SHA256 Zoho sends in `X-Zoho-Webhook-Signature`."""
    return _digest(secret, body, params).hex()


def verify_signature(
    secret: str, body: bytes, header: str | None, params: Mapping[str, str] | None = None
) -> bool:
    if not secret or not header:
        return False
    given = _decode_signature(header.strip())
    expected = _digest(secret, body, params)
    # compare_digest on equal-length bytes: timing reveals nothing about the expected value.
    return given is not None and hmac.compare_digest(given, expected)


def _decode_signature(text: str) -> bytes | None:
    if len(text) == 64 and all(c in string.hexdigits for c in text):
        return bytes.fromhex(text)
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            raw = decode(text.encode())
        except (binascii.Error, ValueError):
            continue
        if len(raw) == hashlib.sha256().digest_size:
            return raw
    return None


Document = tuple[str, Mapping[str, Any]]  # ("invoice" | "creditnote", the record)


def webhook_document(body: bytes) -> Document:
    """The record a webhook body carries: `{"invoice": {...}}` or, from a rule on the
    Credit Notes module, `{"creditnote": {...}}` (Zoho's default payload)."""
    try:
        # Exact numbers: amounts as Decimal, 19-digit ids as int, never through float.
        document = json.loads(body, parse_float=Decimal)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PayloadInvalid("not_json", f"body is not JSON: {error}") from None
    if not isinstance(document, dict):
        raise PayloadInvalid("not_an_object", "body must be a JSON object")
    if "invoice" not in document and "creditnote" not in document:
        keys = ", ".join(sorted(document)) or "none"
        raise PayloadInvalid(
            "no_invoice",
            f'body has no "invoice" or "creditnote" key (keys: {keys}); the workflow rule'
            " must be on the Invoice or Credit Notes module with the default payload",
        )
    kind = "creditnote" if "creditnote" in document else "invoice"
    record = document[kind]
    if not isinstance(record, Mapping):
        raise PayloadInvalid(
            "mapping:not_an_object", f'invoice cannot be mapped: "{kind}" must be a JSON object'
        )
    return kind, record


def map_webhook(
    document: Document,
    options: MappingOptions | None = None,
    *,
    contact: Mapping[str, Any] | None = None,
) -> Invoice:
    """The canonical invoice from `webhook_document`'s answer; `contact`: the buyer's
    contact when the record carries no tax number (connectors.zoho.contacts)."""
    options = options or MappingOptions()
    kind, record = document
    try:
        if kind == "creditnote":
            return map_credit_note(record, contact=contact, **options.kwargs())
        return map_invoice(record, contact=contact, **options.kwargs())
    except InvoiceMappingError as error:
        raise PayloadInvalid(
            f"mapping:{error.code}", f"invoice cannot be mapped: {error}",
            rejected_document(kind, record, error, base_currency=options.base_currency),
        ) from error


def parse_webhook(
    body: bytes,
    *,
    default_payment_method: PaymentMethod = PaymentMethod.OTHER,
    options: MappingOptions | None = None,
    contact: Mapping[str, Any] | None = None,
) -> Invoice:
    """A webhook body -> the canonical invoice (`webhook_document` then `map_webhook`).

    A webhook carries no payments (Zoho's invoice JSON has none): the payment method is
    the integration's default until a poll reads the payments.
    """
    options = options or MappingOptions(default_payment_method=default_payment_method)
    return map_webhook(webhook_document(body), options, contact=contact)


def generate_webhook_secret() -> str:
    """32 alphanumerics: inside Zoho's 12-50 range, about 190 bits."""
    return "".join(secrets.choice(_ALPHANUMERIC) for _ in range(32))
