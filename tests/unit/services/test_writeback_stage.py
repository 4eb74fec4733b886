"""The write-back stage's rules, on fakes of Zoho's answers (the sandbox test drives the
real HTTP API: tests/integration/test_writeback_service.py)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from connectors.zoho.errors import ZohoApiError
from fiscal.hr_cis.qr import verification_url
from runtime.store.integrations import IntegrationRecord
from runtime.store.models import IntegrationStatus
from runtime.store.writeback import WriteBackOutcome
from schemas.events import (
    InvoiceRef,
    InvoiceState,
    InvoiceStatus,
    WriteBackState,
    WriteBackStatus,
)
from schemas.invoice import DocumentKind
from services.writeback.stage import (
    NO_CREDIT_NOTE_MAPPING,
    NO_MAPPING,
    ZKI_WRITTEN,
    Backoff,
    RecentIntegrations,
    Stopping,
    WriteBackStage,
    values_of,
)

UID = "int_1"
JIR = "3d6e4b1c-2c3f-4e0a-9f1e-7a1b2c3d4e5f"
FIELDS = {"fiscal_number": "cf1", "zki": "cf2", "jir": "cf3", "qr_url": "cf4"}
NOTE_FIELDS = {"creditnote.fiscal_number": "cn1", "creditnote.jir": "cn3"}


def status(**over: Any) -> InvoiceStatus:
    ref = over.pop("invoice", None) or InvoiceRef(
        source_id="4600001", number="INV-1", version="v1", total=Decimal("1525.99"),
        issued_at=datetime(2026, 12, 31, 23, 30, tzinfo=UTC),
    )
    base: dict[str, Any] = dict(
        integration_uid=UID, invoice=ref, state=InvoiceState.FISCALIZED, reason_code="ok",
        message="", receipt_id=JIR, protection_code="a" * 32, fiscal_number="57/POSL1/1",
    )
    return InvoiceStatus(**{**base, **over})


def record(fields: dict[str, str] | None = None) -> IntegrationRecord:
    return IntegrationRecord(
        uid=UID, account_id="acc", type="zoho_books", status=IntegrationStatus.ACTIVE,
        tier="trial", created_at=datetime.now(UTC), fiscal_profile="hr-cis",
        fiscal_settings={}, zoho_organization_id="1", zoho_accounts_server="a",
        zoho_api_domain="b", status_reason=None, status_changed_at=None,
        writeback_fields=FIELDS if fields is None else fields,
    )


class FakeZoho:
    def __init__(self, failures: Sequence[Exception] | None = None) -> None:
        self.failures = list(failures or [])
        self.written: list[tuple[str, dict[str, str]]] = []
        self.notes_written: list[tuple[str, dict[str, str]]] = []
        self.comments: list[tuple[str, str]] = []

    async def update_custom_fields(self, invoice_id: str, values: dict[str, str]) -> list[Any]:
        if self.failures:
            raise self.failures.pop(0)
        self.written.append((invoice_id, values))
        return []

    async def update_credit_note_custom_fields(
        self, creditnote_id: str, values: dict[str, str]
    ) -> list[Any]:
        if self.failures:
            raise self.failures.pop(0)
        self.notes_written.append((creditnote_id, values))
        return []

    async def invoice_comments(self, invoice_id: str) -> list[dict[str, Any]]:
        if self.failures:
            raise self.failures.pop(0)
        return [{"description": text} for on, text in self.comments if on == invoice_id]

    async def add_comment(self, invoice_id: str, text: str) -> dict[str, Any]:
        self.comments.append((invoice_id, text))
        return {}


class Outcomes:
    """The store's latest write-back outcome per invoice, as `publish` records it."""

    def __init__(self) -> None:
        self.latest: dict[tuple[str, str], WriteBackOutcome] = {}
        self.down = False

    async def get(self, uid: str, source_id: str) -> WriteBackOutcome | None:
        if self.down:
            raise OSError("connection refused")
        return self.latest.get((uid, source_id))

    def keep(self, outcome: WriteBackStatus) -> None:
        self.latest[(outcome.integration_uid, outcome.source_id)] = WriteBackOutcome(
            outcome.state.value, outcome.reason, outcome.fiscal_number, outcome.occurred_at)


