"""The sandbox's FINA-like CA: persistent, and issuing look-alike fiscal certificates."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from sandbox.cis.ca import (
    CERT_FILE,
    KEY_FILE,
    SERVICE_CERT_FILE,
    SERVICE_KEY_FILE,
    TestCA,
    default_ca_dir,
    load_or_create_service,
)


def _cert(pfx: bytes, password: str) -> x509.Certificate:
    bundle = pkcs12.load_pkcs12(pfx, password.encode())
    assert bundle.cert is not None and bundle.key is not None
    return bundle.cert.certificate


def test_ca_certificate_is_a_ca(test_ca: TestCA) -> None:
    constraints = test_ca.certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.value.ca is True and constraints.critical
    assert test_ca.private_key.key_size == 2048
    assert test_ca.certificate.subject == test_ca.certificate.issuer
    test_ca.certificate.verify_directly_issued_by(test_ca.certificate)


def test_load_or_create_persists_one_ca(tmp_path: Path) -> None:
    first = TestCA.load_or_create(tmp_path / "ca")
    second = TestCA.load_or_create(tmp_path / "ca")
    assert first.cert_pem() == second.cert_pem()
    assert first.private_key.private_numbers() == second.private_key.private_numbers()
    assert (tmp_path / "ca" / CERT_FILE).read_bytes() == first.cert_pem()
    mode = stat.S_IMODE((tmp_path / "ca" / KEY_FILE).stat().st_mode)
    assert mode == 0o600, "the CA key must be readable by its owner only"


def test_default_ca_dir_is_in_the_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FISCOBRIDGE_HOME", str(tmp_path))
    assert default_ca_dir() == tmp_path / "sandbox-ca"


def test_issued_pfx_looks_like_finas(test_ca: TestCA, demo_oib: str) -> None:
    bundle = pkcs12.load_pkcs12(test_ca.issue_pfx(demo_oib, "pw", company="Kava d.o.o."), b"pw")
    assert bundle.cert is not None and bundle.key is not None
    cert = bundle.cert.certificate
    subject = cert.subject
    assert subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == (
        f"Kava d.o.o. HR{demo_oib}"
    )
    assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "FISKAL 1"
    assert subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)[0].value == "HR"
    assert cert.issuer == test_ca.certificate.subject
    cert.verify_directly_issued_by(test_ca.certificate)
    assert [ca.certificate for ca in bundle.additional_certs] == [test_ca.certificate]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert cert.not_valid_before_utc <= datetime.now(UTC) < cert.not_valid_after_utc


def test_expired_and_explicit_validity(test_ca: TestCA, demo_oib: str) -> None:
    expired = _cert(test_ca.issue_pfx(demo_oib, "pw", expired=True), "pw")
    assert expired.not_valid_after_utc < datetime.now(UTC)
    start = datetime(2030, 1, 1, tzinfo=UTC)
    later = _cert(
        test_ca.issue_pfx(demo_oib, "pw", not_before=start, not_after=start + timedelta(days=1)),
        "pw",
    )
    assert later.not_valid_before_utc == start


def test_without_oib_and_custom_cn(test_ca: TestCA, demo_oib: str) -> None:
    cert = _cert(test_ca.issue_pfx(demo_oib, "pw", include_oib=False, cn="FISKAL 2"), "pw")
    assert demo_oib not in cert.subject.rfc4514_string()
    assert "CN=FISKAL 2" in cert.subject.rfc4514_string()


def test_the_password_protects_the_file(test_ca: TestCA, demo_oib: str) -> None:
    with pytest.raises(ValueError):
        pkcs12.load_pkcs12(test_ca.issue_pfx(demo_oib, "right"), b"wrong")


def test_service_certificate(test_ca: TestCA) -> None:
    key, cert = test_ca.issue_service_cert()
    cert.verify_directly_issued_by(test_ca.certificate)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "fiskalcistest"
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()  # type: ignore[union-attr]


def test_a_foreign_ca_does_not_vouch_for_ours(test_ca: TestCA, demo_oib: str) -> None:
    # Even under the very same name, another CA's certificates do not verify under ours.
    foreign = TestCA.create()
    assert foreign.certificate.subject == test_ca.certificate.subject
    cert = _cert(foreign.issue_pfx(demo_oib, "pw"), "pw")
    with pytest.raises(InvalidSignature):
        cert.verify_directly_issued_by(test_ca.certificate)


def test_the_answer_certificate_is_persisted_beside_the_ca_and_reused(tmp_path: Path) -> None:
    ca = TestCA.load_or_create(tmp_path)
    key, certificate = load_or_create_service(ca, tmp_path)

    assert certificate.issuer == ca.certificate.subject
    assert certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        "fiskalcistest"
    )
    assert certificate.public_key() == key.public_key()
    assert x509.load_pem_x509_certificate((tmp_path / SERVICE_CERT_FILE).read_bytes()) == (
        certificate
    )
    assert stat.S_IMODE((tmp_path / SERVICE_KEY_FILE).stat().st_mode) == 0o600
    # The next start (the sandbox after `fiscobridge dev`) gets the same one.
    assert load_or_create_service(ca, tmp_path)[1] == certificate


def test_a_new_ca_gets_a_new_answer_certificate(tmp_path: Path) -> None:
    old = load_or_create_service(TestCA.load_or_create(tmp_path), tmp_path)[1]
    other = TestCA.create()

    renewed = load_or_create_service(other, tmp_path)[1]

    assert renewed != old
    renewed.verify_directly_issued_by(other.certificate)
