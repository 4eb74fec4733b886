"""The sandbox CIS over real HTTP: every refusal code, acceptance, echo, faults.

Each refusal is read back the way the reporter reads it (`parse_racun_answer` with an
`AnswerVerifier` pinning the sandbox's answer certificate, then `classify`), so these tests pin the
sandbox and the client side of the SOAP layer together.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import signxml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from lxml import etree
from signxml.algorithms import CanonicalizationMethod, DigestAlgorithm, SignatureMethod

from fiscal.hr_cis.certificate import FiscalCertificate, load_certificate
from fiscal.hr_cis.errors import Permanence, classify
from fiscal.hr_cis.profile import HrCisProfile, SignedInvoice
from fiscal.hr_cis.settings import FiscalSettings
from fiscal.hr_cis.soap import (
    F73_NS,
    RACUNI_ACTION,
    SIGNATURE,
    AnswerInvalid,
    AnswerVerifier,
    CisAnswer,
    CisSigner,
    echo_envelope,
    parse_echo_answer,
    parse_racun_answer,
    racuni_envelope,
)
from sandbox.cis.answers import LegacySha1Signer
from sandbox.cis.app import CisSandbox
from sandbox.cis.ca import TestCA
from sandbox.cis.checks import default_spec_dir, load_schema
from tests.factories import fiscal_number, make_invoice
from tests.fixtures.certs import Pfx
from tests.fixtures.cis import CisSandboxHandle

TNS = f"{{{F73_NS}}}"
_numbers = itertools.count(1000)
PROFILE = HrCisProfile()


def find(element: etree._Element, path: str) -> etree._Element:
    found = element.find(path)
    assert found is not None, path
    return found


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
    settings: FiscalSettings, certificate: FiscalCertificate, *, now: datetime | None = None
) -> SignedInvoice:
    n = next(_numbers)
    invoice = make_invoice(number=f"INV-{n}")
    return PROFILE.sign(invoice, settings, certificate, now=now, number=fiscal_number(n))


def post(http: httpx.Client, cis: CisSandboxHandle, document: bytes) -> httpx.Response:
    return http.post(
        cis.url,
        content=racuni_envelope(document),
        headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": RACUNI_ACTION},
    )


def resign(
    document: bytes,
    key: rsa.RSAPrivateKey,
    certificate: x509.Certificate,
    *,
    sha1: bool = False,
    edit: dict[str, str] | None = None,
) -> bytes:
    """The request re-signed by another key (after changing `edit`'s Racun fields),
    the way a client other than our profile would sign it."""
    root = etree.fromstring(document)
    root.remove(find(root, SIGNATURE))
    for name, value in (edit or {}).items():
        find(root, f"{TNS}Racun/{TNS}{name}").text = value
    signer = LegacySha1Signer(
        method=signxml.methods.enveloped,
        signature_algorithm=SignatureMethod.RSA_SHA1 if sha1 else SignatureMethod.RSA_SHA256,
        digest_algorithm=DigestAlgorithm.SHA1 if sha1 else DigestAlgorithm.SHA256,
        c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
    )
    signed = signer.sign(root, key=key, cert=[certificate], reference_uri=f"#{root.get('Id')}")
    return etree.tostring(signed)


def refused(
    http: httpx.Client,
    cis: CisSandboxHandle,
    verifier: AnswerVerifier,
    document: bytes,
    message_id: str | None,
) -> CisAnswer:
    response = post(http, cis, document)
    assert response.status_code == 500, response.text
    answer = parse_racun_answer(response.content, verifier, expected_message_id=message_id)
    assert answer.jir is None
    assert len(answer.errors) == 1
    assert cis.ledger() == []
    return answer


def test_a_valid_invoice_gets_a_verifiable_jir_and_one_ledger_entry(
    cis: CisSandboxHandle,
    http: httpx.Client,
    verifier: AnswerVerifier,
    fiscal_settings: FiscalSettings,
    demo_certificate: FiscalCertificate,
) -> None:
    signed = sign(fiscal_settings, demo_certificate)

    response = post(http, cis, signed.document)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/xml")
    answer = parse_racun_answer(response.content, verifier, expected_message_id=signed.message_id)
    assert answer.errors == ()
    assert answer.jir is not None and len(answer.jir) == 36
    assert answer.message_id == signed.message_id
    assert answer.document == response.content
    (entry,) = cis.ledger()
    assert entry["jir"] == answer.jir
    assert entry["message_id"] == signed.message_id
    assert entry["oib"] == fiscal_settings.oib
    assert entry["zki"] == signed.protection_code
    assert (entry["ozn_pos_pr"], entry["ozn_nap_ur"]) == ("POSL1", "12")
    assert entry["nak_dost"] is False
    assert cis.stats()["requests"] == {"ok": 1}


def test_the_answer_is_signed_by_the_service_certificate_not_just_any_test_ca_cert(
    cis: CisSandboxHandle,
    http: httpx.Client,
    fiscal_settings: FiscalSettings,
    demo_certificate: FiscalCertificate,
) -> None:
    signed = sign(fiscal_settings, demo_certificate)
    response = post(http, cis, signed.document)

    pinned = AnswerVerifier(CisSigner.pinned(cis.service_certificate))
    assert parse_racun_answer(response.content, pinned).jir is not None
    # Not the CA's own key, and not a client certificate from that CA either.
    assert cis.service_certificate.issuer == cis.sandbox.ca.certificate.subject
    assert cis.service_certificate != cis.sandbox.ca.certificate
    assert cis.service_certificate != demo_certificate.certificate
    other = AnswerVerifier(CisSigner.pinned(cis.sandbox.ca.issue_service_cert()[1]))
    with pytest.raises(AnswerInvalid, match="not signed by the CIS"):
        parse_racun_answer(response.content, other)


def test_a_subsequent_delivery_is_recorded_as_such(
    cis: CisSandboxHandle,
    http: httpx.Client,
    fiscal_settings: FiscalSettings,
    demo_certificate: FiscalCertificate,
) -> None:
    n = next(_numbers)
    invoice = make_invoice(number=f"INV-{n}")
    signed = PROFILE.sign(invoice, fiscal_settings, demo_certificate, subsequent_delivery=True,
                          number=fiscal_number(n))

    assert post(http, cis, signed.document).status_code == 200

    (entry,) = cis.ledger()
    assert entry["nak_dost"] is True


def test_s001_names_the_element_the_schema_misses(
    cis: CisSandboxHandle,
    http: httpx.Client,
    verifier: AnswerVerifier,
    fiscal_settings: FiscalSettings,
    demo_certificate: FiscalCertificate,
) -> None:
    signed = sign(fiscal_settings, demo_certificate)
    root = etree.fromstring(signed.document)
    racun = find(root, f"{TNS}Racun")
    racun.remove(find(racun, f"{TNS}OibOper"))

    answer = refused(http, cis, verifier, etree.tostring(root), signed.message_id)

    ((code, message),) = answer.errors
    assert code == "s001"
    assert message.startswith("Poruka nije u skladu s XML shemom")
    assert "OibOper" in message
    assert answer.message_id == signed.message_id
    assert classify(code).permanence is Permanence.PERMANENT


def test_s002_for_an_expired_certificate(
    cis: CisSandboxHandle,
    http: httpx.Client,
    verifier: AnswerVerifier,
    fiscal_settings: FiscalSettings,
    expired_pfx: Pfx,
) -> None:
    # Signed while it was still valid, received after it expired.
    then = datetime.now(UTC) - timedelta(days=2)
    certificate = load_certificate(expired_pfx.data, expired_pfx.password, now=then)
    signed = sign(fiscal_settings, certificate, now=then)

    answer = refused(http, cis, verifier, signed.document, signed.message_id)

    assert answer.errors[0][0] == "s002"
    assert classify("s002").permanence is Permanence.PERMANENT


def test_s002_for_a_certificate_from_an_untrusted_ca(
    cis: CisSandboxHandle,
    http: httpx.Client,
    verifier: AnswerVerifier,
    fiscal_settings: FiscalSettings,
    foreign_pfx: Pfx,
) -> None:
    certificate = load_certificate(foreign_pfx.data, foreign_pfx.password)
    signed = sign(fiscal_settings, certificate)

    answer = refused(http, cis, verifier, signed.document, signed.message_id)

    ((code, message),) = answer.errors
    assert code == "s002"
    assert "pouzdanog izdavatelja" in message


def test_s003_for_a_certificate_without_oib(
    cis: CisSandboxHandle,
    http: httpx.Client,
    verifier: AnswerVerifier,
    test_ca: TestCA,
    fiscal_settings: FiscalSettings,
    demo_certificate: FiscalCertificate,
) -> None:
    key, certificate, _ = pkcs12.load_key_and_certificates(
        test_ca.issue_pfx(fiscal_settings.oib, "pw", include_oib=False), b"pw"
    )
    assert isinstance(key, rsa.RSAPrivateKey) and certificate is not None
    signed = sign(fiscal_settings, demo_certificate)

    answer = refused(
        http, cis, verifier, resign(signed.document, key, certificate), signed.message_id
    )

    assert answer.errors[0][0] == "s003"
    assert classify("s003").permanence is Permanence.PERMANENT


def test_s004_for_a_message_changed_after_signing(
    cis: CisSandboxHandle,
    http: httpx.Client,
    verifier: AnswerVerifier,
    fiscal_settings: FiscalSettings,
    demo_certificate: FiscalCertificate,
) -> None:
    signed = sign(fiscal_settings, demo_certificate)
    tampered = signed.document.replace(b"<tns:IznosUkupno>", b"<tns:IznosUkupno>1")
    assert tampered != signed.document

    answer = refused(http, cis, verifier, tampered, signed.message_id)

    assert answer.errors == (("s004", "Neispravan digitalni potpis."),)
    assert classify("s004").permanence is Permanence.PERMANENT


def test_s004_for_a_sha1_signature_as_the_test_service_since_july_2026(
    cis: CisSandboxHandle,
    http: httpx.Client,
    verifier: AnswerVerifier,
    fiscal_settings: FiscalSettings,
    demo_certificate: FiscalCertificate,
) -> None:
    signed = sign(fiscal_settings, demo_certificate)
    sha1 = resign(
        signed.document, demo_certificate.private_key, demo_certificate.certificate, sha1=True
    )

    answer = refused(http, cis, verifier, sha1, signed.message_id)

    assert answer.errors[0][0] == "s004"


def test_s004_for_an_unsigned_message(
    cis: CisSandboxHandle,
    http: httpx.Client,
    verifier: AnswerVerifier,
    fiscal_settings: FiscalSettings,
    demo_certificate: FiscalCertificate,
) -> None:
    signed = sign(fiscal_settings, demo_certificate)
    root = etree.fromstring(signed.document)
    root.remove(find(root, SIGNATURE))

    answer = refused(http, cis, verifier, etree.tostring(root), signed.message_id)

    assert answer.errors[0][0] == "s004"


def test_s005_when_the_message_oib_is_not_the_certificates(
    cis: CisSandboxHandle,
    http: httpx.Client,
    verifier: AnswerVerifier,
    fiscal_settings: FiscalSettings,
    demo_certificate: FiscalCertificate,
) -> None:
    signed = sign(fiscal_settings, demo_certificate)
    other_oib = resign(
        signed.document,
        demo_certificate.private_key,
        demo_certificate.certificate,
        edit={"Oib": "47721904125"},
    )

    answer = refused(http, cis, verifier, other_oib, signed.message_id)

    assert answer.errors[0][0] == "s005"
    assert classify("s005").permanence is Permanence.PERMANENT


def test_s006_is_injected_and_transient(
    cis: CisSandboxHandle,
    http: httpx.Client,
    verifier: AnswerVerifier,
    fiscal_settings: FiscalSettings,
    demo_certificate: FiscalCertificate,
) -> None:
    cis.set_faults(s006=1.0)
    signed = sign(fiscal_settings, demo_certificate)

    answer = refused(http, cis, verifier, signed.document, signed.message_id)

    assert answer.errors[0] == ("s006", "Sistemska pogreška prilikom obrade zahtjeva.")
    assert classify("s006").permanence is Permanence.TRANSIENT
    assert cis.stats()["requests"] == {"s006": 1}


def test_echo_answers_the_text_back(cis: CisSandboxHandle, http: httpx.Client) -> None:
    text = "proizvoljan tekst <&> čćžšđ"
    response = http.post(cis.url, content=echo_envelope(text))

    assert response.status_code == 200
    assert parse_echo_answer(response.content) == text


def test_the_production_path_answers_too(cis: CisSandboxHandle, http: httpx.Client) -> None:
    response = http.post(cis.base_url + "/FiskalizacijaService", content=echo_envelope("x"))

    assert parse_echo_answer(response.content) == "x"


def test_a_request_that_is_not_soap_gets_a_soap_fault(
    cis: CisSandboxHandle, http: httpx.Client, verifier: AnswerVerifier
) -> None:
    response = http.post(cis.url, content=b"hello")

    assert response.status_code == 500
    with pytest.raises(AnswerInvalid, match="SOAP fault soap:Client"):
        parse_racun_answer(response.content, verifier)
    assert cis.stats()["requests"] == {"fault": 1}


def test_latency_makes_a_short_client_timeout_expire(
    cis: CisSandboxHandle, http: httpx.Client
) -> None:
    cis.set_faults(latency_ms=400, jitter_ms=100)

    with pytest.raises(httpx.ReadTimeout):
        http.post(cis.url, content=echo_envelope("slow"), timeout=0.1)
    started = time.monotonic()
    response = http.post(cis.url, content=echo_envelope("slow"), timeout=5)
    assert time.monotonic() - started >= 0.4
    assert parse_echo_answer(response.content) == "slow"


def test_http_500_fault_is_a_bare_500_without_racun_odgovor(
    cis: CisSandboxHandle,
    http: httpx.Client,
    fiscal_settings: FiscalSettings,
    demo_certificate: FiscalCertificate,
) -> None:
    cis.set_faults(http500=1.0)

    response = post(http, cis, sign(fiscal_settings, demo_certificate).document)

    assert response.status_code == 500
    assert b"RacunOdgovor" not in response.content
    assert cis.ledger() == []


def test_a_hang_outlasts_the_client_timeout(cis: CisSandboxHandle, http: httpx.Client) -> None:
    cis.set_faults(hang=1.0, hang_seconds=60)

    with pytest.raises(httpx.ReadTimeout):
        http.post(cis.url, content=echo_envelope("anyone?"), timeout=0.5)
    assert cis.stats()["requests"] == {"hang": 1}


def test_a_lost_answer_leaves_the_invoice_accepted_so_a_resend_duplicates_it(
    cis: CisSandboxHandle,
    http: httpx.Client,
    verifier: AnswerVerifier,
    fiscal_settings: FiscalSettings,
    demo_certificate: FiscalCertificate,
) -> None:
    n = next(_numbers)
    invoice = make_invoice(number=f"INV-{n}")
    cis.set_faults(lost_answer=1.0)
    first = PROFILE.sign(invoice, fiscal_settings, demo_certificate, number=fiscal_number(n))
    with pytest.raises(httpx.ReadTimeout):
        http.post(cis.url, content=racuni_envelope(first.document), timeout=0.5)

    cis.set_faults(lost_answer=0)
    again = PROFILE.sign(invoice, fiscal_settings, demo_certificate, subsequent_delivery=True,
                         number=fiscal_number(n))
    answer = parse_racun_answer(
        post(http, cis, again.document).content, verifier, expected_message_id=again.message_id
    )

    assert answer.jir is not None
    assert [e["message_id"] for e in cis.ledger()] == [first.message_id, again.message_id]
    assert cis.stats()["duplicates"] == 1


def test_an_outage_answers_503_until_it_ends(cis: CisSandboxHandle, http: httpx.Client) -> None:
    cis.set_faults(outage_seconds=60)

    assert http.post(cis.url, content=echo_envelope("up?")).status_code == 503

    cis.set_faults(outage_start=None, outage_end=None)
    assert http.post(cis.url, content=echo_envelope("up?")).status_code == 200


def _connects(url: str) -> bool:
    try:
        with httpx.Client(timeout=2) as fresh:
            fresh.post(url, content=echo_envelope("up?"))
    except httpx.ConnectError:
        return False
    return True


def _eventually(condition: object, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def test_a_refusing_outage_refuses_connections_then_serves_again(
    cis: CisSandboxHandle,
) -> None:
    cis.set_faults(outage_seconds=1.5, outage_mode="refuse")

    assert _eventually(lambda: not _connects(cis.url), seconds=1)
    assert _eventually(lambda: _connects(cis.url))
    assert cis.stats()["requests"].get("echo", 0) >= 1


def test_faults_change_at_run_time_over_http(
    cis: CisSandboxHandle,
    http: httpx.Client,
    verifier: AnswerVerifier,
    fiscal_settings: FiscalSettings,
    demo_certificate: FiscalCertificate,
) -> None:
    controls = cis.base_url + "/_sandbox/faults"
    changed = http.post(controls, json={"s006": 1.0, "latency_ms": 5})
    assert changed.status_code == 200
    assert changed.json()["s006"] == 1.0
    assert http.get(controls).json()["latency_ms"] == 5

    signed = sign(fiscal_settings, demo_certificate)
    answer = parse_racun_answer(post(http, cis, signed.document).content, verifier)
    assert answer.errors[0][0] == "s006"

    bad = http.post(controls, json={"s006": 2, "hang": 1.0})
    assert bad.status_code == 422
    assert "s006" in bad.text
    assert http.get(controls).json()["hang"] == 0  # nothing of a bad update applies

    assert http.delete(controls).json()["s006"] == 0
    answer = parse_racun_answer(
        post(http, cis, sign(fiscal_settings, demo_certificate).document).content, verifier
    )
    assert answer.jir is not None


def test_ledger_and_stats_over_http(
    cis: CisSandboxHandle,
    http: httpx.Client,
    fiscal_settings: FiscalSettings,
    demo_certificate: FiscalCertificate,
) -> None:
    post(http, cis, sign(fiscal_settings, demo_certificate).document)
    post(http, cis, b"<tns:RacunZahtjev xmlns:tns='" + F73_NS.encode() + b"'/>")

    ledger = http.get(cis.base_url + "/_sandbox/ledger").json()
    assert len(ledger) == 1 and ledger[0]["oib"] == fiscal_settings.oib
    stats = http.get(cis.base_url + "/_sandbox/stats").json()
    assert stats["requests"] == {"ok": 1, "s001": 1}
    assert (stats["total"], stats["accepted"], stats["duplicates"]) == (2, 1, 0)

    assert http.delete(cis.base_url + "/_sandbox/ledger").json() == []
    assert cis.ledger() == []
    assert http.get(cis.base_url + "/_sandbox/ca.pem").content == cis.ca_pem


async def test_many_concurrent_requests_are_all_answered(
    cis: CisSandboxHandle, fiscal_settings: FiscalSettings, demo_certificate: FiscalCertificate
) -> None:
    documents = [sign(fiscal_settings, demo_certificate) for _ in range(40)]
    async with httpx.AsyncClient(timeout=10) as client:
        responses = await asyncio.gather(
            *(client.post(cis.url, content=racuni_envelope(d.document)) for d in documents)
        )

    assert [r.status_code for r in responses] == [200] * 40
    assert {e["message_id"] for e in cis.ledger()} == {d.message_id for d in documents}


def test_an_outage_scheduled_between_two_times_starts_on_time(
    cis: CisSandboxHandle, http: httpx.Client
) -> None:
    now = datetime.now(UTC)
    window = {
        "outage_start": (now + timedelta(seconds=0.5)).isoformat(),
        "outage_end": (now + timedelta(seconds=60)).isoformat(),
    }
    assert http.post(cis.base_url + "/_sandbox/faults", json=window).status_code == 200

    assert http.post(cis.url, content=echo_envelope("up?")).status_code == 200
    assert _eventually(
        lambda: http.post(cis.url, content=echo_envelope("up?")).status_code == 503, seconds=5
    )


def test_an_outage_needs_an_end_and_aware_times(cis: CisSandboxHandle, http: httpx.Client) -> None:
    controls = cis.base_url + "/_sandbox/faults"

    no_end = http.post(controls, json={"outage_start": datetime.now(UTC).isoformat()})
    naive = http.post(controls, json={"outage_end": "2030-01-01T00:00:00"})
    unknown = http.post(controls, json={"s007": 1})

    assert [r.status_code for r in (no_end, naive, unknown)] == [422, 422, 422]
    assert "outage_end" in no_end.text
    assert http.get(controls).json()["outage_start"] is None


async def test_allow_sha1_accepts_what_the_default_refuses(
    test_ca: TestCA,
    fiscal_settings: FiscalSettings,
    demo_certificate: FiscalCertificate,
) -> None:
    lenient = CisSandbox(test_ca, load_schema(default_spec_dir()), allow_sha1=True)
    verifier = AnswerVerifier(CisSigner.pinned(lenient.service_certificate))
    signed = sign(fiscal_settings, demo_certificate)
    sha1 = resign(
        signed.document, demo_certificate.private_key, demo_certificate.certificate, sha1=True
    )

    status, body = await lenient.soap(racuni_envelope(sha1))

    assert status == 200
    assert parse_racun_answer(body, verifier, expected_message_id=signed.message_id).jir
