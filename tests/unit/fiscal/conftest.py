"""Independent checkers of what the hr-cis profile produces: the tax authority's own
XML schema (read from the shared specs, never copied) and the xmlsec1 tool."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from lxml import etree

from fiscal.hr_cis.document import RacunFields, TaxRowText
from sandbox.cis.ca import TestCA

REPO_ROOT = Path(__file__).resolve().parents[3]
SPEC_DIR = REPO_ROOT.parent / "shared" / "specs" / "hr-cis"
NS = "http://www.apis-it.hr/fin/2012/types/f73"
DS = "http://www.w3.org/2000/09/xmldsig#"
NSMAP = {"tns": NS, "ds": DS}

Verify = Callable[..., subprocess.CompletedProcess[str]]

VAT_ROWS = (
    TaxRowText("25.00", "10.00", "2.50"),
    TaxRowText("13.00", "20.00", "2.60"),
    TaxRowText("5.00", "30.00", "1.50"),
)


def racun_fields(rows: int, buyer: str | None = None, total: str = "1.00") -> RacunFields:
    """The texts of a RacunZahtjev with the first `rows` of VAT_ROWS."""
    return RacunFields(
        oib="69435151530",
        in_vat_system=rows > 0,
        issued_at="25.11.2026T10:30:00",
        sequence_mark="N",
        invoice_number="123",
        premises_code="POSL1",
        device_code="12",
        vat=VAT_ROWS[:rows],
        total=total,
        payment_code="G",
        operator_oib="47721904125",
        protection_code="e4d909c290d0fb1ca068ffaddf22cbd0",
        subsequent_delivery=True,
        buyer_oib=buyer,
    )


@pytest.fixture(scope="session")
def cis_schema() -> etree.XMLSchema:
    path = SPEC_DIR / "FiskalizacijaSchema.xsd"
    # Parsed from its path so the import of xmldsig-core-schema.xsd resolves beside it.
    return etree.XMLSchema(etree.parse(str(path)))


@pytest.fixture(scope="session")
def assert_schema_valid(cis_schema: etree.XMLSchema) -> Callable[[bytes], etree._Element]:
    def check(document: bytes) -> etree._Element:
        root = etree.fromstring(document)
        if not cis_schema.validate(root):
            pytest.fail(f"not valid against FiskalizacijaSchema.xsd: {cis_schema.error_log}")
        return root

    return check


@pytest.fixture(scope="session")
def xmlsec_verify(tmp_path_factory: pytest.TempPathFactory, test_ca: TestCA) -> Verify:
    """Runs `xmlsec1 --verify` on a document, trusting only the given CA (default: test_ca)."""
    if shutil.which("xmlsec1") is None:
        pytest.fail("xmlsec1 is not installed (Debian package xmlsec1, see .ci/apt-packages.txt)")
    directory = tmp_path_factory.mktemp("xmlsec")
    counter = iter(range(1_000_000))

    def verify(document: bytes, ca: TestCA | None = None) -> subprocess.CompletedProcess[str]:
        n = next(counter)
        trusted = directory / f"ca-{n}.pem"
        trusted.write_bytes((ca or test_ca).cert_pem())
        message = directory / f"message-{n}.xml"
        message.write_bytes(document)
        return subprocess.run(
            [
                "xmlsec1",
                "--verify",
                "--trusted-pem",
                str(trusted),
                # Id is not an ID attribute by DTD, so tell xmlsec1 which one the URI names.
                "--id-attr:Id",
                f"{NS}:RacunZahtjev",
                str(message),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )

    return verify
