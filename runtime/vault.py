"""Envelope encryption of every secret the store keeps (PFX, passwords, tokens, webhook secrets).

Each secret gets its own random data key; the data key is wrapped (AES-GCM) by a master
key that never touches the database. Rotating the master key therefore only re-wraps
48 bytes per secret, and a leaked database without the environment reveals nothing.

Every ciphertext is bound by AES-GCM associated data to a *context* string naming its
table, column and owning row, so copying one integration's ciphertext into another's row
fails to decrypt instead of silently handing over the wrong business's certificate.

Master keys come from `FISCOBRIDGE_MASTER_KEY`: a comma-separated list whose first entry
encrypts and whose others stay readable (during a rotation). An entry is either
`keyid:base64` or bare `base64` (its id is then a fingerprint of the key).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import re
import secrets
import struct
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from runtime.settings import StoreSettings, home_dir

log = logging.getLogger(__name__)

ENV_VAR = "FISCOBRIDGE_MASTER_KEY"
DEV_KEYFILE_NAME = "master.key"

_FORMAT = 1
_NONCE = 12
_KEY = 32
_WRAPPED = _KEY + 16
_KEY_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class VaultError(Exception):
    """Base of every vault failure; the message says what to do about it."""


class MasterKeyMissing(VaultError):
    pass


class MasterKeyMalformed(VaultError):
    pass


class UnknownKeyId(VaultError):
    """Data was encrypted under a master key the environment does not provide."""


class DecryptionFailed(VaultError):
    """Wrong key under a known id, a ciphertext moved to another row, or tampering."""


@dataclass(frozen=True)
class MasterKey:
    key_id: str
    key: bytes

    def __repr__(self) -> str:  # keep key bytes out of tracebacks and logs
        return f"MasterKey(key_id={self.key_id!r})"


def fingerprint(key: bytes) -> str:
    """The id of a key given without one: stable, and says nothing usable about the key."""
    return "fp-" + hashlib.sha256(b"fiscobridge-master-key-id\x00" + key).hexdigest()[:12]


def new_key() -> str:
    """A fresh master key in the form FISCOBRIDGE_MASTER_KEY accepts."""
    return base64.b64encode(secrets.token_bytes(_KEY)).decode()


def parse_keys(spec: str) -> tuple[MasterKey, ...]:
    entries = [entry.strip() for entry in spec.split(",") if entry.strip()]
    if not entries:
        raise MasterKeyMissing(f"{ENV_VAR} is empty; set it to the output of "
                               "`fiscobridge secrets new-key`")
    keys: list[MasterKey] = []
    for position, entry in enumerate(entries, start=1):
        key_id, sep, encoded = entry.rpartition(":")
        if sep and not _KEY_ID.match(key_id):
            raise MasterKeyMalformed(
                f"{ENV_VAR} entry {position}: key id must match {_KEY_ID.pattern}"
            )
        try:
            key = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise MasterKeyMalformed(
                f"{ENV_VAR} entry {position} is not valid base64 "
                "(expected 'base64' or 'keyid:base64' of 32 random bytes)"
            ) from None
        if len(key) != _KEY:
            raise MasterKeyMalformed(
                f"{ENV_VAR} entry {position} decodes to {len(key)} bytes; a master key is "
                f"{_KEY} bytes (generate one with `fiscobridge secrets new-key`)"
            )
        keys.append(MasterKey(key_id if sep else fingerprint(key), key))
    ids = [k.key_id for k in keys]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise MasterKeyMalformed(f"{ENV_VAR} names key id(s) {duplicates} more than once")
    return tuple(keys)


def key_id_of(blob: bytes) -> str:
    """The id of the master key a ciphertext is wrapped under (no key needed)."""
    return _split(blob)[0]


def _split(blob: bytes) -> tuple[str, bytes, bytes, bytes, bytes]:
    try:
        version, id_len = struct.unpack_from("BB", blob)
        if version != _FORMAT:
            raise DecryptionFailed(f"unknown ciphertext format {version}")
        at = 2
        key_id = blob[at : at + id_len].decode("ascii")
        at += id_len
        wrap_nonce = blob[at : at + _NONCE]
        at += _NONCE
        wrapped = blob[at : at + _WRAPPED]
        at += _WRAPPED
        data_nonce = blob[at : at + _NONCE]
        at += _NONCE
        body = blob[at:]
    except (struct.error, UnicodeDecodeError):
        raise DecryptionFailed("value is not a vault ciphertext") from None
    if len(data_nonce) != _NONCE or len(body) < 16:
        raise DecryptionFailed("vault ciphertext is truncated")
    return key_id, wrap_nonce, wrapped, data_nonce, body


class Vault:
    def __init__(self, keys: tuple[MasterKey, ...]) -> None:
        if not keys:
            raise MasterKeyMissing("a vault needs at least one master key")
        self._keys = {k.key_id: k for k in keys}
        self._current = keys[0]

    @classmethod
    def from_env(
        cls, settings: StoreSettings | None = None, *, allow_dev_keyfile: bool = False
    ) -> Vault:
        """Master keys from FISCOBRIDGE_MASTER_KEY (environment or `.env`).

        With `allow_dev_keyfile` a missing variable falls back to a generated key file
        under the home directory, but only for the embedded SQLite store: a service
        pointed at a shared database (FISCOBRIDGE_DATABASE_URL) must never invent a key
        of its own, which would not read what the others wrote.
        """
        settings = settings or StoreSettings()
        if settings.master_key is not None and settings.master_key.get_secret_value().strip():
            return cls(parse_keys(settings.master_key.get_secret_value()))
        if allow_dev_keyfile and not settings.database_url:
            return cls(parse_keys(_dev_keyfile(home_dir() / DEV_KEYFILE_NAME)))
        raise MasterKeyMissing(
            f"{ENV_VAR} is not set; the store's secrets cannot be read or written without "
            "it. Generate one with `fiscobridge secrets new-key` and keep it outside the "
            "database"
        )

    @property
    def current_key_id(self) -> str:
        return self._current.key_id

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def encrypt(self, plaintext: bytes, context: str) -> bytes:
        data_key = AESGCM.generate_key(bit_length=256)
        data_nonce = os.urandom(_NONCE)
        body = AESGCM(data_key).encrypt(data_nonce, plaintext, context.encode())
        return self._pack(self._current, data_key, data_nonce, body)

    def decrypt(self, blob: bytes, context: str) -> bytes:
        key_id, wrap_nonce, wrapped, data_nonce, body = _split(blob)
        data_key = self._unwrap(key_id, wrap_nonce, wrapped)
        return _open(data_key, data_nonce, body, context)

    def rewrap(self, blob: bytes, context: str) -> bytes | None:
        """The same secret wrapped under the current key, or None if it already is.

        The secret is checked on the way, so rotation never carries a tampered or
        misplaced value forward under the new key.
        """
        key_id, wrap_nonce, wrapped, data_nonce, body = _split(blob)
        if key_id == self._current.key_id:
            return None
        data_key = self._unwrap(key_id, wrap_nonce, wrapped)
        _open(data_key, data_nonce, body, context)
        return self._pack(self._current, data_key, data_nonce, body)

    def _unwrap(self, key_id: str, nonce: bytes, wrapped: bytes) -> bytes:
        master = self._keys.get(key_id)
        if master is None:
            raise UnknownKeyId(
                f"stored secrets are encrypted under master key {key_id!r}, which "
                f"{ENV_VAR} does not contain (it has {sorted(self._keys)}); add the old key "
                "after the current one until `fiscobridge secrets rotate` has finished"
            )
        try:
            return AESGCM(master.key).decrypt(nonce, wrapped, _wrap_ad(key_id))
        except InvalidTag:
            raise DecryptionFailed(
                f"master key {key_id!r} from {ENV_VAR} cannot decrypt the stored secrets; "
                "it is not the key they were written with"
            ) from None

    @staticmethod
    def _pack(master: MasterKey, data_key: bytes, data_nonce: bytes, body: bytes) -> bytes:
        wrap_nonce = os.urandom(_NONCE)
        wrapped = AESGCM(master.key).encrypt(
            wrap_nonce, data_key, _wrap_ad(master.key_id)
        )
        key_id = master.key_id.encode("ascii")
        return (
            struct.pack("BB", _FORMAT, len(key_id)) + key_id + wrap_nonce + wrapped
            + data_nonce + body
        )

    def __repr__(self) -> str:
        return f"Vault(current={self._current.key_id!r}, keys={sorted(self._keys)})"


def _open(data_key: bytes, nonce: bytes, body: bytes, context: str) -> bytes:
    try:
        return AESGCM(data_key).decrypt(nonce, body, context.encode())
    except InvalidTag:
        raise DecryptionFailed(
            f"a secret of {context.split('|')[0]} failed its integrity check "
            "(modified, or moved from another row)"
        ) from None


def _wrap_ad(key_id: str) -> bytes:
    # The row binding lives in the data layer's associated data; keeping it out of the
    # wrap lets a failed unwrap mean exactly "wrong master key".
    return f"wrap|{key_id}".encode()


def _dev_keyfile(path: Path) -> str:
    if not path.exists():
        # Written aside and linked into place so that services starting together never
        # read a half-written file, and the first one's key wins.
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(new_key() + "\n")
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    log.warning(
        "%s is not set; using the development master key file %s (this machine only; "
        "set %s in any shared or production setup)",
        ENV_VAR,
        path,
        ENV_VAR,
    )
    return path.read_text().strip()
