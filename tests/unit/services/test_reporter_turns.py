"""An invoice reaches the tax authority through one submission at a time: a second
signed message of it (a fiscalizer that signed it again after a crash) waits for the
first's outcome, and is never sent once that fiscalized the invoice."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from fiscal.authority import Answer
from fiscal.hr_cis.authority import classify_answer
from fiscal.hr_cis.soap import CisAnswer
from runtime.settings import KafkaSettings
from schemas.events import InvoiceSigned, InvoiceState, InvoiceStatus
from schemas.topics import INVOICES_STATUS
from services.reporter.reported import Recent, Turns
from services.reporter.service import Reporter
from services.reporter.settings import ReporterSettings
from tests.factories import make_invoice

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
JIR = "3c9b2a8e-1f2d-4c55-9a7b-2b1e0d4f6a11"


def signed(source_id: str, message_id: str) -> InvoiceSigned:
    return InvoiceSigned(
        integration_uid="acme",
        invoice=make_invoice(source_id=source_id).model_copy(
            update={"first_seen_issued_at": NOW}),
        profile="hr-cis", message_id=message_id, protection_code="a" * 32,
        document="<RacunZahtjev/>", attempt=2, first_attempt_at=NOW,
    )


class HeldAuthority:
    """Answers each submission once the test lets it: with a receipt, or with `errors`."""

    def __init__(self, *errors: tuple[str, str]) -> None:
        self.sent: list[str] = []
        self.answer = asyncio.Event()
        self.errors = errors

    async def submit(self, message: InvoiceSigned) -> Answer:
        self.sent.append(message.message_id)
        await self.answer.wait()
        return classify_answer(CisAnswer(
            message_id=message.message_id, jir=None if self.errors else JIR,
            errors=self.errors, document=b"<RacunOdgovor/>"))


def reporter(authority: HeldAuthority, published: list[InvoiceStatus]) -> Reporter:
    made = Reporter(KafkaSettings(), ReporterSettings(), authority)  # type: ignore[arg-type]

    async def publish(topic: str, key: bytes, value: bytes) -> None:
        if topic == INVOICES_STATUS.name:
            published.append(InvoiceStatus.from_json(value))

    made.publish = publish  # type: ignore[method-assign]
    return made


async def test_a_second_signature_of_an_invoice_in_hand_is_not_sent_after_the_first_fiscalized(
) -> None:
    authority, published = HeldAuthority(), list[InvoiceStatus]()
    made, seen = reporter(authority, published), Recent()
    first = asyncio.create_task(made._handle(seen, signed("inv-1", "m-first")))
    second = asyncio.create_task(made._handle(seen, signed("inv-1", "m-again")))
    other = asyncio.create_task(made._handle(seen, signed("inv-2", "m-other")))
    for _ in range(10):
        await asyncio.sleep(0)
    # Another invoice is not held up; the same invoice's second message waits its turn.
    assert authority.sent == ["m-first", "m-other"]
    authority.answer.set()
    await asyncio.gather(first, second, other)
    assert authority.sent == ["m-first", "m-other"]
    assert [(s.invoice.source_id, s.state) for s in published] == [
        ("inv-1", InvoiceState.FISCALIZED), ("inv-2", InvoiceState.FISCALIZED)]
    assert len(made._turns) == 0  # nothing kept once no one waits


async def test_a_second_signature_is_sent_when_the_first_did_not_fiscalize() -> None:
    authority = HeldAuthority(("s006", "Sistemska pogreška prilikom obrade zahtjeva."))
    published = list[InvoiceStatus]()
    made, seen = reporter(authority, published), Recent()
    authority.answer.set()
    await asyncio.gather(made._handle(seen, signed("inv-1", "m-first")),
                         made._handle(seen, signed("inv-1", "m-again")))
    assert authority.sent == ["m-first", "m-again"]
    assert {s.state for s in published} == {InvoiceState.RETRYING}


async def test_turns_take_waiters_in_arrival_order() -> None:
    turns, order = Turns(), []

    async def take(name: str) -> None:
        async with turns.turn("k"):
            order.append(name)
            await asyncio.sleep(0)

    await asyncio.gather(*(take(str(i)) for i in range(5)))
    assert order == ["0", "1", "2", "3", "4"] and len(turns) == 0
