"""The Submitter with the CIS channel against the sandbox CIS over real HTTP, on the
reporter's own client pool: every outcome class (JIR, refusal, 5xx, timeout, refused
connection, unverifiable answer) and the spreading of concurrent submissions over idle clients."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator

import httpx
import pytest

from fiscal.authority import Answer, Verdict
from fiscal.hr_cis.authority import HrCisChannel
from fiscal.hr_cis.certificate import FiscalCertificate
from fiscal.hr_cis.profile import HrCisProfile
from fiscal.hr_cis.settings import FiscalSettings
from fiscal.hr_cis.soap import AnswerVerifier, CisSigner
from sandbox.cis.ca import TestCA
from schemas.events import InvoiceSigned
from services.reporter.service import cis_clients
from services.reporter.settings import ReporterSettings
from services.reporter.submit import Submitter
from tests.factories import fiscal_number, make_invoice
from tests.fixtures.cis import CisSandboxHandle

pytestmark = pytest.mark.asyncio(loop_scope="session")

_numbers = itertools.count(7000)
PROFILE = HrCisProfile()


def cis_submitter(pool: list[httpx.AsyncClient], url: str, verifier: AnswerVerifier) -> Submitter:
    return Submitter(pool, {"hr-cis": HrCisChannel(url, verifier)})


def signed_event(settings: FiscalSettings, certificate: FiscalCertificate) -> InvoiceSigned:
    number = next(_numbers)
    invoice = make_invoice(number=f"INV-{number}", source_id=str(460000000000000000 + number))
    signed = PROFILE.sign(invoice, settings, certificate, number=fiscal_number(number))
    return InvoiceSigned(
        integration_uid="acme", invoice=invoice, profile="hr-cis",
        message_id=signed.message_id, protection_code=signed.protection_code,
        document=signed.document.decode(),
    )


@pytest.fixture
async def pool() -> AsyncIterator[list[httpx.AsyncClient]]:
    async with contextlib.AsyncExitStack() as stack:
        yield await cis_clients(stack, ReporterSettings(concurrency=4, timeout=1))


@pytest.fixture
def verifier(cis_sandbox: CisSandboxHandle) -> AnswerVerifier:
    return AnswerVerifier(CisSigner.pinned(cis_sandbox.service_certificate))


@pytest.fixture
def cis(clean_cis_sandbox: CisSandboxHandle) -> CisSandboxHandle:
    return clean_cis_sandbox


async def test_each_client_holds_its_share_of_the_connections_and_the_timeout() -> None:
    async with contextlib.AsyncExitStack() as stack:
        settings = ReporterSettings(concurrency=5, cis_connections_per_client=2,
                                    timeout=7)
        clients = await cis_clients(stack, settings)
        assert len(clients) == 3
        assert all(c.timeout == httpx.Timeout(7) for c in clients)
        assert all(not c.is_closed for c in clients)
    assert all(c.is_closed for c in clients)


async def test_an_accepted_invoice_gets_its_verified_jir(
    cis: CisSandboxHandle, pool: list[httpx.AsyncClient], verifier: AnswerVerifier,
    fiscal_settings: FiscalSettings, demo_certificate: FiscalCertificate,
) -> None:
    event = signed_event(fiscal_settings, demo_certificate)

    result = await cis_submitter(pool, cis.url, verifier).submit(event)

    assert result.verdict is Verdict.ACCEPTED and result.receipt_id is not None
    assert result.document is not None and event.message_id.encode() in result.document
    assert [e["message_id"] for e in cis.ledger()] == [event.message_id]


async def test_concurrent_submissions_all_succeed_and_leave_every_client_idle(
    cis: CisSandboxHandle, pool: list[httpx.AsyncClient], verifier: AnswerVerifier,
    fiscal_settings: FiscalSettings, demo_certificate: FiscalCertificate,
) -> None:
    cis.set_faults(latency_ms=50)
    # More than the pool's clients: the extra ones share the least busy client.
    events = [signed_event(fiscal_settings, demo_certificate) for _ in range(10)]
    submitter = cis_submitter(pool, cis.url, verifier)

    results = await asyncio.gather(*(submitter.submit(e) for e in events))

    assert all(r.verdict is Verdict.ACCEPTED and r.receipt_id for r in results)
    assert {e["message_id"] for e in cis.ledger()} == {e.message_id for e in events}
    assert sorted(submitter._idle) == list(range(len(pool)))
    assert submitter._in_flight == [0] * len(pool)


async def test_a_refusal_is_a_verified_answer_with_its_error(
    cis: CisSandboxHandle, pool: list[httpx.AsyncClient], verifier: AnswerVerifier,
    fiscal_settings: FiscalSettings, demo_certificate: FiscalCertificate,
) -> None:
    cis.set_faults(s006=1)

    result = await cis_submitter(pool, cis.url, verifier).submit(
        signed_event(fiscal_settings, demo_certificate)
    )

    assert result.verdict is Verdict.TRANSIENT and result.receipt_id is None
    assert result.code == "s006" and result.document and b"RacunOdgovor" in result.document


async def test_a_bare_http_500_is_transient(
    cis: CisSandboxHandle, pool: list[httpx.AsyncClient], verifier: AnswerVerifier,
    fiscal_settings: FiscalSettings, demo_certificate: FiscalCertificate,
) -> None:
    cis.set_faults(http500=1)

    result = await cis_submitter(pool, cis.url, verifier).submit(
        signed_event(fiscal_settings, demo_certificate)
    )

    assert result == Answer.transient("http_500", "HTTP 500")


async def test_no_answer_within_the_client_timeout_is_a_transient_timeout(
    cis: CisSandboxHandle, pool: list[httpx.AsyncClient], verifier: AnswerVerifier,
    fiscal_settings: FiscalSettings, demo_certificate: FiscalCertificate,
) -> None:
    cis.set_faults(hang=1, hang_seconds=5)
    submitter = cis_submitter(pool, cis.url, verifier)

    result = await submitter.submit(signed_event(fiscal_settings, demo_certificate))

    assert result.verdict is Verdict.TRANSIENT and result.code == "timeout"
    assert submitter._in_flight == [0] * len(pool)


async def test_a_refused_connection_is_transient(
    pool: list[httpx.AsyncClient], verifier: AnswerVerifier,
    fiscal_settings: FiscalSettings, demo_certificate: FiscalCertificate,
) -> None:
    result = await cis_submitter(pool, "http://127.0.0.1:9/", verifier).submit(
        signed_event(fiscal_settings, demo_certificate)
    )

    assert result.verdict is Verdict.TRANSIENT and result.code == "connection"


async def test_an_answer_signed_by_someone_untrusted_is_unverified(
    cis: CisSandboxHandle, pool: list[httpx.AsyncClient],
    fiscal_settings: FiscalSettings, demo_certificate: FiscalCertificate,
) -> None:
    _, stranger_certificate = TestCA.create("Stranger DEMO CA").issue_service_cert()
    stranger = AnswerVerifier(CisSigner.pinned(stranger_certificate))

    result = await cis_submitter(pool, cis.url, stranger).submit(
        signed_event(fiscal_settings, demo_certificate)
    )

    assert result.verdict is Verdict.UNVERIFIED and result.code == "answer_unverified"
    assert result.document is not None and b"RacunOdgovor" in result.document

