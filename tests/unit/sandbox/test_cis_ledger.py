"""The sandbox CIS's ledger as the witness of the numbering rule (hr-fiscal-record.md,
The invoice number): from 1 each calendar year, without gaps, per premises (OznSlijed
P) or per premises and device (N), for each OIB; the year is DatVrijeme's, in
Croatian local time."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from sandbox.cis.checks import AcceptedInvoice, RequestedChange
from sandbox.cis.ledger import Ledger, sequence_key

NOW = datetime(2026, 12, 2, 12, tzinfo=UTC)
BASE = AcceptedInvoice(
    message_id="m", oib="69435151530", issued_at="02.12.2026T13:00:00", br_ozn_rac="1",
    ozn_pos_pr="POSL1", ozn_nap_ur="1", total="10.00", zki="0" * 32, nak_dost=False,
    sequence_mark="P", in_vat_system="true", payment="G", operator_oib="47721904125",
)


def invoice(number: int, **fields: object) -> AcceptedInvoice:
    fields.setdefault("zki", f"{number:032x}")
    return replace(BASE, br_ozn_rac=str(number), **fields)  # type: ignore[arg-type]


def ledger_of(*invoices: AcceptedInvoice) -> Ledger:
    ledger = Ledger()
    for n, accepted in enumerate(invoices):
        ledger.record(accepted, f"jir-{n}", NOW)
    return ledger


def test_a_contiguous_sequence_has_no_gaps_or_repeats() -> None:
    (sequence,) = ledger_of(invoice(2), invoice(1), invoice(3)).sequences()
    assert sequence == {
        "oib": "69435151530", "sequence_mark": "P", "premises": "POSL1", "device": None,
        "year": 2026, "numbers": [1, 2, 3], "gaps": [], "repeats": [], "redeliveries": [],
    }


def test_gaps_count_from_one() -> None:
    (sequence,) = ledger_of(invoice(3), invoice(6)).sequences()
    assert sequence["gaps"] == [1, 2, 4, 5]


def test_one_number_on_two_invoices_is_a_repeat_the_same_invoice_again_is_not() -> None:
    twice = invoice(2, zki="a" * 32, total="99.00")
    again = invoice(1, nak_dost=True, message_id="m2")  # same ZKI: the same invoice
    (sequence,) = ledger_of(invoice(1), invoice(2), twice, again).sequences()
    assert sequence["repeats"] == [2]
    assert sequence["redeliveries"] == [1]
    assert sequence["numbers"] == [1, 2]


def test_p_runs_per_premises_across_devices() -> None:
    ledger = ledger_of(invoice(1, ozn_nap_ur="1"), invoice(2, ozn_nap_ur="2"),
                       invoice(1, ozn_pos_pr="POSL2", ozn_nap_ur="2"))
    assert [(s["premises"], s["device"], s["numbers"]) for s in ledger.sequences()] == [
        ("POSL1", None, [1, 2]), ("POSL2", None, [1]),
    ]


def test_n_runs_per_premises_and_device() -> None:
    ledger = ledger_of(*(invoice(n, sequence_mark="N", ozn_nap_ur=d)
                         for d in ("1", "2") for n in (1, 2)))
    sequences = ledger.sequences()
    assert [(s["device"], s["numbers"], s["repeats"]) for s in sequences] == [
        ("1", [1, 2], []), ("2", [1, 2], []),
    ]


def test_each_oib_has_its_own_sequences() -> None:
    ledger = ledger_of(invoice(1), invoice(1, oib="47721904125"))
    assert [(s["oib"], s["numbers"], s["repeats"]) for s in ledger.sequences()] == [
        ("47721904125", [1], []), ("69435151530", [1], []),
    ]


def test_the_year_is_datvrijemes_in_croatian_time() -> None:
    # 31.12.2026 23:59 and 01.01.2027 00:00:30 in Zagreb are both 31 Dec in UTC.
    late = invoice(7, issued_at="31.12.2026T23:59:00")
    early = invoice(1, issued_at="01.01.2027T00:00:30")
    assert sequence_key(late)[-1] == 2026 and sequence_key(early)[-1] == 2027
    sequences = ledger_of(late, early).sequences()
    assert [(s["year"], s["numbers"], s["gaps"]) for s in sequences] == [
        (2026, [7], [1, 2, 3, 4, 5, 6]), (2027, [1], []),
    ]


def test_a_change_is_kept_with_the_invoice_and_the_original_stays_what_must_match() -> None:
    original = invoice(1)
    ledger = ledger_of(original)
    ledger.record_change(RequestedChange(replace(original, message_id="c1"), "K", ""), NOW)

    (entry,) = ledger.entries()
    assert entry["changes"] == [
        {"message_id": "c1", "payment": "K", "buyer_oib": None, "received_at": NOW.isoformat()}
    ]
    assert ledger.fiscalized(replace(original, message_id="x")) == original
    assert ledger.fiscalized(invoice(2)) is None


def test_clear_forgets_sequences_and_fiscalized_invoices() -> None:
    ledger = ledger_of(invoice(1))
    ledger.clear()
    assert ledger.sequences() == [] and ledger.fiscalized(invoice(1)) is None