def stage(zoho: FakeZoho, rec: IntegrationRecord | None = None,
          written: Outcomes | None = None, receipts: set[str] | None = None) -> WriteBackStage:
    async def load(uid: str) -> IntegrationRecord | None:
        return rec if rec is not None else record()

    async def client_of(_: IntegrationRecord) -> Any:
        return zoho

    async def has_receipt(uid: str, source_id: str) -> bool:
        return source_id in (receipts or set())

    return WriteBackStage(load, client_of, Backoff(base=0.01, cap=0.02),
                          written=written.get if written is not None else None,
                          has_receipt=has_receipt)


async def run(s: WriteBackStage, st: InvoiceStatus,
              outcomes: Outcomes | None = None) -> tuple[Any, list[Any]]:
    published: list[Any] = []

    async def publish(outcome: Any) -> None:
        published.append(outcome)
        if outcomes is not None:
            outcomes.keep(outcome)

    return await s.process(st, publish, asyncio.Event()), published


def test_the_qr_url_has_zagreb_time_and_cents() -> None:
    # 23:30 UTC on 31 Dec is 00:30 on 1 Jan in Zagreb; a storno's amount is negative.
    url = verification_url(receipt_id=JIR, protection_code="z", total=Decimal("-1525.99"),
                           issued_at=datetime(2026, 12, 31, 23, 30, tzinfo=UTC))
    assert url == f"https://porezna.gov.hr/rn?jir={JIR}&datv=20270101_0030&izn=-152599"
    summer = verification_url(receipt_id=None, protection_code="abc", total=Decimal("12.5"),
                              issued_at=datetime(2026, 7, 1, 10, 5, tzinfo=UTC))
    assert summer == "https://porezna.gov.hr/rn?zki=abc&datv=20260701_1205&izn=1250"


def test_values_are_the_four_roles() -> None:
    assert values_of(status()) == {
        "fiscal_number": "57/POSL1/1", "zki": "a" * 32, "jir": JIR,
        "qr_url": f"https://porezna.gov.hr/rn?jir={JIR}&datv=20270101_0030&izn=152599",
    }


async def test_fiscalized_invoice_is_written_into_the_mapped_fields() -> None:
    zoho = FakeZoho()
    outcome, published = await run(stage(zoho), status())
    assert outcome.state is WriteBackState.WRITTEN_BACK and published == [outcome]
    assert zoho.written == [("4600001", {
        "cf1": "57/POSL1/1", "cf2": "a" * 32, "cf3": JIR,
        "cf4": f"https://porezna.gov.hr/rn?jir={JIR}&datv=20270101_0030&izn=152599",
    })]


async def test_other_states_are_not_written_back() -> None:
    zoho = FakeZoho()
    for state in (InvoiceState.RETRYING, InvoiceState.REJECTED, InvoiceState.DUPLICATE):
        outcome, published = await run(stage(zoho), status(state=state))
        assert outcome is None and published == []
    for unsigned in (status(state=InvoiceState.RETRYING, receipt_id=None, protection_code=None),
                     status(state=InvoiceState.RETRYING, receipt_id=None, fiscal_number=None),
                     status(state=InvoiceState.FAILED, receipt_id=None),
                     status(state=InvoiceState.REJECTED, receipt_id=None)):
        outcome, published = await run(stage(zoho, written=Outcomes()), unsigned)
        assert outcome is None and published == []
    assert zoho.written == []


ZKI_URL = f"https://porezna.gov.hr/rn?zki={'a' * 32}&datv=20270101_0030&izn=152599"
JIR_URL = f"https://porezna.gov.hr/rn?jir={JIR}&datv=20270101_0030&izn=152599"


def retrying(**over: Any) -> InvoiceStatus:
    return status(state=InvoiceState.RETRYING, reason_code="s006", receipt_id=None, **over)


