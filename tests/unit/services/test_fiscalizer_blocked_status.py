"""A `blocked` status the channels publish for a document the mapping refuses
(connectors.zoho.rejected) reaches the fiscalizer's status agent too: it changes nothing
there, whether the fiscalizer never saw the invoice or holds an entry for it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from schemas.events import InvoiceRef, InvoiceState, InvoiceStatus
from services.fiscalizer.rules import Entry, Phase, on_status

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def blocked() -> InvoiceStatus:
    return InvoiceStatus(
        integration_uid="acme",
        invoice=InvoiceRef(source_id="4815", number="RN-1", version=T0.isoformat()),
        state=InvoiceState.BLOCKED, reason_code="total_mismatch",
        message="Zoho invoice RN-1 cannot be fiscalized as it is: ...",
    )


def test_a_block_for_an_invoice_never_seen_leaves_the_table_alone() -> None:
    assert on_status(blocked(), None) is None


@pytest.mark.parametrize("phase", list(Phase))
def test_a_block_leaves_an_existing_entry_as_it_is(phase: Phase) -> None:
    entry = Entry(phase, "2026-11-23T09:00:00+00:00", 1, T0)
    assert on_status(blocked(), entry) is None
