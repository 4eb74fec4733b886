"""`fiscobridge sandbox issue-cert|export-ca` and `fiscobridge cert inspect`."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509

from fiscal.hr_cis.certificate import load_certificate
from fiscobridge.commands.cert import cert
from fiscobridge.commands.sandbox_certs import COMMANDS, export_ca, issue_cert
from sandbox.cis.ca import TestCA

OIB = "69435151530"
PASSWORD = "Cli-Secret-Password-77"


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    return tmp_path / "ca"


def issue(ca_dir: Path, out: Path, *flags: str, oib: str | None = OIB) -> str:
    args = ["--out", str(out), "--password", PASSWORD, "--ca-dir", str(ca_dir), *flags]
    if oib is not None:
        args += ["--oib", oib]
    result = CliRunner().invoke(issue_cert, args)
    assert result.exit_code == 0, result.output
    return result.output


def inspect(pfx: Path, *extra: str, password: str = PASSWORD) -> tuple[int, str]:
    result = CliRunner().invoke(cert, ["inspect", str(pfx), "--password", password, *extra])
    return result.exit_code, result.output


def test_both_commands_are_registered() -> None:
    assert {command.name for command in COMMANDS} == {"issue-cert", "export-ca"}


def test_issue_then_inspect(ca_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "demo.p12"
    issued = issue(ca_dir, out)
    assert f"HR{OIB}" in issued
    assert PASSWORD not in issued
    assert out.stat().st_mode & 0o077 == 0, "a PFX file must not be readable by others"

    code, output = inspect(out, "--oib", OIB)
    assert code == 0, output
    loaded = load_certificate(out.read_bytes(), PASSWORD)
    for expected in (
        loaded.subject,
        loaded.issuer,
        str(loaded.serial),
        OIB,
        loaded.fingerprint_sha256,
    ):
        assert expected in output
    assert f"{loaded.not_after:%Y-%m-%d}" in output
    assert PASSWORD not in output


def test_issued_by_the_persistent_ca_which_export_ca_writes(ca_dir: Path, tmp_path: Path) -> None:
    issue(ca_dir, tmp_path / "a.p12")
    pem = tmp_path / "ca.pem"
    result = CliRunner().invoke(export_ca, ["--out", str(pem), "--ca-dir", str(ca_dir)])
    assert result.exit_code == 0, result.output
    assert pem.read_bytes() == TestCA.load_or_create(ca_dir).cert_pem()
    ca_cert = x509.load_pem_x509_certificate(pem.read_bytes())
    loaded = load_certificate((tmp_path / "a.p12").read_bytes(), PASSWORD)
    loaded.certificate.verify_directly_issued_by(ca_cert)


def test_foreign_ca_is_not_the_sandbox_ca(ca_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "foreign.p12"
    issue(ca_dir, out, "--foreign-ca")
    loaded = load_certificate(out.read_bytes(), PASSWORD)
    sandbox_ca = TestCA.load_or_create(ca_dir)
    assert loaded.certificate.issuer != sandbox_ca.certificate.subject


@pytest.mark.parametrize(
    ("flags", "oib", "inspect_flags", "error"),
    [
        (("--expired",), OIB, (), "certificate_expired"),
        (("--no-oib",), None, (), "no_oib_in_certificate"),
        ((), OIB, ("--oib", "47721904125"), "oib_mismatch"),
    ],
)
def test_inspect_names_the_problem_and_exits_2(
    ca_dir: Path,
    tmp_path: Path,
    flags: tuple[str, ...],
    oib: str | None,
    inspect_flags: tuple[str, ...],
    error: str,
) -> None:
    out = tmp_path / "x.p12"
    issue(ca_dir, out, *flags, oib=oib)
    code, output = inspect(out, *inspect_flags)
    assert code == 2
    assert f"({error})" in output
    assert PASSWORD not in output


def test_inspect_with_a_wrong_password(ca_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.p12"
    issue(ca_dir, out)
    code, output = inspect(out, password="not-the-password-42")
    assert code == 2 and "(wrong_password)" in output
    assert "not-the-password-42" not in output


def test_inspect_a_file_that_is_not_a_certificate(tmp_path: Path) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("not a certificate")
    code, output = inspect(junk)
    assert code == 2 and "(not_pkcs12)" in output


def test_issue_cert_wants_a_valid_oib(ca_dir: Path, tmp_path: Path) -> None:
    base = ["--out", str(tmp_path / "x.p12"), "--password", PASSWORD, "--ca-dir", str(ca_dir)]
    bad = CliRunner().invoke(issue_cert, [*base, "--oib", "69435151531"])
    assert bad.exit_code == 2 and "check digit" in bad.output
    missing = CliRunner().invoke(issue_cert, base)
    assert missing.exit_code == 2 and "--no-oib" in missing.output
    assert not (tmp_path / "x.p12").exists()
