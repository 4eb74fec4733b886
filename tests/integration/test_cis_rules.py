"""The sandbox CIS holds the 2026 rules (hr-fiscal-record.md) over real HTTP:

- its ledger reports each numbering sequence with its gaps and repeats
  (`GET /_sandbox/ledger/sequences`; `GET /_sandbox/ledger` stays a list);
- it refuses OibPrimateljaRacuna with NacinPlac T (s013, the 2026 restrictive errors);
- it answers promijeniPodatkeRacuna: p005, or s011 (not the day of issue), s012 (not
  as fiscalized, or never fiscalized);
- it refuses RSA-SHA1 request signatures with s004, as the test service since 1 Jul 2026.
"""

from __future__ import annotations

import copy
import itertools
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
import signxml
from lxml import etree
from signxml.algorithms import CanonicalizationMethod, DigestAlgorithm, SignatureMethod

from fiscal.hr_cis.certificate import FiscalCertificate
from fiscal.hr_cis.change import (
    AsSent,
    ChangeToday,
    ChangeTooLate,
    DataChange,
    build_change,
    decide_change,
)
from fiscal.hr_cis.errors import Permanence, classify
from fiscal.hr_cis.profile import HrCisProfile
from fiscal.hr_cis.settings import FiscalSettings, TaxTreatment
from fiscal.hr_cis.signing import RequestSigner
from fiscal.hr_cis.soap import (
    F73_NS,
    PROMIJENI_PODATKE_ACTION,
    PROMIJENI_PODATKE_ZAHTJEV,
    RACUNI_ACTION,
    SIGNATURE,
    AnswerVerifier,
    ChangeAnswer,
    CisSigner,
    change_envelope,
    parse_change_answer,
    parse_racun_answer,
    racuni_envelope,
)
from sandbox.cis.answers import ZAGREB, LegacySha1Signer, cis_datetime
from schemas.invoice import Customer, PaymentMethod, TaxLine, UntaxedLine
from tests.factories import fiscal_number, make_invoice, make_line
from tests.fixtures.cis import CisSandboxHandle

TNS = f"{{{F73_NS}}}"
BUYER_OIB = "98765432198"
PROFILE = HrCisProfile()
_sources = itertools.count(480000000000000000)
_SOAP_ENVELOPE = (
    b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
    b"<soapenv:Body>%s</soapenv:Body></soapenv:Envelope>"
)


@pytest.fixture
def cis(clean_cis_sandbox: CisSandboxHandle) -> CisSandboxHandle:
    return clean_cis_sandbox


@pytest.fixture(scope="module")
def verifier(cis_sandbox: CisSandboxHandle) -> AnswerVerifier:
    return AnswerVerifier(CisSigner.pinned(cis_sandbox.service_certificate))


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def sign(
    settings: FiscalSettings,
    certificate: FiscalCertificate,
    number: int,
    *,
    premises: str = "POSL1",
    device: str = "12",
    issued_at: datetime | None = None,
    buyer: str | None = None,
    payment: PaymentMethod = PaymentMethod.CARD,
    total_cents: int | None = None,
    source_id: str | None = None,
) -> bytes:
    fields: dict[str, object] = {
        "source_id": source_id or str(next(_sources)),
        "issued_at": issued_at or datetime.now(UTC),
        "payment_method": payment,
    }
    if buyer is not None:
        fields["customer"] = Customer(name="Firma d.o.o.", tax_id=f"HR{buyer}", country="HR")
    invoice = make_invoice(**fields)
    if total_cents is not None:
        assert total_cents != int(invoice.total * 100)
    year = (issued_at or datetime.now(UTC)).astimezone(ZAGREB).year
    signed = PROFILE.sign(
        invoice, settings, certificate,
        number=fiscal_number(number, premises=premises, device=device, year=year),
    )
    return signed.document


def post(http: httpx.Client, cis: CisSandboxHandle, body: bytes, action: str) -> httpx.Response:
    return http.post(
        cis.url, content=body,
        headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": action},
    )


def racuni(http: httpx.Client, cis: CisSandboxHandle, document: bytes) -> httpx.Response:
    return post(http, cis, racuni_envelope(document), RACUNI_ACTION)


