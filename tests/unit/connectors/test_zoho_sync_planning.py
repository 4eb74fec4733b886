"""The pure half of incremental sync: reading filtered pages, the filter, the safe watermark."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from connectors.zoho.sync import Listing, filter_time, has_payments, safe_watermark

T0 = datetime(2025, 4, 9, 12, 0, tzinfo=UTC)


def item(invoice_id: str, minutes: int) -> dict[str, Any]:
    local = (T0 + timedelta(minutes=minutes)).astimezone()
    return {"invoice_id": invoice_id, "last_modified_time": local.strftime("%Y-%m-%dT%H:%M:%S%z")}


def test_rows_older_than_since_are_dropped_whatever_zoho_sent() -> None:
    # Zoho's filter may include the instant itself or be read loosely: only rows at or
    # after `since` count, in whatever order the pages come.
    listing = Listing(since=T0 + timedelta(minutes=10))
    listing.take([item("0", 9), item("3", 30), item("1", 10), item("2", 20)])
    assert listing.changes == {
        "3": T0 + timedelta(minutes=30),
        "2": T0 + timedelta(minutes=20),
        "1": T0 + timedelta(minutes=10),
    }


def test_without_a_watermark_everything_is_a_change() -> None:
    listing = Listing(since=None)
    listing.take([item("2", 20), item("1", -10_000)])
    assert set(listing.changes) == {"1", "2"}


def test_an_invoice_listed_twice_keeps_its_latest_version() -> None:
    # Edited while the pages were read: it shows up again with a later time.
    listing = Listing(since=None)
    listing.take([item("7", 5), item("6", 40)])
    listing.take([item("6", 40), item("7", 50)])
    assert listing.changes == {"7": T0 + timedelta(minutes=50), "6": T0 + timedelta(minutes=40)}


def test_versions_already_seen_are_skipped() -> None:
    seen = {("5", T0 + timedelta(minutes=5))}
    listing = Listing(since=T0, seen=seen)
    listing.take([item("6", 6), item("5", 5)])
    assert listing.changes == {"6": T0 + timedelta(minutes=6)}
    assert listing.skipped == seen


def test_credit_notes_are_keyed_apart_from_invoices() -> None:
    listing = Listing(since=None)
    listing.take([item("5", 1)])
    note = {"creditnote_id": "5", "last_modified_time": item("x", 2)["last_modified_time"]}
    listing.take([note], "creditnote_id")
    assert listing.changes == {
        "5": T0 + timedelta(minutes=1),
        "creditnote:5": T0 + timedelta(minutes=2),
    }


def test_an_unreadable_time_is_rejected_not_guessed() -> None:
    listing = Listing(since=T0)
    listing.take([{"invoice_id": "9", "last_modified_time": "soon"}, item("8", 1)])
    assert [(r.invoice_id, r.code) for r in listing.rejected] == [("9", "invalid_datetime")]
    assert "8" in listing.changes


def test_the_filter_is_zohos_format_with_a_colon_less_offset() -> None:
    zagreb = timezone(timedelta(hours=1))
    since = datetime(2025, 11, 18, 2, 2, 51, 999_000, tzinfo=zagreb)
    assert filter_time(since) == "2025-11-18T02:02:51+0100"
    assert filter_time(since.astimezone(UTC)) == "2025-11-18T01:02:51+0000"


def test_payments_are_fetched_only_for_issued_invoices_with_money_received() -> None:
    assert has_payments({"status": "paid", "payment_made": 12.5})
    assert has_payments({"status": "overdue", "payment_made": "3"})
    assert not has_payments({"status": "sent", "payment_made": 0})
    assert not has_payments({"status": "sent", "payment_made": ""})
    assert not has_payments({"status": "void", "payment_made": 12.5})


def test_watermark_advances_over_the_unbroken_run_of_fetched_changes() -> None:
    times = [T0 + timedelta(minutes=m) for m in (1, 2, 3, 4)]
    assert safe_watermark(T0, [(t, True) for t in times]) == times[-1]
    assert safe_watermark(T0, [(times[0], True), (times[1], False), (times[2], True)]) == times[0]
    assert safe_watermark(T0, [(times[0], False)]) == T0
    assert safe_watermark(None, []) is None


def test_watermark_never_moves_back() -> None:
    later = T0 + timedelta(hours=1)
    assert safe_watermark(later, [(T0, True)]) == later
