"""The protection code (ZKI), checked against an independent computation.

The spec (§12) gives an example code but not the key that made it, so no worked
example can be reproduced; instead `openssl dgst -sha1 -sign` and `md5sum` follow
the spec's steps in a separate process and must agree with the profile.
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
from fiscal.hr_cis.zki import protection_code, zki_input
from tests.factories import ZAGREB, make_invoice
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


def openssl_zki(key_pem: Path, text: str) -> str:
    signature = subprocess.run(
        ["openssl", "dgst", "-sha1", "-sign", str(key_pem)],
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


def test_code_matches_openssl(demo_certificate: FiscalCertificate, key_pem: Path) -> None:
    text = "6943515153025.11.2026 09:30:15123POSL112117.17"
    code = protection_code(demo_certificate.private_key, text.encode())
    assert re.fullmatch(r"[0-9a-f]{32}", code)
    assert code == openssl_zki(key_pem, text)
    # Any change of input changes the code.
    assert code != protection_code(
        demo_certificate.private_key, text.replace("117.17", "117.18").encode()
    )


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
) -> None:
    signed = HrCisProfile().sign(
        make_invoice(issued_at=issued_at), fiscal_settings, demo_certificate
    )
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
    assert field("tns:ZastKod") == signed.protection_code == openssl_zki(key_pem, text)
