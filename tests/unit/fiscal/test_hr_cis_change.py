"""When a fiscalized invoice's payment method or buyer OIB may be changed at CIS: only
on the day of issue, in Croatian time (spec v2.6 §2.1.5)."""

from __future__ import annotations

from datetime import UTC, datetime

from fiscal.hr_cis.change import AsSent, ChangeToday, ChangeTooLate, DataChange, decide_change

RACUN = (
    b'<tns:Racun xmlns:tns="http://www.apis-it.hr/fin/2012/types/f73">'
    b"<tns:DatVrijeme>31.12.2026T23:59:00</tns:DatVrijeme><tns:NacinPlac>G</tns:NacinPlac>"
    b"</tns:Racun>"
)


def test_the_day_of_issue_ends_at_midnight_in_zagreb_not_in_utc() -> None:
    sent = AsSent.of_racun(RACUN)
    assert (sent.payment_code, sent.buyer_oib) == ("G", None)
    card = DataChange("K", None)
    # 23:30 UTC on 31 Dec is already 1 Jan in Zagreb (UTC+1).
    assert isinstance(decide_change(sent, card, datetime(2026, 12, 31, 22, 59, 30, tzinfo=UTC)),
                      ChangeToday)
    late = decide_change(sent, card, datetime(2026, 12, 31, 23, 30, tzinfo=UTC))
    assert isinstance(late, ChangeTooLate)
    assert "payment method (G to K)" in late.reason and "2026-12-31" in late.reason


def test_nothing_to_change_when_payment_and_buyer_are_as_fiscalized() -> None:
    sent = AsSent.of_racun(RACUN)
    assert decide_change(sent, DataChange("G", None), datetime(2027, 3, 1, tzinfo=UTC)) is None
    buyer = decide_change(sent, DataChange("G", "69435151530"), datetime(2027, 3, 1, tzinfo=UTC))
    assert isinstance(buyer, ChangeTooLate) and "buyer's OIB" in buyer.reason
