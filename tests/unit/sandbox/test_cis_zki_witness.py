"""The sandbox checks each accepted invoice's ZKI with the ZKI hash of the environment
it stands for (FISCOBRIDGE_CIS_ZKI_HASH, the setting the profile signs with), from the
key its CA issued: "ok", "mismatch", or "unverifiable" without the key. The real CIS
cannot check a ZKI, so the sandbox never refuses one; its ledger is the witness."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from fiscal.hr_cis.certificate import load_certificate
from fiscal.hr_cis.profile import HrCisProfile
from fiscal.hr_cis.settings import FiscalSettings
from fiscal.hr_cis.soap import racuni_envelope
from fiscal.hr_cis.zki import ZKI_HASH_VARIABLE, ZkiHash
from sandbox.cis.app import CisSandbox
from sandbox.cis.ca import TestCA
from sandbox.cis.checks import default_spec_dir, load_schema
from tests.factories import fiscal_number, make_invoice
from tests.fixtures.certs import DEMO_OIB, OPERATOR_OIB

pytestmark = pytest.mark.asyncio(loop_scope="session")

SETTINGS = FiscalSettings(
    oib=DEMO_OIB, premises_code="POSL1", device_code="1", operator_oib=OPERATOR_OIB
)


async def accepted_zki_check(
    sandbox: CisSandbox, ca: TestCA, profile_hash: ZkiHash, number: int = 1
) -> str:
    certificate = load_certificate(ca.issue_pfx(DEMO_OIB, "pw"), "pw")
    signed = HrCisProfile(zki_hash=profile_hash).sign(
        make_invoice(issued_at=datetime.now(UTC)), SETTINGS, certificate,
        number=fiscal_number(number),
    )
    status, _ = await sandbox.soap(racuni_envelope(signed.document))
    assert status == 200
    entry = sandbox.ledger.entries()[-1]
    assert entry["zki"] == signed.protection_code
    return str(entry["zki_check"])


@pytest.mark.parametrize("sandbox_hash", ["sha1", "sha256"])
@pytest.mark.parametrize("profile_hash", ["sha1", "sha256"])
async def test_the_zki_is_checked_with_the_environments_hash(
    test_ca: TestCA, sandbox_hash: ZkiHash, profile_hash: ZkiHash
) -> None:
    sandbox = CisSandbox(test_ca, load_schema(default_spec_dir()), zki_hash=sandbox_hash)

    check = await accepted_zki_check(sandbox, test_ca, profile_hash)

    assert check == ("ok" if sandbox_hash == profile_hash else "mismatch")


async def test_the_sandbox_reads_the_same_setting_as_the_profile(
    test_ca: TestCA, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ZKI_HASH_VARIABLE, "sha1")
    sandbox = CisSandbox(test_ca, load_schema(default_spec_dir()))
    assert sandbox.zki_hash == HrCisProfile().zki_hash == "sha1"
    assert await accepted_zki_check(sandbox, test_ca, HrCisProfile().zki_hash) == "ok"


async def test_a_key_issued_by_another_process_is_read_from_the_ca_directory(
    tmp_path: Path,
) -> None:
    issuing = TestCA.load_or_create(tmp_path)  # e.g. `fiscobridge sandbox issue-cert`
    serving = TestCA.load_or_create(tmp_path)  # the sandbox's own process
    sandbox = CisSandbox(serving, load_schema(default_spec_dir()), zki_hash="sha256")

    assert await accepted_zki_check(sandbox, issuing, "sha256") == "ok"


async def test_without_the_key_the_zki_is_unverifiable_and_still_accepted(
    tmp_path: Path,
) -> None:
    ca = TestCA.create()  # in memory only
    stranger = TestCA(ca.private_key, ca.certificate)  # same CA, no memory of its keys
    sandbox = CisSandbox(stranger, load_schema(default_spec_dir()), zki_hash="sha256")

    assert await accepted_zki_check(sandbox, ca, "sha256") == "unverifiable"
