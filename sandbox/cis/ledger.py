"""What the sandbox CIS accepted, and how every request ended, for tests to count.

An invoice is identified as the CIS identifies it: OIB plus the invoice number
BrOznRac/OznPosPr/OznNapUr. The CIS does not deduplicate, and neither does the
ledger: a second delivery is a second entry, counted in `duplicates`.

Each entry's `zki_check` says whether its ZKI is the one the spec's steps give with
the sandbox's ZKI hash: "ok", "mismatch", or "unverifiable" (the sandbox does not
hold the key). The real CIS cannot check a ZKI and never refuses one, so neither does
the sandbox: the check is a witness for tests, made when the ledger is read.

It also holds the numbering rule (hr-fiscal-record.md, The invoice number):
BrOznRac runs from 1 each calendar year without gaps, per business premises
(OznSlijed P) or per premises and device (N), for each OIB; the year is that of
DatVrijeme, which is Croatian local time. `sequences()` reports each sequence's
numbers, its gaps and its repeats (one number on two different invoices), apart
from redeliveries (the same invoice, same ZKI, delivered again).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import fields
from datetime import datetime
from typing import Any

from sandbox.cis.checks import AcceptedInvoice, RequestedChange

SequenceKey = tuple[str, str, str, str | None, int]


def sequence_key(invoice: AcceptedInvoice) -> SequenceKey:
    """(OIB, OznSlijed, premises, device or None for P, year of DatVrijeme)."""
    device = invoice.ozn_nap_ur if invoice.sequence_mark == "N" else None
    # DatVrijeme is dd.MM.yyyyTHH:mm:ss (the schema's pattern, checked before this).
    year = int(invoice.issued_at[6:10])
    return (invoice.oib, invoice.sequence_mark, invoice.ozn_pos_pr, device, year)


def _number_key(invoice: AcceptedInvoice) -> tuple[str, str, str, str]:
    return (invoice.oib, invoice.br_ozn_rac, invoice.ozn_pos_pr, invoice.ozn_nap_ur)


class Ledger:
    def __init__(self) -> None:
        self._entries: list[dict[str, Any]] = []
        self._seen: set[tuple[str, str, str, str]] = set()
        # The first accepted delivery of each invoice number: what a change must match.
        self._fiscalized: dict[tuple[str, str, str, str], AcceptedInvoice] = {}
        self._by_number: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        # Per sequence: number -> the ZKIs it was delivered with, in order.
        self._sequences: defaultdict[SequenceKey, defaultdict[int, list[str]]] = defaultdict(
            lambda: defaultdict(list)
        )
        self._zki_checks: dict[int, Callable[[], str]] = {}
        self.duplicates = 0

    def record(
        self,
        invoice: AcceptedInvoice,
        jir: str,
        received_at: datetime,
        zki_check: Callable[[], str] | None = None,
    ) -> None:
        key = _number_key(invoice)
        if key in self._seen:
            self.duplicates += 1
        self._seen.add(key)
        entry: dict[str, Any] = {
            f.name: getattr(invoice, f.name) for f in fields(invoice) if f.name != "signer"
        }
        entry["invoice_number"] = "/".join(key[1:])
        entry["jir"] = jir
        entry["received_at"] = received_at.isoformat()
        self._entries.append(entry)
        if zki_check is not None:
            self._zki_checks[id(entry)] = zki_check
        else:
            entry["zki_check"] = "unverifiable"
        self._fiscalized.setdefault(key, invoice)
        self._by_number.setdefault(key, entry)
        self._sequences[sequence_key(invoice)][int(invoice.br_ozn_rac)].append(invoice.zki)

    def fiscalized(self, invoice: AcceptedInvoice) -> AcceptedInvoice | None:
        """The invoice with the same OIB and number as first accepted, if any."""
        return self._fiscalized.get(_number_key(invoice))

    def record_change(self, change: RequestedChange, received_at: datetime) -> None:
        entry = self._by_number[_number_key(change.invoice)]
        entry.setdefault("changes", []).append(
            {
                "message_id": change.invoice.message_id,
                "payment": change.payment,
                "buyer_oib": change.buyer_oib or None,
                "received_at": received_at.isoformat(),
            }
        )

    def entries(self) -> list[dict[str, Any]]:
        for entry in self._entries:
            check = self._zki_checks.pop(id(entry), None)
            if check is not None:
                entry["zki_check"] = check()
        return list(self._entries)

    def sequences(self) -> list[dict[str, Any]]:
        """Each sequence with its numbers (distinct, ascending), its gaps (numbers from
        1 to the highest never delivered), repeats (numbers delivered for more than one
        invoice, i.e. with different ZKIs) and redeliveries (the same invoice again)."""
        result = []
        for (oib, mark, premises, device, year), numbers in sorted(
            self._sequences.items(), key=lambda item: tuple(str(p) for p in item[0])
        ):
            present = sorted(numbers)
            highest = present[-1]
            result.append(
                {
                    "oib": oib,
                    "sequence_mark": mark,
                    "premises": premises,
                    "device": device,
                    "year": year,
                    "numbers": present,
                    "gaps": sorted(set(range(1, highest + 1)) - set(present)),
                    "repeats": [n for n in present if len(set(numbers[n])) > 1],
                    "redeliveries": [n for n in present if len(numbers[n]) > len(set(numbers[n]))],
                }
            )
        return result

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()
        self._seen.clear()
        self._fiscalized.clear()
        self._by_number.clear()
        self._sequences.clear()
        self._zki_checks.clear()
        self.duplicates = 0


class Stats:
    """Requests by outcome: ok, echo, change_ok, s001..s013, http500, hang, lost_answer,
    outage, fault."""

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
