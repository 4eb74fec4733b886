"""runtime/store/refetch.py on both databases: what a change on FiscoBridge's side queues
to be read again from the source, and how the poller takes and clears it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from fiscal.hr_cis.certificate import FiscalCertificate
from fiscal.hr_cis.settings import FiscalSettings
from runtime.store import Store
from runtime.store.refetch import Document
from runtime.writeback_mapping import mapping_event
from schemas.events import IntegrationEventKind, InvoiceState, InvoiceStatus
from schemas.invoice import DocumentKind
from tests.fixtures.certs import Pfx
from tests.fixtures.store import integration_event_at as integration_event
from tests.fixtures.store import invoice_status_at as status

T0 = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
UID = "int-projection-1"


@pytest.fixture
async def uid(
    store: Store, demo_pfx: Pfx, demo_certificate: FiscalCertificate,
    fiscal_settings: FiscalSettings,
) -> str:
    account, _ = await store.accounts.ensure("owner@obrt.hr")
    created = await store.integrations.create(
        uid=UID, account_id=account.account_id, fiscal_settings=fiscal_settings,
        pfx=demo_pfx.data, password=demo_pfx.password, certificate=demo_certificate,
    )
    return created.record.uid


def unsigned(state: InvoiceState, source_id: str, kind: DocumentKind = DocumentKind.INVOICE,
             code: str = "license_limit") -> InvoiceStatus:
    """Refused before it was signed: no message id, no signature."""
    event = status(state, T0, source_id=source_id)
    return event.model_copy(update={
        "invoice": event.invoice.model_copy(update={"kind": kind}),
        "reason_code": code, "message_id": None, "protection_code": None,
        "signed_request": None, "signed_answer": None,
    })


def signed(state: InvoiceState, source_id: str) -> InvoiceStatus:
    return status(state, T0, source_id=source_id).model_copy(
        update={"message_id": f"00000000-0000-4000-8000-{source_id[-12:]}"})


async def test_a_change_that_can_let_them_through_queues_what_was_refused_unsigned(
    store: Store, uid: str
) -> None:
    await store.apply([
        unsigned(InvoiceState.BLOCKED, "100000000000001"),  # the plan's limit
        unsigned(InvoiceState.REJECTED, "100000000000002", code="untaxed_amount_unmapped"),
        unsigned(InvoiceState.BLOCKED, "100000000000003", DocumentKind.CREDIT_NOTE,
                 code="total_mismatch"),
        unsigned(InvoiceState.BLOCKED, "100000000000004:storno"),  # made from its invoice
        signed(InvoiceState.REJECTED, "100000000000005"),  # CIS refused: resent, not read
        signed(InvoiceState.FISCALIZED, "100000000000006"),
        unsigned(InvoiceState.SKIPPED, "100000000000007", code="before_start"),
    ])
    assert await store.refetch.requested() == {}
    # The write-back mapping lets nothing through: nothing is queued.
    await store.apply([mapping_event(uid, {"jir": "cf-1"}, by="test")])
    assert await store.refetch.requested() == {}

    before = datetime.now(UTC)
    await store.apply([integration_event(IntegrationEventKind.TIER_CHANGED, T0, tier="growth")])
    queued = await store.refetch.pending(uid, limit=100)
    assert set(queued) == {
        Document("100000000000001", DocumentKind.INVOICE),
        Document("100000000000002", DocumentKind.INVOICE),
        Document("100000000000003", DocumentKind.CREDIT_NOTE),
        Document("100000000000004", DocumentKind.INVOICE),
    }
    requested = await store.refetch.requested()
    assert set(requested) == {uid} and requested[uid] >= before
    assert len(await store.refetch.pending(uid, limit=2)) == 2


@pytest.mark.parametrize("kind", [
    IntegrationEventKind.CONNECTED, IntegrationEventKind.RECONNECTED,
    IntegrationEventKind.CERTIFICATE_REPLACED, IntegrationEventKind.SETTINGS_CHANGED,
])
async def test_each_change_on_our_side_queues_them(
    store: Store, uid: str, kind: IntegrationEventKind
) -> None:
    await store.apply([unsigned(InvoiceState.BLOCKED, "100000000000001")])
    await store.apply([integration_event(kind, T0)])
    assert await store.refetch.pending(uid, limit=10) == [
        Document("100000000000001", DocumentKind.INVOICE)]


async def test_done_clears_only_requests_made_before_the_poll_started(
    store: Store, uid: str
) -> None:
    one, two = Document("1", DocumentKind.INVOICE), Document("2", DocumentKind.CREDIT_NOTE)
    await store.refetch.request(uid, [one, two], "resent by test", now=T0)
    poll_started = T0 + timedelta(seconds=5)
    # Asked again during the poll: that request waits for the next poll.
    await store.refetch.request(uid, [two], "resent again", now=poll_started + timedelta(1))
    assert await store.refetch.done(uid, [one, two], requested_before=poll_started) == 1
    assert await store.refetch.pending(uid, limit=10) == [two]
    assert await store.refetch.requested() == {uid: poll_started + timedelta(1)}
    assert await store.refetch.done(uid, [two], requested_before=datetime.now(UTC)) == 1
    assert await store.refetch.requested() == {}


async def test_a_refusal_decided_before_a_change_but_projected_after_it_is_queued(
    store: Store, uid: str
) -> None:
    """The change's requeue sees only what is projected by then: a refusal decided
    before the change but projected after it is queued when projected. One decided after
    the change was decided with it."""
    changed_at = T0 + timedelta(hours=1)
    await store.apply([integration_event(IntegrationEventKind.TIER_CHANGED, changed_at,
                                         tier="growth")])
    assert await store.refetch.requested() == {}

    def at(source_id: str, when: datetime, state: InvoiceState = InvoiceState.BLOCKED,
           ) -> InvoiceStatus:
        return unsigned(state, source_id).model_copy(update={"occurred_at": when})

    await store.apply([
        at("100000000000001", changed_at - timedelta(seconds=3)),  # in flight meanwhile
        at("100000000000002", changed_at - timedelta(hours=2), InvoiceState.REJECTED),
        at("100000000000003", changed_at + timedelta(seconds=5)),  # decided with it
        signed(InvoiceState.REJECTED, "100000000000004"),  # CIS refused it: resent, not read
    ])
    assert set(await store.refetch.pending(uid, limit=10)) == {
        Document("100000000000001", DocumentKind.INVOICE),
        Document("100000000000002", DocumentKind.INVOICE),
    }
    # The latest change counts, whichever order the changes are projected in.
    later = changed_at + timedelta(hours=1)
    await store.apply([integration_event(IntegrationEventKind.SETTINGS_CHANGED, later)])
    await store.apply([integration_event(IntegrationEventKind.CERTIFICATE_REPLACED,
                                         changed_at - timedelta(days=1))])
    await store.refetch.done(uid, await store.refetch.pending(uid, limit=10),
                             requested_before=datetime.now(UTC))
    await store.apply([at("100000000000005", later + timedelta(seconds=1)),
                       at("100000000000006", later - timedelta(minutes=30))])
    assert await store.refetch.pending(uid, limit=10) == [
        Document("100000000000006", DocumentKind.INVOICE)]