async def test_a_retried_signed_invoice_gets_number_zki_and_zki_qr_then_its_jir() -> None:
    zoho, outcomes = FakeZoho(), Outcomes()
    s = stage(zoho, written=outcomes)
    early, published = await run(s, retrying(), outcomes)
    assert (early.state, early.reason) == (WriteBackState.WAITING, ZKI_WRITTEN)
    assert published == [early] and early.fiscal_number == "57/POSL1/1"
    assert zoho.written == [("4600001", {"cf1": "57/POSL1/1", "cf2": "a" * 32, "cf4": ZKI_URL})]
    # The next try's status (late by now) writes nothing again: once per invoice.
    again, published = await run(s, retrying(late=True), outcomes)
    assert again is None and published == [] and len(zoho.written) == 1
    final, _ = await run(s, status(), outcomes)
    assert (final.state, final.reason) == (WriteBackState.WRITTEN_BACK, None)
    assert zoho.written[1] == ("4600001", {"cf1": "57/POSL1/1", "cf2": "a" * 32, "cf3": JIR,
                                           "cf4": JIR_URL})
    # A retrying status that arrives after the JIR's write does not take its place.
    stale, published = await run(s, retrying(), outcomes)
    assert stale is None and published == [] and len(zoho.written) == 2
    assert outcomes.latest[(UID, "4600001")].state == "written_back"


async def test_a_retrying_status_after_the_final_outcome_writes_nothing() -> None:
    for failures, state in (([], "written_back"),
                            ([ZohoApiError(1002, "Invoice does not exist", http_status=404)],
                             "failed")):
        zoho, outcomes = FakeZoho(failures), Outcomes()
        s = stage(zoho, written=outcomes)
        await run(s, status(), outcomes)
        written = list(zoho.written)
        stale, published = await run(s, retrying(), outcomes)
        assert stale is None and published == [] and zoho.written == written
        assert outcomes.latest[(UID, "4600001")].state == state


async def test_the_early_write_is_made_while_the_invoice_waits_for_anything_else() -> None:
    for reason in (NO_MAPPING, "Zoho is not available, retrying: HTTP 503"):
        zoho, outcomes = FakeZoho(), Outcomes()
        outcomes.latest[(UID, "4600001")] = WriteBackOutcome(
            "waiting", reason, None, datetime.now(UTC))
        early, _ = await run(stage(zoho, written=outcomes), retrying(), outcomes)
        assert early.reason == ZKI_WRITTEN and len(zoho.written) == 1


async def test_no_early_write_without_knowing_what_was_written() -> None:
    zoho, outcomes = FakeZoho(), Outcomes()
    outcomes.down = True
    for s in (stage(zoho), stage(zoho, written=outcomes)):  # no store; the store down
        outcome, published = await run(s, retrying())
        assert outcome is None and published == []
    assert zoho.written == []


async def test_no_early_write_for_a_storno_comment_or_only_jir_fields() -> None:
    zoho, outcomes = FakeZoho(), Outcomes()
    storno = retrying(invoice=InvoiceRef(
        source_id="4600001:storno", number="INV-1 storno", version="v1",
        total=Decimal("-1525.99"), issued_at=datetime(2026, 12, 31, 23, 30, tzinfo=UTC)))
    outcome, published = await run(stage(zoho, written=outcomes), storno, outcomes)
    assert outcome is None and published == [] and zoho.comments == []
    # The comment, added once, carries the JIR when it comes.
    final, _ = await run(stage(zoho, written=outcomes), storno.model_copy(update={
        "state": InvoiceState.FISCALIZED, "receipt_id": JIR}), outcomes)
    assert final.state is WriteBackState.WRITTEN_BACK and JIR in zoho.comments[0][1]
    only_jir = stage(zoho, record({"jir": "cf3"}), written=outcomes)
    outcome, published = await run(only_jir, retrying(), outcomes)
    assert outcome is None and published == [] and zoho.written == []


