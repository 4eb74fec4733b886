"""Tamper-proof, expiring tokens: session cookies and OAuth states.

A token is `base64url(json).base64url(hmac)`; its payload is readable by whoever holds
it, so nothing secret goes in. Each purpose signs with its own derived key, so a token
minted for one (a session cookie) is worthless as another (an OAuth state).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from typing import Any


class BadToken(ValueError):
    """Forged, truncated, or signed for another purpose."""


class ExpiredToken(BadToken):
    pass


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    def __init__(self, secret: bytes, purpose: str) -> None:
        if len(secret) < 16:
            raise ValueError("a signing secret needs at least 16 bytes")
        self._key = hmac.new(secret, b"fiscobridge-portal:" + purpose.encode(), "sha256").digest()

    def _mac(self, body: str) -> str:
        return _encode(hmac.new(self._key, body.encode("ascii"), hashlib.sha256).digest())

    def sign(self, payload: dict[str, Any], *, now: float) -> str:
        body = _encode(
            json.dumps({**payload, "iat": int(now)}, separators=(",", ":")).encode()
        )
        return f"{body}.{self._mac(body)}"

    def verify(self, token: str, *, max_age: float, now: float) -> dict[str, Any]:
        if not token.isascii():
            raise BadToken("not a token")
        body, _, mac = token.partition(".")
        if not body or not mac or not hmac.compare_digest(mac, self._mac(body)):
            raise BadToken("signature does not match")
        try:
            payload = json.loads(_decode(body))
        except (binascii.Error, ValueError):
            raise BadToken("payload is not JSON") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("iat"), int):
            raise BadToken("payload has no issue time")
        if now - payload["iat"] > max_age:
            raise ExpiredToken(f"issued {now - payload['iat']:.0f}s ago, valid for {max_age:.0f}s")
        return payload
