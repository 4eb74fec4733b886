"""ZKI, the issuer's protection code (zastitni kod izdavatelja, spec §12).

MD5 over the RSA (PKCS#1 v1.5) signature of OIB + issue date-time
("dd.MM.yyyy HH:mm:ss") + invoice number + premises code + device code + total,
concatenated without separators and encoded as UTF-8. Only the key holder can
compute it, so it proves the invoice came from the business; the CIS never sees
the signature itself and cannot check it.

Which hash the RSA signature uses depends on the spec edition the CIS environment
runs: v2.6 (§12) says RSA-SHA1; implementations that follow v2.7 (2026) sign with
RSA-SHA256 (*uncertain*: the v2.7 text is not in shared/specs). It is a setting of
the CIS environment, not of a business: `FISCOBRIDGE_CIS_ZKI_HASH`, read by
`configured_zki_hash`, default `DEFAULT_ZKI_HASH`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from typing import Literal, cast, get_args

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

ZkiHash = Literal["sha1", "sha256"]
ZKI_HASHES: tuple[ZkiHash, ...] = get_args(ZkiHash)
ZKI_HASH_VARIABLE = "FISCOBRIDGE_CIS_ZKI_HASH"
# Both CIS environments run spec v2.7 by now: the test service since 1 Jul 2026 (it
# refuses RSA-SHA1 request signatures), production since 1 May 2026. The ZKI follows
# the edition's signature algorithm, RSA-SHA256; `sha1` keeps the v2.6 algorithm.
DEFAULT_ZKI_HASH: ZkiHash = "sha256"

_PKCS1V15 = padding.PKCS1v15()
_HASHES: dict[ZkiHash, hashes.HashAlgorithm] = {"sha1": hashes.SHA1(), "sha256": hashes.SHA256()}


def zki_hash(value: str) -> ZkiHash:
    """`value` as a ZKI hash name, or a ValueError that says what is allowed."""
    normalized = value.strip().lower().replace("-", "")
    if normalized not in ZKI_HASHES:
        raise ValueError(
            f"the ZKI signature hash must be one of {', '.join(ZKI_HASHES)}"
            f" (sha1: CIS spec v2.6, sha256: spec v2.7), got {value!r}"
        )
    return cast(ZkiHash, normalized)


def configured_zki_hash(environ: Mapping[str, str] = os.environ) -> ZkiHash:
    """The ZKI hash of the CIS environment this deployment reports to:
    `FISCOBRIDGE_CIS_ZKI_HASH`, or the default when it is unset or empty."""
    value = environ.get(ZKI_HASH_VARIABLE, "")
    if not value.strip():
        return DEFAULT_ZKI_HASH
    try:
        return zki_hash(value)
    except ValueError as exc:
        raise ValueError(f"{ZKI_HASH_VARIABLE}: {exc}") from None


def zki_input(
    oib: str, issued_at: str, invoice_number: str, premises: str, device: str, total: str
) -> bytes:
    """The bytes that are signed; every argument as it appears in the message
    (issued_at with a space instead of the T)."""
    return f"{oib}{issued_at}{invoice_number}{premises}{device}{total}".encode()


def protection_code(
    private_key: rsa.RSAPrivateKey, signed_input: bytes, hash_name: ZkiHash = DEFAULT_ZKI_HASH
) -> str:
    try:
        algorithm = _HASHES[hash_name]
    except KeyError:
        zki_hash(hash_name)  # raises with the allowed names
        raise
    signature = private_key.sign(signed_input, _PKCS1V15, algorithm)
    # MD5 here is the spec's fingerprint of a signature, not a security boundary.
    return hashlib.md5(signature, usedforsecurity=False).hexdigest()
