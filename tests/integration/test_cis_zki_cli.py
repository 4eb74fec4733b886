"""`fiscobridge sandbox cis` checks ZKIs with FISCOBRIDGE_CIS_ZKI_HASH, the variable
the profile signs with, using keys issued by its CA in another process (as
`fiscobridge sandbox issue-cert` and the demo do)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from fiscal.hr_cis.certificate import load_certificate
from fiscal.hr_cis.profile import HrCisProfile
from fiscal.hr_cis.settings import FiscalSettings
from fiscal.hr_cis.soap import racuni_envelope
from fiscal.hr_cis.zki import ZKI_HASH_VARIABLE, ZkiHash
from sandbox.cis.ca import TestCA
from tests.factories import fiscal_number, make_invoice
from tests.fixtures.certs import DEMO_OIB, OPERATOR_OIB


@pytest.fixture
def sandbox_with_sha1(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    ca_dir = tmp_path / "ca"
    process = subprocess.Popen(
        [sys.executable, "-m", "fiscobridge", "sandbox", "cis", "--port", "0",
         "--ca-dir", str(ca_dir)],
        env={**os.environ, "FISCOBRIDGE_HOME": str(tmp_path / "home"), ZKI_HASH_VARIABLE: "sha1"},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("CIS sandbox: http://127.0.0.1:"), line
        yield line.removeprefix("CIS sandbox: ").strip(), ca_dir
    finally:
        process.terminate()
        process.wait(10)


def test_the_cli_sandbox_checks_zkis_with_the_environments_hash(
    sandbox_with_sha1: tuple[str, Path],
) -> None:
    url, ca_dir = sandbox_with_sha1
    certificate = load_certificate(TestCA.load_or_create(ca_dir).issue_pfx(DEMO_OIB, "pw"), "pw")
    settings = FiscalSettings(
        oib=DEMO_OIB, premises_code="POSL1", device_code="1", operator_oib=OPERATOR_OIB
    )
    cases: tuple[tuple[int, ZkiHash], ...] = ((1, "sha1"), (2, "sha256"))
    for number, hash_name in cases:
        signed = HrCisProfile(zki_hash=hash_name).sign(
            make_invoice(issued_at=datetime.now(UTC)), settings, certificate,
            number=fiscal_number(number),
        )
        response = httpx.post(url, content=racuni_envelope(signed.document), timeout=10)
        assert response.status_code == 200, response.text

    base = url.removesuffix("/FiskalizacijaServiceTest")
    ledger = httpx.get(f"{base}/_sandbox/ledger", timeout=10).json()
    assert [(e["br_ozn_rac"], e["zki_check"]) for e in ledger] == [("1", "ok"), ("2", "mismatch")]