def edited(
    document: bytes, certificate: FiscalCertificate, *, sha1: bool = False, **fields: str | None
) -> bytes:
    """The RacunZahtjev with Racun fields changed (None removes one, a new one goes
    after NakDost's siblings as the schema orders it), signed again."""
    root = etree.fromstring(document)
    signature = root.find(SIGNATURE)
    assert signature is not None
    root.remove(signature)
    racun = root.find(f"{TNS}Racun")
    assert racun is not None
    for name, value in fields.items():
        element = racun.find(f"{TNS}{name}")
        if value is None:
            if element is not None:
                racun.remove(element)
        elif element is None:
            etree.SubElement(racun, f"{TNS}{name}").text = value  # OibPrimateljaRacuna: last
        else:
            element.text = value
    return sign_root(root, certificate, sha1=sha1)


def sign_root(root: etree._Element, certificate: FiscalCertificate, *, sha1: bool = False) -> bytes:
    if not sha1:
        return RequestSigner(certificate).sign(root)
    signer = LegacySha1Signer(
        method=signxml.methods.enveloped,
        signature_algorithm=SignatureMethod.RSA_SHA1,
        digest_algorithm=DigestAlgorithm.SHA1,
        c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
    )
    signed = signer.sign(
        root, key=certificate.private_key, cert=[certificate.certificate],
        reference_uri=f"#{root.get('Id')}",
    )
    return etree.tostring(signed)


def change_request(
    fiscalized: bytes,
    certificate: FiscalCertificate,
    *,
    payment: str,
    buyer_oib: str = "",
    sha1: bool = False,
    racun_fields: dict[str, str] | None = None,
) -> tuple[str, bytes]:
    """A PromijeniPodatkeRacunaZahtjev built the way the spec describes it (§2.1.5):
    the invoice's data as sent in its RacunZahtjev, then PromijenjeniNacinPlac and
    PromijenjeniOibPrimateljaRacuna (empty: remove the buyer's OIB)."""
    original = etree.fromstring(fiscalized)
    message_id = str(uuid.uuid4())
    root = etree.Element(PROMIJENI_PODATKE_ZAHTJEV, nsmap={"tns": F73_NS},
                         Id="PromijeniPodatkeRacunaZahtjev")
    header = etree.SubElement(root, f"{TNS}Zaglavlje")
    etree.SubElement(header, f"{TNS}IdPoruke").text = message_id
    etree.SubElement(header, f"{TNS}DatumVrijeme").text = cis_datetime(datetime.now(UTC))
    racun = copy.deepcopy(original.find(f"{TNS}Racun"))
    assert racun is not None
    for name, value in (racun_fields or {}).items():
        found = racun.find(f"{TNS}{name}")
        assert found is not None, name
        found.text = value
    root.append(racun)
    etree.SubElement(racun, f"{TNS}PromijenjeniNacinPlac").text = payment
    etree.SubElement(racun, f"{TNS}PromijenjeniOibPrimateljaRacuna").text = buyer_oib or None
    body = sign_root(root, certificate, sha1=sha1)
    return message_id, _SOAP_ENVELOPE % body


def change(
    http: httpx.Client, cis: CisSandboxHandle, verifier: AnswerVerifier, request: tuple[str, bytes]
) -> tuple[int, ChangeAnswer]:
    message_id, body = request
    response = post(http, cis, body, PROMIJENI_PODATKE_ACTION)
    answer = parse_change_answer(response.content, verifier, expected_message_id=message_id)
    return response.status_code, answer


# --- sequences -----------------------------------------------------------------------


def test_the_ledger_reports_each_sequence_with_its_gaps_and_repeats(
    cis: CisSandboxHandle, http: httpx.Client,
    fiscal_settings: FiscalSettings, demo_certificate: FiscalCertificate,
) -> None:
    by_device = fiscal_settings.model_copy(update={"sequence_mark": "N"})
    again = sign(fiscal_settings, demo_certificate, 2, source_id="480000000000000999")
    documents = [
        sign(fiscal_settings, demo_certificate, 1, device="1"),
        again,
        sign(fiscal_settings, demo_certificate, 4, device="2"),  # P: one sequence for both
        # Another invoice (issued a minute earlier: another ZKI) with number 2 again.
        sign(fiscal_settings, demo_certificate, 2,
             issued_at=datetime.now(UTC) - timedelta(minutes=1)),
        sign(by_device, demo_certificate, 1, device="7"),
        sign(by_device, demo_certificate, 1, device="8"),  # N: a sequence per device
    ]
    for document in [*documents, edited(again, demo_certificate, NakDost="true")]:
        assert racuni(http, cis, document).status_code == 200

    sequences = http.get(f"{cis.base_url}/_sandbox/ledger/sequences").json()
    year = datetime.now(UTC).astimezone(ZAGREB).year
    found = {(s["sequence_mark"], s["premises"], s["device"]): s for s in sequences}
    assert set(found) == {("P", "POSL1", None), ("N", "POSL1", "7"), ("N", "POSL1", "8")}
    assert found["P", "POSL1", None] == {
        "oib": fiscal_settings.oib, "sequence_mark": "P", "premises": "POSL1", "device": None,
        "year": year, "numbers": [1, 2, 4], "gaps": [3], "repeats": [2], "redeliveries": [2],
    }
    assert all(found["N", "POSL1", d]["numbers"] == [1] for d in ("7", "8"))
    assert all(not found["N", "POSL1", d]["repeats"] for d in ("7", "8"))
    # The ledger itself stays the list of accepted deliveries it always was.
    ledger = http.get(f"{cis.base_url}/_sandbox/ledger").json()
    assert isinstance(ledger, list) and len(ledger) == 7


