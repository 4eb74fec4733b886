"""`fiscobridge sandbox cis` as an operator starts it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from fiscal.hr_cis.certificate import load_certificate
from fiscal.hr_cis.profile import HrCisProfile
from fiscal.hr_cis.settings import FiscalSettings
from fiscal.hr_cis.soap import AnswerVerifier, CisSigner, parse_racun_answer, racuni_envelope
from sandbox.cis.ca import CERT_FILE, SERVICE_CERT_FILE, TestCA
from tests.factories import fiscal_number, make_invoice
from tests.fixtures.certs import DEMO_OIB, OPERATOR_OIB


@pytest.fixture
def started(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    command = [sys.executable, "-m", "fiscobridge", "sandbox", "cis", "--port", "0"]
    options = ["--ca-dir", str(tmp_path / "ca"), "--s006", "1", "--answer-sha1"]
    process = subprocess.Popen(
        command + options,
        env={**os.environ, "FISCOBRIDGE_HOME": str(tmp_path / "home")},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url_line, ca_line = process.stdout.readline(), process.stdout.readline()
        assert url_line.startswith("CIS sandbox: http://127.0.0.1:"), url_line
        assert str(tmp_path / "ca" / CERT_FILE) in ca_line
        yield url_line.removeprefix("CIS sandbox: ").strip(), tmp_path / "ca"
    finally:
        process.terminate()
        process.wait(10)


def test_the_cli_serves_with_the_ca_and_faults_it_was_given(started: tuple[str, Path]) -> None:
    url, ca_dir = started
    ca = TestCA.load_or_create(ca_dir)  # the CA the sandbox created there
    certificate = load_certificate(ca.issue_pfx(DEMO_OIB, "pw"), "pw")
    settings = FiscalSettings(
        oib=DEMO_OIB, premises_code="POSL1", device_code="1", operator_oib=OPERATOR_OIB
    )
    signed = HrCisProfile().sign(make_invoice(), settings, certificate, number=fiscal_number())

    response = httpx.post(url, content=racuni_envelope(signed.document), timeout=10)

    assert b"xmldsig#rsa-sha1" in response.content  # --answer-sha1
    # Signed by the answer certificate the CLI persisted beside its CA.
    fiskalcis = x509.load_pem_x509_certificate((ca_dir / SERVICE_CERT_FILE).read_bytes())
    assert fiskalcis.issuer == ca.certificate.subject
    answer = parse_racun_answer(response.content, AnswerVerifier(CisSigner.pinned(fiskalcis)))
    assert answer.errors[0][0] == "s006"  # --s006 1: passed every check, then failed
