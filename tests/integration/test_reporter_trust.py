"""The reporter believes only the CIS's own signing certificate, never starts without
being told which one it is, and reaches CIS over TLS 1.2 or newer.

hr-fiscal-record.md, "Trust of CIS's answers": verify the answer against the
environment's CIS signing certificate itself, not any certificate under a trusted CA;
never fall back to a sandbox CA unless explicitly started against the sandbox.
"""

from __future__ import annotations

import ast
import contextlib
import os
import socket
import ssl
import subprocess
import sys
import threading
import warnings
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from fiscal.authority import Verdict
from fiscal.hr_cis.authority import HrCisChannel
from fiscal.hr_cis.certificate import FiscalCertificate
from fiscal.hr_cis.profile import HrCisProfile
from fiscal.hr_cis.settings import FiscalSettings
from sandbox.cis.app import CisSandbox
from sandbox.cis.ca import TestCA
from sandbox.cis.checks import default_spec_dir, load_schema
from schemas.events import InvoiceSigned
from services.reporter.service import cis_clients
from services.reporter.settings import ReporterSettings
from services.reporter.submit import Submitter
from services.reporter.trust import CisTrustError, answer_verifier, cis_tls_context
from tests.factories import fiscal_number, make_invoice
from tests.fixtures.cis import CisSandboxHandle

REPO = Path(__file__).resolve().parents[2]
SANDBOX_URL = "http://127.0.0.1:8449/FiskalizacijaServiceTest"
TRUST_VARIABLES = (
    "FISCOBRIDGE_REPORTER_CIS_TRUST",
    "FISCOBRIDGE_REPORTER_CIS_CA",
    "FISCOBRIDGE_REPORTER_CIS_SIGNER_SUBJECT",
    "FISCOBRIDGE_REPORTER_CIS_SIGNER_ISSUER",
    "FISCOBRIDGE_REPORTER_CIS_SANDBOX",
    "FISCOBRIDGE_REPORTER_CIS_URL",
)


def pem(path: Path, *certificates: x509.Certificate) -> Path:
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates))
    return path


def settings(**values: object) -> ReporterSettings:
    # Validated like the environment's values, without reading any .env file.
    return ReporterSettings.model_validate(values)


def signed_event(fiscal: FiscalSettings, certificate: FiscalCertificate, n: int) -> InvoiceSigned:
    invoice = make_invoice(number=f"INV-{n}", source_id=str(470000000000000000 + n))
    signed = HrCisProfile().sign(invoice, fiscal, certificate, number=fiscal_number(n))
    return InvoiceSigned(
        integration_uid="acme", invoice=invoice, profile="hr-cis",
        message_id=signed.message_id, protection_code=signed.protection_code,
        document=signed.document.decode(),
    )


@pytest.fixture(autouse=True)
def no_trust_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in TRUST_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def pool() -> AsyncIterator[list[httpx.AsyncClient]]:
    async with contextlib.AsyncExitStack() as stack:
        yield await cis_clients(stack, settings(concurrency=1, timeout=5))


# --- no trust, no start --------------------------------------------------------------


@pytest.mark.parametrize("sandbox", [False, True])
def test_without_a_trust_setting_there_is_no_verifier(sandbox: bool) -> None:
    url = SANDBOX_URL if sandbox else "https://cis.example/FiskalizacijaService"
    with pytest.raises(CisTrustError, match="FISCOBRIDGE_REPORTER_CIS_TRUST") as refused:
        answer_verifier(settings(cis_url=url, cis_sandbox=sandbox))
    assert ("fiskalcis.cert.pem" in str(refused.value)) is sandbox


