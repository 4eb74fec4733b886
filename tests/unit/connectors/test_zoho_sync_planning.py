"""The pure half of incremental sync: reading newest-first pages, the safe watermark."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.zoho.sync import Listing, safe_watermark

T0 = datetime(2025, 4, 9, 12, 0, tzinfo=UTC)


def item(invoice_id: str, minutes: int) -> dict[str, Any]:
    local = (T0 + timedelta(minutes=minutes)).astimezone()
    return {"invoice_id": invoice_id, "last_modified_time": local.strftime("%Y-%m-%dT%H:%M:%S%z")}


def test_reading_stops_at_the_first_invoice_older_than_since() -> None:
    listing = Listing(since=T0 + timedelta(minutes=10))
    assert listing.take([item("3", 30), item("2", 20), item("1", 10), item("0", 9)])
    assert listing.changes == {
        "3": T0 + timedelta(minutes=30),
        "2": T0 + timedelta(minutes=20),
        "1": T0 + timedelta(minutes=10),
    }


def test_page_without_an_older_invoice_asks_for_the_next_page() -> None:
    listing = Listing(since=T0)
    assert not listing.take([item("2", 20), item("1", 10)])


def test_without_a_watermark_everything_is_a_change() -> None:
    listing = Listing(since=None)
    assert not listing.take([item("2", 20), item("1", -10_000)])
    assert set(listing.changes) == {"1", "2"}


def test_an_invoice_listed_twice_keeps_its_latest_version() -> None:
    # Edited while the pages were read: it shows up again on a later page.
    listing = Listing(since=None)
    listing.take([item("7", 50), item("6", 40)])
    listing.take([item("6", 40), item("7", 5)])
    assert listing.changes == {"7": T0 + timedelta(minutes=50), "6": T0 + timedelta(minutes=40)}


def test_versions_already_seen_are_skipped_but_still_bound_the_reading() -> None:
    seen = {("5", T0 + timedelta(minutes=5))}
    listing = Listing(since=T0, seen=seen)
    assert listing.take([item("6", 6), item("5", 5), item("4", -1)])
    assert listing.changes == {"6": T0 + timedelta(minutes=6)}
    assert listing.skipped == seen


def test_an_unreadable_time_is_rejected_not_guessed() -> None:
    listing = Listing(since=T0)
    listing.take([{"invoice_id": "9", "last_modified_time": "soon"}, item("8", 1)])
    assert [(r.invoice_id, r.code) for r in listing.rejected] == [("9", "invalid_datetime")]
    assert "8" in listing.changes


def test_watermark_advances_over_the_unbroken_run_of_fetched_changes() -> None:
    times = [T0 + timedelta(minutes=m) for m in (1, 2, 3, 4)]
    assert safe_watermark(T0, [(t, True) for t in times]) == times[-1]
    assert safe_watermark(T0, [(times[0], True), (times[1], False), (times[2], True)]) == times[0]
    assert safe_watermark(T0, [(times[0], False)]) == T0
    assert safe_watermark(None, []) is None


def test_watermark_never_moves_back() -> None:
    later = T0 + timedelta(hours=1)
    assert safe_watermark(later, [(T0, True)]) == later
