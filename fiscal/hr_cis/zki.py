"""ZKI, the issuer's protection code (zastitni kod izdavatelja, spec §12).

MD5 over the RSA-SHA1 (PKCS#1 v1.5) signature of OIB + issue date-time
("dd.MM.yyyy HH:mm:ss") + invoice number + premises code + device code + total,
concatenated without separators and encoded as UTF-8. Only the key holder can
compute it, so it proves the invoice came from the business; the CIS never sees
the signature itself and cannot check it.
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

_PKCS1V15 = padding.PKCS1v15()
_SHA1 = hashes.SHA1()


def zki_input(
    oib: str, issued_at: str, invoice_number: str, premises: str, device: str, total: str
) -> bytes:
    """The bytes that are signed; every argument as it appears in the message
    (issued_at with a space instead of the T)."""
    return f"{oib}{issued_at}{invoice_number}{premises}{device}{total}".encode()


def protection_code(private_key: rsa.RSAPrivateKey, signed_input: bytes) -> str:
    signature = private_key.sign(signed_input, _PKCS1V15, _SHA1)
    # MD5 here is the spec's fingerprint of a signature, not a security boundary.
    return hashlib.md5(signature, usedforsecurity=False).hexdigest()
