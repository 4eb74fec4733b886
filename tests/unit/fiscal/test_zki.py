"""The protection code (ZKI), checked against an independent computation.

The spec (§12) gives an example code but not the key that made it, so no worked
example can be reproduced; instead `openssl dgst -sha1|-sha256 -sign` and `md5sum`
follow the spec's steps in a separate process and must agree with the profile, for
both signature hashes (v2.6: SHA-1; v2.7 implementations: SHA-256, *uncertain*).
"""

from __future__ import annotations

import re
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from lxml import etree

from fiscal.hr_cis.certificate import FiscalCertificate
from fiscal.hr_cis.profile import HrCisProfile
from fiscal.hr_cis.settings import FiscalSettings
from fiscal.hr_cis.zki import (
    DEFAULT_ZKI_HASH,
    ZKI_HASH_VARIABLE,
    ZkiHash,
    configured_zki_hash,
    protection_code,
    zki_input,
)
from tests.factories import ZAGREB, fiscal_number, make_invoice
from tests.unit.fiscal.conftest import NSMAP


@pytest.fixture(scope="module")
def key_pem(tmp_path_factory: pytest.TempPathFactory, demo_certificate: FiscalCertificate) -> Path:
    path = tmp_path_factory.mktemp("zki") / "key.pem"
    path.write_bytes(
        demo_certificate.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def openssl_zki(key_pem: Path, text: str, hash_name: ZkiHash = "sha1") -> str:
    signature = subprocess.run(
        ["openssl", "dgst", f"-{hash_name}", "-sign", str(key_pem)],
        input=text.encode("utf-8"),
        capture_output=True,
        check=True,
    ).stdout
    digest = subprocess.run(["md5sum"], input=signature, capture_output=True, check=True).stdout
    return digest.split()[0].decode()


def test_input_follows_the_spec_pseudocode() -> None:
    # The values of the spec's Java example (§12.2), concatenated in the pseudocode's order.
    assert zki_input(
        "00169331406", "01.09.2012 21:10:34", "12345", "blag001", "11245", "1245.56"
    ) == (b"0016933140601.09.2012 21:10:3412345blag001112451245.56")


def test_input_is_utf8() -> None:
    assert zki_input("1", "d", "2", "Čakovec", "3", "4.00") == "1d2Čakovec34.00".encode()


@pytest.mark.parametrize("hash_name", ["sha1", "sha256"])
def test_code_matches_openssl(
    demo_certificate: FiscalCertificate, key_pem: Path, hash_name: ZkiHash
) -> None:
    text = "6943515153025.11.2026 09:30:15123POSL112117.17"
    code = protection_code(demo_certificate.private_key, text.encode(), hash_name)
    assert re.fullmatch(r"[0-9a-f]{32}", code)
    assert code == openssl_zki(key_pem, text, hash_name)
    # Any change of input changes the code.
    assert code != protection_code(
        demo_certificate.private_key, text.replace("117.17", "117.18").encode(), hash_name
    )


def test_the_two_hashes_give_different_codes(demo_certificate: FiscalCertificate) -> None:
    text = b"6943515153025.11.2026 09:30:15123POSL112117.17"
    key = demo_certificate.private_key
    assert protection_code(key, text, "sha1") != protection_code(key, text, "sha256")


def test_an_unknown_hash_is_refused(demo_certificate: FiscalCertificate) -> None:
    with pytest.raises(ValueError, match="sha1, sha256"):
        protection_code(demo_certificate.private_key, b"x", "md5")  # type: ignore[arg-type]


def test_the_default_is_spec_v27s_sha256() -> None:
    assert DEFAULT_ZKI_HASH == "sha256"
    assert configured_zki_hash({}) == "sha256"
    assert configured_zki_hash({ZKI_HASH_VARIABLE: "  "}) == "sha256"


@pytest.mark.parametrize(
    ("value", "expected"), [("sha1", "sha1"), ("SHA-256", "sha256"), (" sha256 ", "sha256")]
)
def test_the_environment_chooses_the_hash(value: str, expected: str) -> None:
    assert configured_zki_hash({ZKI_HASH_VARIABLE: value}) == expected


def test_a_wrong_setting_names_the_variable_and_the_choices() -> None:
    with pytest.raises(ValueError, match=f"{ZKI_HASH_VARIABLE}.*sha1, sha256.*'md5'"):
        configured_zki_hash({ZKI_HASH_VARIABLE: "md5"})


def test_the_profile_reads_the_environment_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ZKI_HASH_VARIABLE, "sha1")
    assert HrCisProfile().zki_hash == "sha1"
    assert HrCisProfile(zki_hash="sha256").zki_hash == "sha256"
    monkeypatch.delenv(ZKI_HASH_VARIABLE)
    assert HrCisProfile().zki_hash == DEFAULT_ZKI_HASH


@pytest.mark.parametrize("hash_name", ["sha1", "sha256"])
@pytest.mark.parametrize(
    "issued_at",
    [
        datetime(2026, 11, 25, 9, 30, 15, tzinfo=ZAGREB),
        datetime(2026, 7, 1, 0, 5, 0, tzinfo=ZAGREB),
    ],
)
def test_code_in_the_message_is_recomputable_from_its_fields(
    demo_certificate: FiscalCertificate,
    fiscal_settings: FiscalSettings,
    key_pem: Path,
    issued_at: datetime,
    hash_name: ZkiHash,
) -> None:
    signed = HrCisProfile(zki_hash=hash_name).sign(
        make_invoice(issued_at=issued_at), fiscal_settings, demo_certificate,
        number=fiscal_number())
    racun = etree.fromstring(signed.document).find("tns:Racun", NSMAP)
    assert racun is not None

    def field(path: str) -> str:
        value = racun.findtext(path, namespaces=NSMAP)
        assert value is not None, path
        return value

    text = (
        field("tns:Oib")
        + field("tns:DatVrijeme").replace("T", " ")
        + field("tns:BrRac/tns:BrOznRac")
        + field("tns:BrRac/tns:OznPosPr")
        + field("tns:BrRac/tns:OznNapUr")
        + field("tns:IznosUkupno")
    )
    assert field("tns:ZastKod") == signed.protection_code == openssl_zki(key_pem, text, hash_name)
