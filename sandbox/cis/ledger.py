"""What the sandbox CIS accepted, and how every request ended, for tests to count.

An invoice is identified as the CIS identifies it: OIB plus the invoice number
BrOznRac/OznPosPr/OznNapUr. The CIS does not deduplicate, and neither does the
ledger: a second delivery is a second entry, counted in `duplicates`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from datetime import datetime
from typing import Any

from sandbox.cis.checks import AcceptedInvoice


class Ledger:
    def __init__(self) -> None:
        self._entries: list[dict[str, Any]] = []
        self._seen: set[tuple[str, str, str, str]] = set()
        self.duplicates = 0

    def record(self, invoice: AcceptedInvoice, jir: str, received_at: datetime) -> None:
        key = (invoice.oib, invoice.br_ozn_rac, invoice.ozn_pos_pr, invoice.ozn_nap_ur)
        if key in self._seen:
            self.duplicates += 1
        self._seen.add(key)
        entry = asdict(invoice)
        entry["invoice_number"] = "/".join(key[1:])
        entry["jir"] = jir
        entry["received_at"] = received_at.isoformat()
        self._entries.append(entry)

    def entries(self) -> list[dict[str, Any]]:
        return list(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()
        self._seen.clear()
        self.duplicates = 0


class Stats:
    """Requests by outcome: ok, echo, s001..s006, http500, hang, lost_answer, outage, fault."""

    def __init__(self) -> None:
        self.outcomes: Counter[str] = Counter()

    def count(self, outcome: str) -> None:
        self.outcomes[outcome] += 1

    def snapshot(self, ledger: Ledger) -> dict[str, Any]:
        return {
            "requests": dict(self.outcomes),
            "total": sum(self.outcomes.values()),
            "accepted": len(ledger),
            "duplicates": ledger.duplicates,
        }

    def clear(self) -> None:
        self.outcomes.clear()
