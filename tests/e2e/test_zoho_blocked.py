"""A Zoho invoice whose amounts cannot add up is blocked in the journal with the mapping's
reason, and once corrected in the Zoho sandbox is fiscalized by the running pipeline
(`fiscobridge run poller`, fiscalizer, reporter, projector) — under the integration's
first fiscal number, since nothing was numbered for the blocked version."""

from __future__ import annotations

import asyncio
import time

import pytest

from sandbox.load import StatusWatcher
from schemas.events import InvoiceState
from tests.e2e.test_zoho_to_jir import ZohoPipeline, until, zoho_pipeline  # noqa: F401

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


async def test_a_blocked_invoice_is_fiscalized_once_corrected_in_zoho(
    zoho_pipeline: ZohoPipeline,  # noqa: F811
) -> None:
    zp = zoho_pipeline
    made, grant = await zp.integration()
    org, store = grant.organization_id, zp.pipeline.store
    watcher = StatusWatcher(zp.pipeline.kafka)
    await watcher.start(since_ms=int(time.time() * 1000) - 1000)
    try:
        # An entity discount before tax above the lines' total (10.09): cannot add up.
        bad = await zp.zoho.create_invoice(org, discount="50.00", is_discount_before_tax=True)
        invoice_id = bad["invoice_id"]

        def states() -> list[InvoiceState]:
            return [s.state for s in watcher.outcomes.all
                    if (s.integration_uid, s.invoice.source_id) == (made.uid, invoice_id)]

        await until(lambda: InvoiceState.BLOCKED in states(), timeout=60)
        await until_row(zp, made.uid, invoice_id, InvoiceState.BLOCKED)
        row = await store.journal.get(made.uid, invoice_id)
        assert row is not None and row.reason_code == "invalid_amount"
        assert "exceeds its lines' total" in row.message

        await zp.zoho.edit_invoice(org, invoice_id, discount="1.00")
        await until(lambda: InvoiceState.FISCALIZED in states(), timeout=90)
    finally:
        await watcher.stop()

    (done,) = [s for s in watcher.outcomes.all if s.state is InvoiceState.FISCALIZED
               and (s.integration_uid, s.invoice.source_id) == (made.uid, invoice_id)]
    assert done.receipt_id and done.fiscal_number is not None
    assert done.fiscal_number.startswith("1/"), done.fiscal_number
    assert done.invoice.version > next(
        s.invoice.version for s in watcher.outcomes.all
        if s.state is InvoiceState.BLOCKED and s.invoice.source_id == invoice_id)
    await until_row(zp, made.uid, invoice_id, InvoiceState.FISCALIZED)
    ledger = await zp.pipeline.ledger({made.oib})
    assert len(ledger) == 1


async def until_row(zp: ZohoPipeline, uid: str, source_id: str, state: InvoiceState) -> None:
    """The projector has shown `state` for the invoice in the journal."""
    deadline = time.monotonic() + 30
    while True:
        row = await zp.pipeline.store.journal.get(uid, source_id)
        if row is not None and row.state is state:
            return
        assert time.monotonic() < deadline, (state, row)
        await asyncio.sleep(0.1)
