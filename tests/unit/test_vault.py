"""The vault: envelope encryption, key parsing, rotation support, start-up errors."""

from __future__ import annotations

import base64
import logging
import os
import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from runtime.settings import StoreSettings
from runtime.vault import (
    DecryptionFailed,
    MasterKeyMalformed,
    MasterKeyMissing,
    UnknownKeyId,
    Vault,
    fingerprint,
    key_id_of,
    new_key,
    parse_keys,
)

SECRET = b"Pfx-Password-123"
CONTEXT = "certificates.password|uid-a|cert-1"


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def _vault(spec: str) -> Vault:
    return Vault(parse_keys(spec))


def test_round_trip_and_fresh_randomness() -> None:
    vault = _vault(_key())
    first, second = vault.encrypt(SECRET, CONTEXT), vault.encrypt(SECRET, CONTEXT)
    assert first != second
    assert SECRET not in first
    assert vault.decrypt(first, CONTEXT) == vault.decrypt(second, CONTEXT) == SECRET


def test_ciphertext_moved_to_another_row_or_column_does_not_decrypt() -> None:
    vault = _vault(_key())
    blob = vault.encrypt(SECRET, CONTEXT)
    for other in (
        "certificates.password|uid-b|cert-1",  # another integration
        "certificates.password|uid-a|cert-2",  # another row
        "oauth_tokens.refresh_token|uid-a|uid-a",  # another column
    ):
        with pytest.raises(DecryptionFailed, match=r"integrity check|cannot decrypt"):
            vault.decrypt(blob, other)


@pytest.mark.parametrize("position", [5, 40, -1])
def test_tampering_is_detected(position: int) -> None:
    vault = _vault(_key())
    blob = bytearray(vault.encrypt(SECRET, CONTEXT))
    blob[position] ^= 0x01
    with pytest.raises((DecryptionFailed, UnknownKeyId)):
        vault.decrypt(bytes(blob), CONTEXT)


def test_garbage_is_refused_clearly() -> None:
    with pytest.raises(DecryptionFailed, match=r"not a vault ciphertext|truncated|format"):
        _vault(_key()).decrypt(b"\x01", CONTEXT)


def test_key_ids_explicit_and_fingerprinted() -> None:
    raw = _key()
    (bare,) = parse_keys(raw)
    assert bare.key_id == fingerprint(base64.b64decode(raw))
    assert raw not in bare.key_id
    current, old = parse_keys(f"k2:{_key()}, k1:{_key()}")
    assert (current.key_id, old.key_id) == ("k2", "k1")
    vault = Vault((current, old))
    assert vault.current_key_id == "k2"
    assert key_id_of(vault.encrypt(SECRET, CONTEXT)) == "k2"


@pytest.mark.parametrize(
    ("spec", "error", "message"),
    [
        ("", MasterKeyMissing, "empty"),
        (" , ", MasterKeyMissing, "empty"),
        ("not base64!!", MasterKeyMalformed, "not valid base64"),
        (base64.b64encode(b"short").decode(), MasterKeyMalformed, "decodes to 5 bytes"),
        ("bad id!:" + base64.b64encode(bytes(32)).decode(), MasterKeyMalformed, "key id"),
        (
            f"a:{base64.b64encode(bytes(32)).decode()},a:{base64.b64encode(b'1' * 32).decode()}",
            MasterKeyMalformed,
            "more than once",
        ),
    ],
)
def test_malformed_keys_are_refused_with_a_sentence(
    spec: str, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        parse_keys(spec)


def test_error_messages_never_contain_key_material() -> None:
    key = base64.b64encode(b"\x07" * 31).decode()
    with pytest.raises(MasterKeyMalformed) as caught:
        parse_keys(f"k:{key}")
    assert key not in str(caught.value)
    (master,) = parse_keys(f"k:{_key()}")
    assert base64.b64encode(master.key).decode() not in repr(master) + repr(Vault((master,)))


def test_from_env_requires_a_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FISCOBRIDGE_HOME", str(tmp_path))
    with pytest.raises(MasterKeyMissing, match="FISCOBRIDGE_MASTER_KEY is not set"):
        Vault.from_env(StoreSettings(master_key=None))
    assert not (tmp_path / "master.key").exists()
    with pytest.raises(MasterKeyMalformed):
        Vault.from_env(StoreSettings(master_key=SecretStr("nope")))
    monkeypatch.setenv("FISCOBRIDGE_MASTER_KEY", "k9:" + _key())
    assert Vault.from_env().current_key_id == "k9"


def test_old_key_stays_readable_until_rewrapped() -> None:
    old_spec, new_spec = f"old:{_key()}", f"new:{_key()}"
    blob = _vault(old_spec).encrypt(SECRET, CONTEXT)
    both = _vault(f"{new_spec},{old_spec}")
    assert both.decrypt(blob, CONTEXT) == SECRET
    rewrapped = both.rewrap(blob, CONTEXT)
    assert rewrapped is not None and key_id_of(rewrapped) == "new"
    assert both.rewrap(rewrapped, CONTEXT) is None  # already current
    assert _vault(new_spec).decrypt(rewrapped, CONTEXT) == SECRET
    with pytest.raises(UnknownKeyId, match=r"'old'.*does not contain"):
        _vault(new_spec).decrypt(blob, CONTEXT)


def test_wrong_key_under_a_known_id_says_so() -> None:
    blob = _vault(f"k:{_key()}").encrypt(SECRET, CONTEXT)
    with pytest.raises(DecryptionFailed, match="not the key they were written with"):
        _vault(f"k:{_key()}").decrypt(blob, CONTEXT)


def test_dev_keyfile_only_when_asked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("FISCOBRIDGE_HOME", str(tmp_path))
    caplog.set_level(logging.INFO)
    first = Vault.from_env(StoreSettings(master_key=None), allow_dev_keyfile=True)
    keyfile = tmp_path / "master.key"
    assert stat.S_IMODE(keyfile.stat().st_mode) == 0o600
    second = Vault.from_env(StoreSettings(master_key=None), allow_dev_keyfile=True)
    assert first.current_key_id == second.current_key_id
    assert second.decrypt(first.encrypt(SECRET, CONTEXT), CONTEXT) == SECRET
    assert "development master key file" in caplog.text
    assert keyfile.read_text().strip() not in caplog.text
    assert [p.name for p in tmp_path.iterdir()] == ["master.key"]
    shared = StoreSettings(master_key=None, database_url="postgresql+asyncpg://db/fiscobridge")
    with pytest.raises(MasterKeyMissing, match="is not set"):
        Vault.from_env(shared, allow_dev_keyfile=True)


def test_new_key_is_accepted() -> None:
    (key,) = parse_keys(new_key())
    assert len(key.key) == 32


def test_rewrap_refuses_a_ciphertext_moved_from_another_row() -> None:
    old_spec = f"old:{_key()}"
    blob = _vault(old_spec).encrypt(SECRET, CONTEXT)
    with pytest.raises(DecryptionFailed, match="integrity check"):
        _vault(f"new:{_key()},{old_spec}").rewrap(blob, "certificates.password|uid-b|cert-9")