async def test_an_authority_that_prints_nothing_before_its_answer_writes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from services.writeback import stage as stage_module
    from tests.fake_authority import NAME, FakeVsdcAuthority

    authorities = stage_module.Authorities()
    authorities.register(NAME, FakeVsdcAuthority)
    monkeypatch.setattr(stage_module, "_AUTHORITIES", authorities)
    zoho, outcomes = FakeZoho(), Outcomes()
    vsdc = dataclasses.replace(record(), fiscal_settings={"authority": NAME})
    outcome, published = await run(stage(zoho, vsdc, written=outcomes), retrying(), outcomes)
    assert outcome is None and published == [] and zoho.written == []


async def test_without_a_mapping_it_waits() -> None:
    zoho = FakeZoho()
    outcome, _ = await run(stage(zoho, record({})), status())
    assert (outcome.state, outcome.reason) == (WriteBackState.WAITING, NO_MAPPING)
    assert zoho.written == []


CREDIT_NOTE = InvoiceRef(source_id="cn1", number="CN-1", version="v",
                         kind=DocumentKind.CREDIT_NOTE, total=Decimal("-31.25"),
                         issued_at=datetime(2026, 3, 1, 8, tzinfo=UTC))


async def test_a_credit_note_gets_its_stornos_values_in_its_own_fields() -> None:
    zoho = FakeZoho()
    rec = record({**FIELDS, **NOTE_FIELDS})
    outcome, _ = await run(stage(zoho, rec), status(invoice=CREDIT_NOTE, fiscal_number="9/P/1"))
    assert (outcome.state, outcome.reason) == (WriteBackState.WRITTEN_BACK, None)
    assert zoho.notes_written == [("cn1", {"cn1": "9/P/1", "cn3": JIR})]
    assert zoho.written == [] and zoho.comments == []


async def test_a_credit_note_without_credit_note_fields_waits() -> None:
    zoho = FakeZoho()  # invoice fields only: they are not the credit note's
    outcome, _ = await run(stage(zoho), status(invoice=CREDIT_NOTE))
    assert (outcome.state, outcome.reason) == (WriteBackState.WAITING, NO_CREDIT_NOTE_MAPPING)
    assert zoho.notes_written == [] and zoho.written == []


async def test_a_mapping_set_while_waiting_is_looked_at_once_more() -> None:
    zoho = FakeZoho()
    rec = record({})
    published: list[Any] = []

    async def publish(outcome: Any) -> None:
        published.append(outcome)
        rec.writeback_fields.update(FIELDS)  # set just after the waiting was recorded

    outcome = await stage(zoho, rec).process(status(), publish, asyncio.Event())
    assert [p.state for p in published] == [WriteBackState.WAITING, WriteBackState.WRITTEN_BACK]
    assert outcome is published[-1] and len(zoho.written) == 1


async def test_integration_records_are_read_once_per_interval_and_forgotten_on_change() -> None:
    reads: list[str] = []
    now = [0.0]

    async def load(uid: str) -> IntegrationRecord | None:
        reads.append(uid)
        return record()

    recent = RecentIntegrations(load, timedelta(seconds=30), clock=lambda: now[0])
    for _ in range(3):
        assert await recent(UID) is not None
    assert reads == [UID]
    now[0] = 30.0
    await recent(UID)
    assert reads == [UID, UID]  # expired
    recent.forget(UID)
    await recent(UID)
    assert reads == [UID, UID, UID]  # an event of the integration


async def test_a_mapping_set_while_waiting_is_seen_through_the_cache() -> None:
    """The store holds the mapping the moment after the waiting outcome is published: the
    look once more reads the store, not the record kept from a moment before."""
    zoho = FakeZoho()
    stored: dict[str, str] = {}

    async def load(uid: str) -> IntegrationRecord | None:
        return record(dict(stored))  # a fresh copy per read, as from the store

    async def client_of(_: IntegrationRecord) -> Any:
        return zoho

    s = WriteBackStage(RecentIntegrations(load, timedelta(minutes=5)), client_of,
                       Backoff(base=0.01, cap=0.02))
    published: list[Any] = []

    async def publish(outcome: Any) -> None:
        published.append(outcome)
        stored.update(FIELDS)

    await s.process(status(), publish, asyncio.Event())
    assert [p.state for p in published] == [WriteBackState.WAITING, WriteBackState.WRITTEN_BACK]
    assert len(zoho.written) == 1