def test_a_year_boundary_in_zagreb_starts_a_new_sequence(
    cis: CisSandboxHandle, http: httpx.Client,
    fiscal_settings: FiscalSettings, demo_certificate: FiscalCertificate,
) -> None:
    # Both moments are 31 Dec in UTC; in Zagreb the second is already 1 Jan 2027.
    last = datetime(2026, 12, 31, 22, 59, tzinfo=UTC)
    first = datetime(2026, 12, 31, 23, 0, 30, tzinfo=UTC)
    for number, moment in ((1, last), (1, first)):
        assert racuni(http, cis, sign(fiscal_settings, demo_certificate, number,
                                      issued_at=moment)).status_code == 200

    sequences = http.get(f"{cis.base_url}/_sandbox/ledger/sequences").json()
    assert [(s["year"], s["numbers"], s["repeats"]) for s in sequences] == [
        (2026, [1], []), (2027, [1], []),
    ]


# --- amounts by category ---------------------------------------------------------------


def test_margin_scheme_and_consumption_tax_pass_the_services_schema(
    cis: CisSandboxHandle, http: httpx.Client, verifier: AnswerVerifier,
    fiscal_settings: FiscalSettings, demo_certificate: FiscalCertificate,
) -> None:
    # 100.00 at 25 % VAT, 20.00 under 3 % consumption tax, 50.00 under the margin scheme.
    pnp_tax, margin_tax = "460000000000302", "460000000000303"
    invoice = make_invoice(
        source_id=str(next(_sources)), issued_at=datetime.now(UTC),
        lines=(make_line("Kava", "1", "100.00", "25"), make_line("Pivo", "4", "5.00", "3"),
               make_line("Rabljeni sat", "1", "50.00", "0")),
        taxes=(TaxLine(rate=Decimal(25), base=Decimal("100.00"), amount=Decimal("25.00")),
               TaxLine(rate=Decimal(3), base=Decimal("20.00"), amount=Decimal("0.60"),
                       tax_id=pnp_tax)),
        untaxed=(UntaxedLine(base=Decimal("50.00"), tax_id=margin_tax),),
    )
    settings = fiscal_settings.model_copy(update={"tax_mapping": {
        pnp_tax: TaxTreatment(category="pnp"), margin_tax: TaxTreatment(category="margin")}})
    year = datetime.now(UTC).astimezone(ZAGREB).year
    document = PROFILE.sign(invoice, settings, demo_certificate,
                            number=fiscal_number(1, year=year)).document
    racun = etree.fromstring(document).find(f"{TNS}Racun")
    assert racun is not None and racun.find(f"{TNS}Pnp") is not None
    assert racun.findtext(f"{TNS}IznosMarza") == "50.00"

    response = racuni(http, cis, document)

    assert response.status_code == 200, response.text
    assert parse_racun_answer(response.content, verifier).jir
    (entry,) = cis.ledger()
    assert entry["total"] == "195.60"


# --- OibPrimateljaRacuna never with T ------------------------------------------------


def test_a_buyer_oib_with_payment_by_transaction_account_is_refused(
    cis: CisSandboxHandle, http: httpx.Client, verifier: AnswerVerifier,
    fiscal_settings: FiscalSettings, demo_certificate: FiscalCertificate,
) -> None:
    with_buyer = sign(fiscal_settings, demo_certificate, 1, buyer=BUYER_OIB,
                      payment=PaymentMethod.CASH)
    assert b"OibPrimateljaRacuna" in with_buyer
    by_transfer = edited(with_buyer, demo_certificate, NacinPlac="T")

    response = racuni(http, cis, by_transfer)

    assert response.status_code == 500
    answer = parse_racun_answer(response.content, verifier)
    ((code, text),) = answer.errors
    assert code == "s013" and "OibPrimateljaRacuna" in text and answer.jir is None
    assert classify(code).permanence is Permanence.PERMANENT
    assert cis.ledger() == []
    # The same invoice with G, or with T and no buyer OIB, is accepted.
    assert racuni(http, cis, with_buyer).status_code == 200
    without = edited(with_buyer, demo_certificate, NacinPlac="T", OibPrimateljaRacuna=None)
    assert racuni(http, cis, without).status_code == 200


