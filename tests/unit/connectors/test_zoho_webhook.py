"""Webhook signatures (hex or base64, constant time) and payload parsing."""

from __future__ import annotations

import base64
import hmac
import json
import string
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from connectors.zoho import webhook
from connectors.zoho.mapping import MappingOptions
from connectors.zoho.webhook import (
    PayloadInvalid,
    generate_webhook_secret,
    parse_webhook,
    signature_of,
    verify_signature,
)
from schemas.invoice import DocumentKind, PaymentMethod
from tests.unit.connectors.test_zoho_mapping import zoho_invoice

# RFC 4231, test case 2.
RFC_KEY = "Jefe"
RFC_DATA = b"what do ya want for nothing?"
RFC_MAC = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"

SECRET = "s3cretS3cretS3cret42"
BODY = json.dumps({"invoice": zoho_invoice()}).encode()


def test_signature_is_hex_hmac_sha256_of_the_raw_body() -> None:
    assert signature_of(RFC_KEY, RFC_DATA) == RFC_MAC


def test_parameters_are_sorted_and_prepended_as_key_then_value() -> None:
    # "what" + " do ya want " + "for nothing?" is exactly the RFC message again.
    assert signature_of(RFC_KEY, b"for nothing?", {"what": " do ya want "}) == RFC_MAC
    assert signature_of(RFC_KEY, b"", {"b": "2", "a": "1"}) == signature_of(RFC_KEY, b"a1b2")


def test_hex_and_base64_signatures_are_accepted() -> None:
    digest = bytes.fromhex(signature_of(SECRET, BODY))
    assert verify_signature(SECRET, BODY, digest.hex())
    assert verify_signature(SECRET, BODY, digest.hex().upper())
    assert verify_signature(SECRET, BODY, base64.b64encode(digest).decode())
    assert verify_signature(SECRET, BODY, f"  {digest.hex()}\n")


def test_signature_with_query_parameters_verifies_with_the_same_parameters() -> None:
    params = {"integration": "abc", "event": "edit"}
    header = signature_of(SECRET, BODY, params)
    assert verify_signature(SECRET, BODY, header, params)
    assert not verify_signature(SECRET, BODY, header)


@pytest.mark.parametrize(
    ("secret", "body", "header"),
    [
        ("wrongSecretWrongSecret", BODY, signature_of(SECRET, BODY)),
        (SECRET, BODY + b" ", signature_of(SECRET, BODY)),
        (SECRET, BODY.replace(b"12.38", b"1.38"), signature_of(SECRET, BODY)),
        (SECRET, BODY, None),
        (SECRET, BODY, ""),
        (SECRET, BODY, "not a signature"),
        (SECRET, BODY, signature_of(SECRET, BODY)[:-2]),
        ("", BODY, signature_of("", BODY)),
    ],
    ids=[
        "wrong-secret",
        "body-appended",
        "amount-tampered",
        "missing-header",
        "empty-header",
        "garbage",
        "truncated",
        "no-secret-configured",
    ],
)
def test_bad_signatures_are_rejected(secret: str, body: bytes, header: str | None) -> None:
    assert not verify_signature(secret, body, header)


def test_comparison_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    original = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return original(a, b)

    monkeypatch.setattr(webhook.hmac, "compare_digest", spy)
    assert verify_signature(SECRET, BODY, signature_of(SECRET, BODY))
    assert not verify_signature("otherSecretOtherSecret", BODY, signature_of(SECRET, BODY))
    assert len(calls) == 2
    assert all(len(a) == len(b) == 32 for a, b in calls)


def test_payload_becomes_the_invoice_with_exact_numbers() -> None:
    body = BODY.replace(b'"4600000000000012345"', b"4600000000000012345")
    invoice = parse_webhook(body)
    assert invoice.source_id == "4600000000000012345"
    assert invoice.total == Decimal("12.38")
    assert invoice.lines[0].unit_price == Decimal("1.10")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"invoice_id=1", "not_json"),
        (b"\xff\xfe", "not_json"),
        (b"[]", "not_an_object"),
        (b'{"estimate": {}}', "no_invoice"),
        (json.dumps({"invoice": {"invoice_id": "1"}}).encode(), "mapping:missing_field"),
        (json.dumps({"invoice": "INV-1"}).encode(), "mapping:not_an_object"),
    ],
)
def test_unusable_payloads_say_why(body: bytes, reason: str) -> None:
    with pytest.raises(PayloadInvalid) as caught:
        parse_webhook(body)
    assert caught.value.reason == reason


def test_missing_invoice_key_lists_what_was_there() -> None:
    with pytest.raises(PayloadInvalid, match="keys: estimate"):
        parse_webhook(b'{"estimate": {}}')


def test_mapping_error_names_the_field() -> None:
    document: dict[str, Any] = {"invoice": zoho_invoice(total="12.40")}
    with pytest.raises(PayloadInvalid, match="total"):
        parse_webhook(json.dumps(document).encode())


def test_generated_secrets_are_32_alphanumerics_and_unpredictable() -> None:
    secrets = {generate_webhook_secret() for _ in range(50)}
    assert len(secrets) == 50
    alphabet = set(string.ascii_letters + string.digits)
    assert all(len(s) == 32 and set(s) <= alphabet for s in secrets)


def test_a_credit_notes_rule_delivers_a_storno() -> None:
    fixture = Path(__file__).parents[2] / "fixtures" / "zoho" / "creditnote.json"
    note = json.loads(fixture.read_text())["creditnote"]
    invoice = parse_webhook(json.dumps({"creditnote": note}).encode())
    assert invoice.kind is DocumentKind.CREDIT_NOTE and invoice.number == "CN-00003"
    assert invoice.total == Decimal("-4.13")
    assert [c.source_id for c in invoice.credited] == [note["invoices_credited"][0]["invoice_id"]]


def test_the_integrations_mapping_options_apply_to_webhooks() -> None:
    document = {"invoice": zoho_invoice(customer_custom_field_hash={"cf_oib": "12345678903"})}
    options = MappingOptions(default_payment_method=PaymentMethod.CARD, buyer_tax_field="cf_oib")
    invoice = parse_webhook(json.dumps(document).encode(), options=options)
    assert invoice.payment_method is PaymentMethod.CARD
    assert invoice.customer.tax_id_source == "invoice.custom_field:cf_oib"
