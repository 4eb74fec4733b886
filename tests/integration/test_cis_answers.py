"""The sandbox's answers checked by parties other than our own code: the tax
authority's XML schema and xmlsec1's signature verification."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from lxml import etree

from fiscal.hr_cis.soap import F73_NS, SOAP_NS, echo_envelope
from sandbox.cis.app import CisSandbox
from sandbox.cis.ca import TestCA
from sandbox.cis.checks import default_spec_dir, load_schema
from tests.fixtures.cis import CisSandboxHandle

MESSAGE_ID = "3f8a9c2e-5b71-4d0a-9e6f-0c1d2b3a4f5e"
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def schema() -> etree.XMLSchema:
    return load_schema(default_spec_dir())


def content_of(envelope: bytes) -> etree._Element:
    body = etree.fromstring(envelope).find(f"{{{SOAP_NS}}}Body")
    assert body is not None
    (content,) = body
    return content


def xmlsec_verify(
    document: bytes, trusted_pem: bytes, directory: Path
) -> subprocess.CompletedProcess[str]:
    if shutil.which("xmlsec1") is None:
        pytest.fail("xmlsec1 is not installed (Debian package xmlsec1, see .ci/apt-packages.txt)")
    (directory / "ca.pem").write_bytes(trusted_pem)
    (directory / "answer.xml").write_bytes(document)
    return subprocess.run(
        [
            "xmlsec1",
            "--verify",
            "--trusted-pem",
            str(directory / "ca.pem"),
            "--id-attr:Id",
            f"{F73_NS}:RacunOdgovor",
            str(directory / "answer.xml"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("sha1", [False, True], ids=["rsa-sha256", "rsa-sha1"])
@pytest.mark.parametrize(
    "outcome",
    [{"jir": "6b7749c6-56c1-4cf5-b7f7-9f29cebc9f7f"}, {"errors": [("s004", "Neispravan")]}],
    ids=["jir", "error"],
)
def test_answers_are_schema_valid_and_verify_with_xmlsec1(
    test_ca: TestCA,
    schema: etree.XMLSchema,
    tmp_path: Path,
    sha1: bool,
    outcome: dict[str, object],
) -> None:
    sandbox = CisSandbox(test_ca, schema, answer_sha1=sha1)
    document = sandbox.signer.racun_answer(MESSAGE_ID, NOW, **outcome)  # type: ignore[arg-type]

    assert schema.validate(content_of(document)), schema.error_log
    verified = xmlsec_verify(document, test_ca.cert_pem(), tmp_path)
    assert verified.returncode == 0, verified.stderr


def test_a_tampered_answer_fails_xmlsec1_too(
    test_ca: TestCA, schema: etree.XMLSchema, tmp_path: Path
) -> None:
    sandbox = CisSandbox(test_ca, schema)
    jir = "6b7749c6-56c1-4cf5-b7f7-9f29cebc9f7f"
    document = sandbox.signer.racun_answer(MESSAGE_ID, NOW, jir=jir)
    tampered = document.replace(b"6b7749c6", b"7b7749c6")

    assert xmlsec_verify(document, test_ca.cert_pem(), tmp_path).returncode == 0
    assert xmlsec_verify(tampered, test_ca.cert_pem(), tmp_path).returncode != 0


def test_the_answer_time_is_croatian_local_time(test_ca: TestCA, schema: etree.XMLSchema) -> None:
    sandbox = CisSandbox(test_ca, schema)
    summer = datetime(2026, 7, 1, 10, 0, tzinfo=UTC)

    content = content_of(sandbox.signer.racun_answer(MESSAGE_ID, summer, errors=[("s006", "x")]))

    assert content.findtext(f"{{{F73_NS}}}Zaglavlje/{{{F73_NS}}}DatumVrijeme") == (
        "01.07.2026T12:00:00"
    )


def test_the_echo_answer_over_http_is_schema_valid(
    cis_sandbox: CisSandboxHandle, schema: etree.XMLSchema
) -> None:
    response = httpx.post(cis_sandbox.url, content=echo_envelope("provjera veze"), timeout=10)

    assert schema.validate(content_of(response.content)), schema.error_log