# --- promijeniPodatkeRacuna ----------------------------------------------------------


def test_a_same_day_change_of_payment_and_buyer_is_accepted_p005(
    cis: CisSandboxHandle, http: httpx.Client, verifier: AnswerVerifier,
    fiscal_settings: FiscalSettings, demo_certificate: FiscalCertificate,
) -> None:
    fiscalized = sign(fiscal_settings, demo_certificate, 1, payment=PaymentMethod.CASH)
    assert racuni(http, cis, fiscalized).status_code == 200

    status, answer = change(http, cis, verifier, change_request(
        fiscalized, demo_certificate, payment="K", buyer_oib=BUYER_OIB))

    assert status == 200 and answer.accepted
    assert (answer.code, answer.message) == ("p005", "Uspješna prijava promjene podataka računa.")
    (entry,) = cis.ledger()
    assert [(c["payment"], c["buyer_oib"]) for c in entry["changes"]] == [("K", BUYER_OIB)]
    assert cis.stats()["requests"] == {"ok": 1, "change_ok": 1}


def test_s011_when_the_invoice_was_not_issued_today(
    cis: CisSandboxHandle, http: httpx.Client, verifier: AnswerVerifier,
    fiscal_settings: FiscalSettings, demo_certificate: FiscalCertificate,
) -> None:
    yesterday = datetime.now(UTC) - timedelta(days=1)
    fiscalized = sign(fiscal_settings, demo_certificate, 1, issued_at=yesterday)
    assert racuni(http, cis, fiscalized).status_code == 200

    status, answer = change(http, cis, verifier, change_request(
        fiscalized, demo_certificate, payment="G"))

    assert status == 500 and not answer.accepted and answer.code is None
    assert [code for code, _ in answer.errors] == ["s011"]
    assert "trenutnom datumu" in answer.errors[0][1]
    assert "storno" in classify("s011").action
    assert "changes" not in cis.ledger()[0]


@pytest.mark.parametrize(
    "difference", ["never fiscalized", "another total", "another ZKI", "another buyer"]
)
def test_s012_when_the_change_is_not_of_the_fiscalized_invoice(
    cis: CisSandboxHandle, http: httpx.Client, verifier: AnswerVerifier,
    fiscal_settings: FiscalSettings, demo_certificate: FiscalCertificate, difference: str,
) -> None:
    fiscalized = sign(fiscal_settings, demo_certificate, 1, buyer=BUYER_OIB,
                      payment=PaymentMethod.CASH)
    if difference != "never fiscalized":
        assert racuni(http, cis, fiscalized).status_code == 200
    racun_fields: dict[str, str] = {
        "never fiscalized": {},
        "another total": {"IznosUkupno": "1.00"},
        "another ZKI": {"ZastKod": "0" * 32},
        "another buyer": {"OibPrimateljaRacuna": "47721904125"},
    }[difference]

    status, answer = change(http, cis, verifier, change_request(
        fiscalized, demo_certificate, payment="K", racun_fields=racun_fields))

    assert status == 500
    assert [code for code, _ in answer.errors] == ["s012"]
    assert classify("s012").permanence is Permanence.PERMANENT


def test_a_change_to_transaction_account_keeping_the_buyer_oib_is_refused_s013(
    cis: CisSandboxHandle, http: httpx.Client, verifier: AnswerVerifier,
    fiscal_settings: FiscalSettings, demo_certificate: FiscalCertificate,
) -> None:
    fiscalized = sign(fiscal_settings, demo_certificate, 1, buyer=BUYER_OIB,
                      payment=PaymentMethod.CASH)
    assert racuni(http, cis, fiscalized).status_code == 200

    _, refused = change(http, cis, verifier, change_request(
        fiscalized, demo_certificate, payment="T", buyer_oib=BUYER_OIB))
    _, accepted = change(http, cis, verifier, change_request(
        fiscalized, demo_certificate, payment="T", buyer_oib=""))

    assert [code for code, _ in refused.errors] == ["s013"]
    assert accepted.accepted