async def test_a_storno_goes_as_a_comment_on_the_original() -> None:
    zoho = FakeZoho()
    ref = InvoiceRef(source_id="4600001:storno", number="INV-1 storno", version="v",
                     total=Decimal("-10"), issued_at=datetime(2026, 3, 1, 8, tzinfo=UTC))
    outcome, _ = await run(stage(zoho), status(invoice=ref, fiscal_number="58/POSL1/1"))
    assert outcome.state is WriteBackState.WRITTEN_BACK
    assert zoho.written == []
    [(invoice_id, text)] = zoho.comments
    assert invoice_id == "4600001" and "58/POSL1/1" in text and "izn=-1000" in text


async def test_the_storno_the_fiscalizer_makes_of_a_void_goes_as_a_comment_too() -> None:
    # The fiscalizer's storno of a voided invoice is kind credit_note (storno_of): it still
    # has no Zoho document of its own, even where credit note fields are mapped.
    ref = InvoiceRef(source_id="4600001:storno", number="INV-1 storno", version="v",
                     kind=DocumentKind.CREDIT_NOTE, total=Decimal("-10"),
                     issued_at=datetime(2026, 3, 1, 8, tzinfo=UTC))
    zoho = FakeZoho()
    outcome, _ = await run(stage(zoho, record({**FIELDS, **NOTE_FIELDS})),
                           status(invoice=ref, fiscal_number="58/POSL1/1"))
    assert outcome.state is WriteBackState.WRITTEN_BACK, outcome.reason
    assert zoho.written == [] and zoho.notes_written == []
    [(invoice_id, text)] = zoho.comments
    assert invoice_id == "4600001" and "58/POSL1/1" in text and "izn=-1000" in text


async def test_a_stornos_comment_is_not_added_again_on_redelivery() -> None:
    zoho = FakeZoho()
    ref = InvoiceRef(source_id="4600001:storno", number="INV-1 storno", version="v",
                     total=Decimal("-10"), issued_at=datetime(2026, 3, 1, 8, tzinfo=UTC))
    s = stage(zoho)
    first = status(invoice=ref, fiscal_number="58/POSL1/1")
    # A redelivery (same event) and a replay (new event, same storno), two at once.
    again = [first, first, status(invoice=ref, fiscal_number="58/POSL1/1")]
    outcomes = await asyncio.gather(*(run(s, st) for st in again))
    assert len(zoho.comments) == 1
    assert [o.state for o, _ in outcomes] == [WriteBackState.WRITTEN_BACK] * 3
    assert sorted(o.reason for o, _ in outcomes)[-1].endswith("(already there)")
    # Another storno of the same invoice (another number) is a comment of its own.
    await run(s, status(invoice=ref, fiscal_number="59/POSL1/1"))
    assert len(zoho.comments) == 2


async def test_a_storno_comment_whose_answer_was_lost_is_found_not_added_again() -> None:
    ref = InvoiceRef(source_id="4600001:storno", number="INV-1 storno", version="v",
                     total=Decimal("-10"), issued_at=datetime(2026, 3, 1, 8, tzinfo=UTC))
    zoho = FakeZoho()
    await run(stage(zoho), status(invoice=ref, fiscal_number="58/POSL1/1"))
    # The answer was lost: Zoho busy when listing the comments on the next try.
    zoho.failures = [ZohoApiError(-1, "down", http_status=503)]
    outcome, published = await run(stage(zoho), status(invoice=ref, fiscal_number="58/POSL1/1"))
    assert outcome.state is WriteBackState.WRITTEN_BACK and len(zoho.comments) == 1
    assert [p.state for p in published] == [WriteBackState.WAITING, WriteBackState.WRITTEN_BACK]