def test_the_reporter_process_refuses_to_start_without_trust(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in TRUST_VARIABLES}
    env |= {
        "FISCOBRIDGE_HOME": str(tmp_path),
        "FISCOBRIDGE_REPORTER_CIS_URL": SANDBOX_URL,
        "FISCOBRIDGE_REPORTER_CIS_SANDBOX": "true",
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",  # never reached
    }
    done = subprocess.run(
        [sys.executable, "-m", "fiscobridge", "run", "reporter"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode != 0
    assert "no trust for CIS's answers is configured" in done.stderr


def test_plain_http_is_only_for_the_declared_sandbox(tmp_path: Path, test_ca: TestCA) -> None:
    trust = pem(tmp_path / "cis.pem", test_ca.issue_service_cert()[1])
    with pytest.raises(CisTrustError, match=r"plain http.*CIS_SANDBOX=true"):
        answer_verifier(settings(cis_url=SANDBOX_URL, cis_trust=trust))
    with pytest.raises(CisTrustError, match="not an http"):
        answer_verifier(settings(cis_url="ftp://cis.example/", cis_trust=trust))
    assert answer_verifier(settings(cis_url=SANDBOX_URL, cis_trust=trust, cis_sandbox=True))
    assert answer_verifier(settings(cis_url="https://cis.example/x", cis_trust=trust))


def test_a_ca_is_not_a_cis_certificate(tmp_path: Path, test_ca: TestCA) -> None:
    trust = pem(tmp_path / "ca.pem", test_ca.certificate)
    with pytest.raises(CisTrustError, match=r"CIS_TRUST: .* is a CA certificate"):
        answer_verifier(settings(cis_url=SANDBOX_URL, cis_sandbox=True, cis_trust=trust))


def test_the_pinned_file_holds_one_certificate(tmp_path: Path, test_ca: TestCA) -> None:
    both = pem(tmp_path / "both.pem", test_ca.issue_service_cert()[1], test_ca.certificate)
    with pytest.raises(CisTrustError, match="holds 2 certificates"):
        answer_verifier(settings(cis_url=SANDBOX_URL, cis_sandbox=True, cis_trust=both))
    with pytest.raises(CisTrustError, match="cannot read"):
        answer_verifier(
            settings(cis_url=SANDBOX_URL, cis_sandbox=True, cis_trust=tmp_path / "missing.pem")
        )
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(CisTrustError, match="no PEM certificate"):
        answer_verifier(
            settings(cis_url=SANDBOX_URL, cis_sandbox=True, cis_trust=tmp_path / "junk.pem")
        )


def test_by_name_needs_all_three_settings_and_not_the_pin(tmp_path: Path, test_ca: TestCA) -> None:
    ca = pem(tmp_path / "ca.pem", test_ca.certificate)
    with pytest.raises(CisTrustError, match="CIS_SIGNER_ISSUER as well"):
        answer_verifier(settings(cis_url="https://c.example/", cis_ca=ca,
                                 cis_signer_subject="CN=fiskalcis"))
    with pytest.raises(CisTrustError, match="not both"):
        pinned = pem(tmp_path / "s.pem", test_ca.issue_service_cert()[1])
        answer_verifier(settings(cis_url="https://c.example/", cis_ca=ca, cis_trust=pinned))


def test_trust_by_name_comes_from_the_environment(
    tmp_path: Path, test_ca: TestCA, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, fiskalcis = test_ca.issue_service_cert()
    prefix = "FISCOBRIDGE_REPORTER_"
    monkeypatch.setenv(f"{prefix}CIS_URL", "https://cis.example/FiskalizacijaService")
    monkeypatch.setenv(f"{prefix}CIS_CA", str(pem(tmp_path / "ca.pem", test_ca.certificate)))
    monkeypatch.setenv(f"{prefix}CIS_SIGNER_SUBJECT", fiskalcis.subject.rfc4514_string())
    monkeypatch.setenv(f"{prefix}CIS_SIGNER_ISSUER", fiskalcis.issuer.rfc4514_string())
    verifier = answer_verifier(ReporterSettings())
    verifier.signer.check(fiskalcis)
    assert verifier.signer.subject == fiskalcis.subject


# --- the sandbox's own certificate, and a forgery from its CA ------------------------


@pytest.mark.asyncio(loop_scope="session")
async def test_the_sandbox_answer_verifies_against_its_pinned_certificate(
    clean_cis_sandbox: CisSandboxHandle, pool: list[httpx.AsyncClient], tmp_path: Path,
    fiscal_settings: FiscalSettings, demo_certificate: FiscalCertificate,
) -> None:
    cis = clean_cis_sandbox
    trust = pem(tmp_path / "fiskalcis.pem", cis.service_certificate)
    verifier = answer_verifier(settings(cis_url=cis.url, cis_sandbox=True, cis_trust=trust))

    result = await Submitter(pool, {"hr-cis": HrCisChannel(cis.url, verifier)}).submit(
        signed_event(fiscal_settings, demo_certificate, 1)
    )

    assert result.verdict is Verdict.ACCEPTED and result.receipt_id is not None


@pytest.mark.asyncio(loop_scope="session")
async def test_a_forged_answer_signed_by_a_client_certificate_of_the_same_ca_is_refused(
    cis_sandbox: CisSandboxHandle, test_ca: TestCA, tmp_path: Path,
    fiscal_settings: FiscalSettings, demo_certificate: FiscalCertificate,
) -> None:
    # Someone between the reporter and CIS answers with a JIR of their own, signed
    # with a business's fiscal certificate: the same CA issued it as the CIS's.
    forger = CisSandbox(
        test_ca, load_schema(default_spec_dir()),
        service=(demo_certificate.private_key, demo_certificate.certificate),
    )
    assert demo_certificate.certificate.issuer == cis_sandbox.service_certificate.issuer

    async def answer(request: httpx.Request) -> httpx.Response:
        status, body = await forger.soap(request.content)
        return httpx.Response(status, content=body)

    trust = pem(tmp_path / "fiskalcis.pem", cis_sandbox.service_certificate)
    verifier = answer_verifier(settings(cis_url=SANDBOX_URL, cis_sandbox=True, cis_trust=trust))
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        result = await Submitter([client], {"hr-cis": HrCisChannel(SANDBOX_URL, verifier)}).submit(
            signed_event(fiscal_settings, demo_certificate, 2)
        )

    assert result.verdict is Verdict.UNVERIFIED, result
    assert "not signed by the CIS" in result.message and "FISKAL 1" in result.message
    # A well-formed answer with a JIR, refused.
    assert result.document is not None and b"<tns:Jir>" in result.document


# --- production code never reaches into the sandbox ----------------------------------


def test_production_code_does_not_import_the_sandbox() -> None:
    offenders = []
    for folder in ("services", "runtime", "fiscal", "connectors", "schemas"):
        for path in (REPO / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = (
                    [a.name for a in node.names] if isinstance(node, ast.Import)
                    else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level
                    else []
                )
                offenders += [
                    f"{path.relative_to(REPO)}:{getattr(node, 'lineno', '?')} {name}"
                    for name in names if name == "sandbox" or name.startswith("sandbox.")
                ]
    assert offenders == []


# --- TLS 1.2 or newer ------------------------------------------------------------------


def _lenient_base() -> ssl.SSLContext:
    """What httpx's default context could be on a host whose OpenSSL or httpx allow
    TLS 1.0/1.1 (today both default to 1.2, which is why the test needs this)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.0/1.1, on purpose
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_default_certs()
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    return context


@pytest.fixture
def lenient_base(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(httpx, "create_ssl_context", lambda *a, **k: _lenient_base())


def test_the_cis_tls_context_starts_at_tls_1_2() -> None:
    context = cis_tls_context()
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


@pytest.mark.usefixtures("lenient_base")
def test_the_cis_tls_context_starts_at_tls_1_2_whatever_the_default() -> None:
    assert httpx.create_ssl_context().minimum_version == ssl.TLSVersion.TLSv1
    assert cis_tls_context().minimum_version == ssl.TLSVersion.TLSv1_2


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "tls.pem", directory / "tls.key"
    pem(cert_path, certificate)
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ))
    return cert_path, key_path


@contextlib.contextmanager
def tls_server(directory: Path, version: ssl.TLSVersion) -> Iterator[tuple[int, list[str]]]:
    """A server that speaks exactly `version`; yields its port and what each handshake
    ended with (the protocol, or the error)."""
    cert_path, key_path = _self_signed(directory)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.1 is, on purpose
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_path, key_path)
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
        context.minimum_version = context.maximum_version = version
    listener = socket.create_server(("127.0.0.1", 0))
    results: list[str] = []

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            try:
                with context.wrap_socket(connection, server_side=True) as tls:
                    results.append(tls.version() or "?")
                    tls.recv(1)
            except (ssl.SSLError, OSError) as exc:
                results.append(f"error: {exc}")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], results
    finally:
        listener.close()
        thread.join(5)


def _handshake(context: ssl.SSLContext, port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            return tls.version() or "?"


def test_a_tls_1_1_server_is_refused_and_tls_1_2_accepted(tmp_path: Path) -> None:
    with tls_server(tmp_path, ssl.TLSVersion.TLSv1_1) as (port, _):
        # The control: a client that allows TLS 1.1 does get it from this server.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            lenient = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            lenient.minimum_version = ssl.TLSVersion.TLSv1
            lenient.set_ciphers("DEFAULT:@SECLEVEL=0")
        lenient.load_verify_locations(tmp_path / "tls.pem")
        assert _handshake(lenient, port) == "TLSv1.1"

        strict = cis_tls_context()
        strict.load_verify_locations(tmp_path / "tls.pem")
        with pytest.raises(ssl.SSLError, match=r"(?i)protocol|version"):
            _handshake(strict, port)

    accepted = ((ssl.TLSVersion.TLSv1_2, "TLSv1.2"), (ssl.TLSVersion.TLSv1_3, "TLSv1.3"))
    for version, expected in accepted:
        with tls_server(tmp_path, version) as (port, _):
            strict = cis_tls_context()
            strict.load_verify_locations(tmp_path / "tls.pem")
            assert _handshake(strict, port) == expected


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.usefixtures("lenient_base")
async def test_the_reporters_own_clients_refuse_tls_1_1(tmp_path: Path) -> None:
    # The clients cis_clients builds (the reporter's), on a base context that would
    # take TLS 1.1: the handshake fails on the protocol, before any certificate check.
    with tls_server(tmp_path, ssl.TLSVersion.TLSv1_1) as (port, results):
        control = _lenient_base()
        control.load_verify_locations(tmp_path / "tls.pem")
        assert _handshake(control, port) == "TLSv1.1"
        async with contextlib.AsyncExitStack() as stack:
            (client,) = await cis_clients(stack, settings(concurrency=1, timeout=5))
            with pytest.raises(httpx.ConnectError) as failed:
                await client.post(f"https://localhost:{port}/FiskalizacijaService", content=b"x")
    text = f"{failed.value} {results}".lower()
    assert "protocol" in text or "version" in text, text
    assert "certificate verify failed" not in text
