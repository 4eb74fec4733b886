"""The projection and the `blocked` status a channel publishes for a Zoho document the
mapping refuses (connectors.zoho.rejected), on both databases: the journal row shows the
block with its reason; the corrected version's outcome replaces it; a block arriving
after a fiscalized outcome (an older version's, or an edit after fiscalization) never
downgrades the row, and is kept in its history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from fiscal.hr_cis.certificate import FiscalCertificate
from fiscal.hr_cis.settings import FiscalSettings
from runtime.store import Outcome, Store
from schemas.events import InvoiceRef, InvoiceState, InvoiceStatus
from tests.fixtures.certs import Pfx

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
UID = "int-blocked-1"
SOURCE = "4815162342000001234"
V1, V2 = (T0 - timedelta(minutes=5)).isoformat(), (T0 + timedelta(minutes=5)).isoformat()


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


def ref(version: str, total: str | None = "31.41") -> InvoiceRef:
    return InvoiceRef(source_id=SOURCE, number="RN-2026-0457", version=version,
                      customer="Bistro Luka j.d.o.o.",
                      total=Decimal(total) if total is not None else None, issued_at=T0)


def blocked(version: str, at: datetime) -> InvoiceStatus:
    return InvoiceStatus(
        integration_uid=UID, occurred_at=at, invoice=ref(version),
        state=InvoiceState.BLOCKED, reason_code="total_mismatch",
        message="Zoho invoice RN-2026-0457 cannot be fiscalized as it is: its amounts do"
                " not add up to its total 31.41. Correct the invoice in Zoho Books; the"
                " corrected version is fiscalized by itself.",
    )


def outcome(state: InvoiceState, version: str, at: datetime) -> InvoiceStatus:
    done = state is InvoiceState.FISCALIZED
    return InvoiceStatus(
        integration_uid=UID, occurred_at=at, invoice=ref(version, "30.00"), state=state,
        reason_code="ok" if done else "s006", message=state.value, attempt=1,
        receipt_id="jir-1" if done else None, message_id="m-1", fiscal_number="1/POSL1/1",
    )


async def test_a_block_shows_until_the_corrected_version_is_fiscalized(
    store: Store, uid: str
) -> None:
    assert await store.apply([blocked(V1, T0)]) == {Outcome.APPLIED: 1}
    row = await store.journal.get(uid, SOURCE)
    assert row is not None
    assert (row.state, row.reason_code, row.source_version, row.total) == (
        InvoiceState.BLOCKED, "total_mismatch", V1, Decimal("31.41"))
    assert await store.journal.counts(uid) == {InvoiceState.BLOCKED: 1}

    # The corrected version, while CIS is away, then fiscalized: each replaces the block.
    retrying = outcome(InvoiceState.RETRYING, V2, T0 + timedelta(minutes=6))
    assert await store.apply([retrying]) == {Outcome.APPLIED: 1}
    row = await store.journal.get(uid, SOURCE)
    assert row is not None and (row.state, row.source_version) == (InvoiceState.RETRYING, V2)
    done = outcome(InvoiceState.FISCALIZED, V2, T0 + timedelta(minutes=7))
    assert await store.apply([done]) == {Outcome.APPLIED: 1}

    # The older version's block again, later (a late webhook): stale.
    late = blocked(V1, T0 + timedelta(hours=1))
    assert await store.apply([late]) == {Outcome.STALE: 1}
    row = await store.journal.get(uid, SOURCE)
    assert row is not None
    assert (row.state, row.source_version, row.receipt_id, row.total) == (
        InvoiceState.FISCALIZED, V2, "jir-1", Decimal("30.00"))
    assert await store.journal.counts(uid) == {InvoiceState.FISCALIZED: 1}
    steps = [h.state for h in await store.journal.history(uid, SOURCE)]
    assert steps.count(InvoiceState.BLOCKED) == 2 and InvoiceState.FISCALIZED in steps


async def test_an_edit_after_fiscalization_that_cannot_map_keeps_the_row_fiscalized(
    store: Store, uid: str
) -> None:
    await store.apply([outcome(InvoiceState.FISCALIZED, V1, T0)])
    assert await store.apply([blocked(V2, T0 + timedelta(minutes=5))]) == {Outcome.STALE: 1}
    row = await store.journal.get(uid, SOURCE)
    assert row is not None and (row.state, row.source_version) == (InvoiceState.FISCALIZED, V1)
    history = await store.journal.history(uid, SOURCE)
    (step,) = [h for h in history if h.state is InvoiceState.BLOCKED]
    assert step.reason_code == "total_mismatch" and "Correct the invoice" in step.message