def test_a_sha1_signed_change_is_refused_s004(
    cis: CisSandboxHandle, http: httpx.Client, verifier: AnswerVerifier,
    fiscal_settings: FiscalSettings, demo_certificate: FiscalCertificate,
) -> None:
    fiscalized = sign(fiscal_settings, demo_certificate, 1)
    assert racuni(http, cis, fiscalized).status_code == 200

    _, sha1 = change(http, cis, verifier, change_request(
        fiscalized, demo_certificate, payment="G", sha1=True))
    _, sha256 = change(http, cis, verifier, change_request(
        fiscalized, demo_certificate, payment="G"))

    assert [code for code, _ in sha1.errors] == ["s004"]
    assert sha256.accepted


def test_a_sha1_signed_invoice_is_refused_s004_and_nothing_is_recorded(
    cis: CisSandboxHandle, http: httpx.Client, verifier: AnswerVerifier,
    fiscal_settings: FiscalSettings, demo_certificate: FiscalCertificate,
) -> None:
    document = sign(fiscal_settings, demo_certificate, 1)
    sha1 = edited(document, demo_certificate, sha1=True)
    assert b"xmldsig#rsa-sha1" in sha1

    response = racuni(http, cis, sha1)

    assert response.status_code == 500
    assert [c for c, _ in parse_racun_answer(response.content, verifier).errors] == ["s004"]
    assert http.get(f"{cis.base_url}/_sandbox/ledger/sequences").json() == []


# --- promijeniPodatkeRacuna from fiscal/hr_cis/change.py ---------------------------


def _send_change(
    http: httpx.Client, cis: CisSandboxHandle, verifier: AnswerVerifier,
    certificate: FiscalCertificate, sent: AsSent, change: DataChange,
) -> tuple[str | None, tuple[tuple[str, str], ...]]:
    message_id = str(uuid.uuid4())
    root = build_change(sent, change, message_id=message_id, sent_at=datetime.now(UTC))
    body = change_envelope(RequestSigner(certificate).sign(root))
    response = post(http, cis, body, PROMIJENI_PODATKE_ACTION)
    answer = parse_change_answer(response.content, verifier, expected_message_id=message_id)
    return answer.code, answer.errors


def test_a_same_day_change_built_from_the_fiscalized_request_is_accepted(
    cis: CisSandboxHandle, http: httpx.Client, verifier: AnswerVerifier,
    fiscal_settings: FiscalSettings, demo_certificate: FiscalCertificate,
) -> None:
    fiscalized = sign(fiscal_settings, demo_certificate, 1, payment=PaymentMethod.CASH)
    assert racuni(http, cis, fiscalized).status_code == 200
    sent = AsSent.of(fiscalized)
    assert (sent.payment_code, sent.buyer_oib) == ("G", None)

    decided = decide_change(sent, DataChange("K", BUYER_OIB), datetime.now(UTC))
    assert isinstance(decided, ChangeToday)
    code, errors = _send_change(http, cis, verifier, demo_certificate, sent, decided.change)
    assert (code, errors) == ("p005", ())
    (entry,) = cis.ledger()
    assert [(c["payment"], c["buyer_oib"]) for c in entry["changes"]] == [("K", BUYER_OIB)]

    # Removing the buyer's OIB again: the element is sent empty.
    code, errors = _send_change(http, cis, verifier, demo_certificate, sent, DataChange("G", None))
    assert (code, errors) == ("p005", ())
    (entry,) = cis.ledger()
    assert [(c["payment"], c["buyer_oib"]) for c in entry["changes"]][-1] == ("G", None)


def test_an_invoice_of_yesterday_is_not_changed_and_cis_would_refuse_it_s011(
    cis: CisSandboxHandle, http: httpx.Client, verifier: AnswerVerifier,
    fiscal_settings: FiscalSettings, demo_certificate: FiscalCertificate,
) -> None:
    yesterday = datetime.now(UTC) - timedelta(days=1)
    fiscalized = sign(fiscal_settings, demo_certificate, 1, issued_at=yesterday,
                      payment=PaymentMethod.CASH)
    assert racuni(http, cis, fiscalized).status_code == 200
    sent = AsSent.of(fiscalized)
    decided = decide_change(sent, DataChange("K", None), datetime.now(UTC))
    assert isinstance(decided, ChangeTooLate)
    assert "credit note" in decided.reason and "G to K" in decided.reason
    # The sandbox witnesses the rule the decision keeps.
    code, errors = _send_change(http, cis, verifier, demo_certificate, sent, DataChange("K", None))
    assert code is None and [c for c, _ in errors] == ["s011"]