async def test_transient_failures_are_retried_and_said_waiting_once() -> None:
    busy = [ZohoApiError(-1, "down", http_status=503) for _ in range(3)]
    zoho = FakeZoho(busy)
    outcome, published = await run(stage(zoho), status())
    assert outcome.state is WriteBackState.WRITTEN_BACK and len(zoho.written) == 1
    assert [p.state for p in published] == [WriteBackState.WAITING, WriteBackState.WRITTEN_BACK]


async def test_a_failure_that_needs_the_customer_is_failed_not_retried() -> None:
    zoho = FakeZoho([ZohoApiError(1002, "Invoice does not exist", http_status=404)])
    outcome, published = await run(stage(zoho), status())
    assert outcome.state is WriteBackState.FAILED and "no longer exists" in outcome.reason
    assert published == [outcome] and zoho.written == []


async def test_stopping_abandons_a_retry_without_an_outcome() -> None:
    zoho = FakeZoho([ZohoApiError(-1, "down", http_status=503) for _ in range(100)])
    s = WriteBackStage(stage(zoho).load, stage(zoho).client_of, Backoff(base=30, cap=60))
    stop = asyncio.Event()
    published: list[Any] = []

    async def publish(outcome: Any) -> None:
        published.append(outcome)
        stop.set()  # stop while the retry waits

    with pytest.raises(Stopping):
        await asyncio.wait_for(s.process(status(), publish, stop), 5)
    assert [p.state for p in published] == [WriteBackState.WAITING]


def test_backoff_is_capped_and_honours_zohos_retry_at() -> None:
    b = Backoff(base=1, cap=300)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert [b.delay(n, None, now) for n in (1, 2, 3, 10, 20)] == [1, 2, 4, 300, 300]
    assert b.delay(1, now + timedelta(seconds=40), now) == 40
    assert b.delay(1, now + timedelta(hours=5), now) == 300


async def test_no_early_write_once_the_invoice_has_its_jir_whatever_was_written() -> None:
    # A retried change of a fiscalized invoice whose JIR is not written yet (waiting for
    # the customer to reconnect): its status has no receipt, but the invoice has one.
    zoho, outcomes = FakeZoho(), Outcomes()
    outcomes.latest[(UID, "4600001")] = WriteBackOutcome(
        "waiting", "the Zoho connection needs to be renewed", None, datetime.now(UTC))
    outcome, published = await run(stage(zoho, written=outcomes, receipts={"4600001"}),
                                   retrying(), outcomes)
    assert outcome is None and published == [] and zoho.written == []


def test_the_reporters_status_on_a_transient_failure_is_written_before_its_jir() -> None:
    """The reporter's own outcome of an s006 (late by now): retrying, with the ZKI and
    fiscal number the early write needs and the zki= QR it renders."""
    from fiscal.authority import Answer
    from fiscal.hr_cis.late import LateDeadline
    from schemas.events import InvoiceSigned
    from services.reporter.backoff import Backoff as ReporterBackoff
    from services.reporter.outcome import decide
    from services.writeback.stage import before_receipt
    from tests.factories import fiscal_number, make_invoice

    issued = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    signed = InvoiceSigned(
        integration_uid=UID, invoice=make_invoice().model_copy(update={
            "first_seen_issued_at": issued}),
        profile="hr-cis", message_id="5a3c1f1e-0000-4000-8000-000000000001",
        protection_code="b" * 32, document="<RacunZahtjev/>", attempt=3,
        first_attempt_at=issued, fiscal_number=fiscal_number(57),
    )
    retried, retry = decide(
        signed, Answer.transient("s006", "sistemska greska"), issued + timedelta(days=5),
        ReporterBackoff(base=timedelta(seconds=1), cap=timedelta(seconds=60)), LateDeadline())
    assert retry is not None and retried.state is InvoiceState.RETRYING and retried.late
    assert before_receipt(retried)
    values = values_of(retried)
    assert "jir" not in values and values["zki"] == "b" * 32
    assert values["fiscal_number"] == retried.fiscal_number
    assert values["qr_url"].startswith(f"https://porezna.gov.hr/rn?zki={'b' * 32}&datv=")
