"""Loading fiscal certificates: what is read, and a distinct error for each way it fails."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from fiscal.hr_cis import certificate as certificate_module
from fiscal.hr_cis.certificate import (
    CertificateCache,
    CertificateError,
    CertificateExpired,
    CertificateNotYetValid,
    FiscalCertificate,
    KeyMismatch,
    NoCertificate,
    NoOibInCertificate,
    NoPrivateKey,
    NotPkcs12,
    OibMismatch,
    UnsupportedKey,
    WrongPassword,
    load_certificate,
    oib_of,
)
from sandbox.cis.ca import TestCA
from tests.fixtures.certs import Pfx

PASSWORD = "Correct-Horse-9"
ARABIC_INDIC_OIB = "".join(chr(0x660 + int(digit)) for digit in "69435151530")


def _pfx(key: object, cert: x509.Certificate | None, password: str = PASSWORD) -> bytes:
    return pkcs12.serialize_key_and_certificates(
        b"test",
        key,  # type: ignore[arg-type]
        cert,
        None,
        serialization.BestAvailableEncryption(password.encode()),
    )


def _self_signed(
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, name: x509.Name
) -> x509.Certificate:
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )


def _name(**attributes: str) -> x509.Name:
    oids = {
        "O": NameOID.ORGANIZATION_NAME,
        "CN": NameOID.COMMON_NAME,
        "organizationIdentifier": NameOID.ORGANIZATION_IDENTIFIER,
        "serialNumber": NameOID.SERIAL_NUMBER,
    }
    return x509.Name([x509.NameAttribute(oids[key], value) for key, value in attributes.items()])


def test_loads_what_the_pfx_holds(demo_pfx: Pfx, demo_oib: str, test_ca: TestCA) -> None:
    loaded = load_certificate(demo_pfx.data, demo_pfx.password)

    assert loaded.oib == demo_oib
    assert loaded.subject == f"CN=FISKAL 1,L=ZAGREB,O=Sandbox Demo d.o.o. HR{demo_oib},C=HR"
    assert loaded.issuer == test_ca.certificate.subject.rfc4514_string()
    assert loaded.serial == loaded.certificate.serial_number
    assert loaded.fingerprint_sha256 == loaded.certificate.fingerprint(hashes.SHA256()).hex()
    assert len(loaded.fingerprint_sha256) == 64
    assert loaded.chain == (test_ca.certificate,)
    assert loaded.not_before < datetime.now(UTC) < loaded.not_after
    assert loaded.not_before.tzinfo is not None
    assert loaded.private_key.public_key().public_numbers() == (
        loaded.certificate.public_key().public_numbers()  # type: ignore[union-attr]
    )


@pytest.mark.parametrize(
    ("data", "hint"),
    [
        (b"", "empty"),
        (b"hello, this is a text file", "not a PKCS#12"),
        (b"0\x82\x01\x00\x02\x01\x05rest", "not a PKCS#12"),
    ],
)
def test_a_file_that_is_not_pkcs12(data: bytes, hint: str) -> None:
    with pytest.raises(NotPkcs12, match=hint) as caught:
        load_certificate(data, PASSWORD)
    assert caught.value.code == "not_pkcs12"


def test_a_pem_file_is_named_as_such(test_ca: TestCA) -> None:
    with pytest.raises(NotPkcs12, match="PEM") as caught:
        load_certificate(test_ca.cert_pem(), PASSWORD)
    assert ".pfx" in str(caught.value)


def test_wrong_password_is_told_apart_and_never_echoed(demo_pfx: Pfx) -> None:
    wrong = "Tr0ub4dor&3-secret"
    with pytest.raises(WrongPassword) as caught:
        load_certificate(demo_pfx.data, wrong)
    assert caught.value.code == "wrong_password"
    assert wrong not in str(caught.value)
    assert demo_pfx.password not in str(caught.value)


def test_certificate_without_its_private_key(test_ca: TestCA) -> None:
    with pytest.raises(NoPrivateKey) as caught:
        load_certificate(_pfx(None, test_ca.certificate), PASSWORD)
    assert caught.value.code == "no_private_key"


def test_key_without_its_certificate(test_ca: TestCA) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    only_ca = pkcs12.serialize_key_and_certificates(
        b"test",
        key,
        None,
        [test_ca.certificate],
        serialization.BestAvailableEncryption(PASSWORD.encode()),
    )
    with pytest.raises(NoCertificate):
        load_certificate(only_ca, PASSWORD)


def test_key_paired_with_a_certificate_of_another_key(
    demo_pfx: Pfx, demo_certificate: FiscalCertificate, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tools refuse to write such a file, but a PKCS#12 pairs key and certificate only
    # by a local id, so a hand-made one can; the loader must not trust the pairing.
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    monkeypatch.setattr(
        pkcs12,
        "load_key_and_certificates",
        lambda data, password: (stranger, demo_certificate.certificate, []),
    )
    with pytest.raises(KeyMismatch):
        load_certificate(demo_pfx.data, demo_pfx.password)


def test_non_rsa_key_is_refused() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _self_signed(key, _name(O="Firma d.o.o. HR69435151530", CN="FISKAL 1"))
    with pytest.raises(UnsupportedKey, match="RSA"):
        load_certificate(_pfx(key, cert), PASSWORD)


def test_expired(expired_pfx: Pfx) -> None:
    with pytest.raises(CertificateExpired, match="expired on") as caught:
        load_certificate(expired_pfx.data, expired_pfx.password)
    assert caught.value.code == "certificate_expired"


def test_not_yet_valid(test_ca: TestCA, demo_oib: str) -> None:
    start = datetime.now(UTC) + timedelta(days=3)
    pfx = test_ca.issue_pfx(
        demo_oib, PASSWORD, not_before=start, not_after=start + timedelta(days=9)
    )
    with pytest.raises(CertificateNotYetValid) as caught:
        load_certificate(pfx, PASSWORD)
    assert caught.value.code == "certificate_not_yet_valid"
    # The same file is fine once its time has come.
    assert load_certificate(pfx, PASSWORD, now=start + timedelta(hours=1)).oib == demo_oib


def test_validity_is_judged_at_the_given_moment(
    demo_pfx: Pfx, demo_certificate: FiscalCertificate
) -> None:
    with pytest.raises(CertificateExpired):
        load_certificate(
            demo_pfx.data, demo_pfx.password, now=demo_certificate.not_after + timedelta(seconds=1)
        )


def test_no_oib_in_certificate(test_ca: TestCA, demo_oib: str) -> None:
    pfx = test_ca.issue_pfx(demo_oib, PASSWORD, include_oib=False)
    with pytest.raises(NoOibInCertificate) as caught:
        load_certificate(pfx, PASSWORD)
    assert caught.value.code == "no_oib_in_certificate"
    assert "OIB" in str(caught.value)


def test_oib_of_another_business(demo_pfx: Pfx, demo_oib: str) -> None:
    other = "47721904125"
    with pytest.raises(OibMismatch) as caught:
        load_certificate(demo_pfx.data, demo_pfx.password, expected_oib=other)
    assert caught.value.code == "oib_mismatch"
    assert demo_oib in str(caught.value) and other in str(caught.value)
    assert load_certificate(demo_pfx.data, demo_pfx.password, expected_oib=demo_oib).oib == demo_oib


def test_every_error_is_a_certificate_error_with_its_own_code() -> None:
    classes = [
        NotPkcs12,
        WrongPassword,
        NoPrivateKey,
        NoCertificate,
        UnsupportedKey,
        KeyMismatch,
        CertificateExpired,
        CertificateNotYetValid,
        NoOibInCertificate,
        OibMismatch,
    ]
    assert all(issubclass(cls, CertificateError) and issubclass(cls, ValueError) for cls in classes)
    assert len({cls.code for cls in classes}) == len(classes)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (_name(O="APIS IT D.O.O. HR02994650199", CN="FISKAL 2"), "02994650199"),
        (_name(O="Firma d.o.o.   HR69435151530 ", CN="FISKAL 1"), "69435151530"),
        (_name(O="Firma d.o.o.", organizationIdentifier="VATHR-69435151530"), "69435151530"),
        (_name(O="Firma d.o.o.", serialNumber="HR69435151530"), "69435151530"),
        (_name(O="Firma d.o.o.", CN="FISKAL 1"), None),
        (_name(O="Firma HR6943515153", CN="too short"), None),
        (_name(O="FirmaHR69435151530", CN="glued to the name"), None),
        (_name(O="Firma HR" + ARABIC_INDIC_OIB, CN="non-ASCII digits"), None),
        (_name(O="Firma d.o.o.", organizationIdentifier="VATDE-123456789"), None),
    ],
)
def test_oib_of_reads_the_layouts_in_use(name: x509.Name, expected: str | None) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    assert oib_of(_self_signed(key, name)) == expected


class TestCache:
    def test_parses_each_pfx_once(self, demo_pfx: Pfx, monkeypatch: pytest.MonkeyPatch) -> None:
        calls: list[int] = []
        real_parse = certificate_module._parse

        def counting_parse(pfx: bytes, password: str) -> FiscalCertificate:
            calls.append(1)
            return real_parse(pfx, password)

        monkeypatch.setattr(certificate_module, "_parse", counting_parse)
        cache = CertificateCache()
        first = cache.get(demo_pfx.data, demo_pfx.password)
        second = cache.get(demo_pfx.data, demo_pfx.password)
        assert first is second
        assert len(calls) == 1

    def test_concurrent_first_use_parses_once(
        self, demo_pfx: Pfx, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        calls: list[int] = []
        real_parse = certificate_module._parse

        def counting_parse(pfx: bytes, password: str) -> FiscalCertificate:
            calls.append(1)
            return real_parse(pfx, password)

        monkeypatch.setattr(certificate_module, "_parse", counting_parse)
        cache = CertificateCache()
        results: list[FiscalCertificate] = []
        barrier = threading.Barrier(8)

        def worker() -> None:
            barrier.wait()
            results.append(cache.get(demo_pfx.data, demo_pfx.password))

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(calls) == 1
        assert len(results) == 8 and all(result is results[0] for result in results)

    def test_checks_validity_and_oib_on_every_get(
        self, demo_pfx: Pfx, demo_certificate: FiscalCertificate
    ) -> None:
        cache = CertificateCache()
        cache.get(demo_pfx.data, demo_pfx.password)
        with pytest.raises(CertificateExpired):
            cache.get(
                demo_pfx.data, demo_pfx.password, now=demo_certificate.not_after + timedelta(days=1)
            )
        with pytest.raises(OibMismatch):
            cache.get(demo_pfx.data, demo_pfx.password, expected_oib="47721904125")

    def test_a_wrong_password_is_not_served_from_the_cache(self, demo_pfx: Pfx) -> None:
        cache = CertificateCache()
        cache.get(demo_pfx.data, demo_pfx.password)
        with pytest.raises(WrongPassword):
            cache.get(demo_pfx.data, demo_pfx.password + "x")

    def test_keeps_at_most_max_entries(self, test_ca: TestCA, demo_oib: str) -> None:
        cache = CertificateCache(max_entries=2)
        files = [test_ca.issue_pfx(demo_oib, PASSWORD) for _ in range(3)]
        loaded = [cache.get(pfx, PASSWORD) for pfx in files]
        assert len(cache) == 2
        # The oldest was evicted: getting it again parses a fresh object.
        assert cache.get(files[0], PASSWORD) is not loaded[0]
        assert cache.get(files[2], PASSWORD) is loaded[2]
