"""The journal's invoice lists on both databases: keyset pages walked both ways across
integrations and states equal the whole list sorted in Python; filters; the history."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from runtime.store import InvalidInput, Store
from runtime.store.journal import InvoiceFilter, InvoiceRow, InvoiceSort
from schemas.events import InvoiceRef, InvoiceState, InvoiceStatus

T0 = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
ZAGREB = ZoneInfo("Europe/Zagreb")
STATES = [InvoiceState.FISCALIZED, InvoiceState.BLOCKED, InvoiceState.RETRYING]
CUSTOMERS = ["Ćevapi d.o.o.", "Alfa obrt", "alfa Trgovina", "Beta"]


def _status(uid: str, i: int, *, state: InvoiceState | None = None,
            at: datetime | None = None) -> InvoiceStatus:
    state = state or STATES[i % 3]
    fiscalized = state is InvoiceState.FISCALIZED
    # Ties on the moment of issue on purpose: the order falls back to uid and source id.
    issued = T0 + timedelta(minutes=i // 2)
    return InvoiceStatus(
        integration_uid=uid, occurred_at=at or issued + timedelta(seconds=5),
        invoice=InvoiceRef(
            source_id=f"src-{i:04d}", number=f"INV-{i:04d}", version="v1",
            customer=CUSTOMERS[i % 4], total=Decimal(i) + Decimal("0.99"), issued_at=issued,
        ),
        state=state, reason_code="ok" if fiscalized else "s006", message=state.value,
        receipt_id=f"jir-{i}" if fiscalized else None,
        fiscal_number=f"{i + 1}/POSL1/1" if fiscalized else None,
    )


async def _load(store: Store) -> list[InvoiceStatus]:
    events = [_status(uid, i) for uid in ("int-a", "int-b") for i in range(37)]
    await store.apply(events)
    return events


def _keys(rows: list[InvoiceRow]) -> list[tuple[str, str]]:
    return [(r.integration_uid, r.source_invoice_id) for r in rows]


async def _walk(store: Store, uids: list[str], f: InvoiceFilter, sort: InvoiceSort,
                descending: bool, size: int) -> list[InvoiceRow]:
    """Every page forward, then back again from the last one: both must agree."""
    pages = [await store.journal.page(uids, f, sort=sort, descending=descending, size=size)]
    assert pages[0].newer is None
    while pages[-1].older:
        pages.append(await store.journal.page(uids, f, sort=sort, descending=descending,
                                              size=size, after=pages[-1].older))
    back = [pages[-1]]
    while back[-1].newer:
        back.append(await store.journal.page(uids, f, sort=sort, descending=descending,
                                             size=size, before=back[-1].newer))
    forward = [r for p in pages for r in p.rows]
    backward = [r for p in reversed(back) for r in p.rows]
    assert _keys(forward) == _keys(backward)
    assert all(len(p.rows) == size for p in pages[:-1])
    return forward


@pytest.mark.parametrize("descending", [True, False])
async def test_pages_across_integrations_and_states_equal_the_sorted_list(
    store: Store, descending: bool
) -> None:
    events = await _load(store)
    expected = sorted(
        ((e.invoice.issued_at, e.integration_uid, e.invoice.source_id) for e in events),
        reverse=descending,
    )
    rows = await _walk(store, ["int-a", "int-b"], InvoiceFilter(), InvoiceSort.ISSUED,
                       descending, 7)
    assert [(r.issued_at, r.integration_uid, r.source_invoice_id) for r in rows] == expected

    two_states = InvoiceFilter(states=(InvoiceState.FISCALIZED, InvoiceState.RETRYING))
    rows = await _walk(store, ["int-a", "int-b"], two_states, InvoiceSort.ISSUED,
                       descending, 5)
    assert _keys(rows) == [
        (u, s) for _, u, s in expected
        if int(s[-4:]) % 3 in (0, 2)
    ]
    count, more = await store.journal.count(["int-a", "int-b"], two_states)
    assert (count, more) == (len(rows), False)
    assert await store.journal.count(["int-a", "int-b"], two_states, cap=10) == (10, True)


async def test_sort_by_fiscal_number_is_numeric_and_only_numbered(store: Store) -> None:
    await _load(store)
    rows = await _walk(store, ["int-a"], InvoiceFilter(), InvoiceSort.FISCAL, True, 4)
    numbers = [r.fiscal_seq for r in rows]
    assert numbers == sorted((i + 1 for i in range(37) if i % 3 == 0), reverse=True)
    assert rows[0].fiscal_number == "37/POSL1/1"  # 37 after 4: numbers, not text


async def test_filters(store: Store) -> None:
    await _load(store)
    uids = ["int-a"]

    async def sources(**kw: object) -> list[str]:
        page = await store.journal.page(uids, InvoiceFilter(**kw), size=100)  # type: ignore[arg-type]
        return sorted(r.source_invoice_id for r in page.rows)

    assert await sources(number="INV-0007") == ["src-0007"]
    assert await sources(number="INV-07") == []  # the number exactly, not a part of it
    alfa = await sources(customer="ALFA")  # any case, starts with
    assert alfa == [f"src-{i:04d}" for i in range(37) if i % 4 in (1, 2)]
    assert await sources(customer="ćev") == [f"src-{i:04d}" for i in range(37) if i % 4 == 0]
    assert await sources(amount_min=Decimal("10"), amount_max=Decimal("12.99")) == [
        "src-0010", "src-0011", "src-0012"]
    start = T0 + timedelta(minutes=3)
    assert await sources(issued_from=start, issued_before=start + timedelta(minutes=2)) == [
        "src-0006", "src-0007", "src-0008", "src-0009"]
    late = await sources(states=(InvoiceState.RETRYING,),
                         first_seen_before=T0 + timedelta(minutes=5))
    assert late == ["src-0002", "src-0005", "src-0008"]


async def test_a_damaged_cursor_is_refused(store: Store) -> None:
    await _load(store)
    with pytest.raises(InvalidInput, match="damaged"):
        await store.journal.page(["int-a"], after="not-a-cursor")
    page = await store.journal.page(["int-a"], size=3)
    assert page.older
    with pytest.raises(InvalidInput, match="another sort order"):
        await store.journal.page(["int-a"], sort=InvoiceSort.FISCAL, after=page.older)


async def test_history_keeps_every_status_and_the_row_the_winner(store: Store) -> None:
    retry = _status("int-a", 1, state=InvoiceState.RETRYING, at=T0)
    done = _status("int-a", 1, state=InvoiceState.FISCALIZED, at=T0 + timedelta(minutes=3))
    late_retry = _status("int-a", 1, state=InvoiceState.RETRYING, at=T0 + timedelta(minutes=1))
    for event in (retry, done, late_retry, done):  # the second `done` is a duplicate
        await store.apply([event])
    history = await store.journal.history("int-a", "src-0001")
    assert [(h.state, h.occurred_at) for h in history] == [
        (InvoiceState.RETRYING, T0), (InvoiceState.RETRYING, T0 + timedelta(minutes=1)),
        (InvoiceState.FISCALIZED, T0 + timedelta(minutes=3)),
    ]
    entry = await store.journal.get("int-a", "src-0001")
    assert entry is not None and entry.state is InvoiceState.FISCALIZED
    assert (entry.customer, entry.total, entry.issued_at) == ("Alfa obrt", Decimal("1.99"), T0)


async def test_daily_counts_by_local_day(store: Store) -> None:
    # 23:30 UTC on 10 March is 00:30 on 11 March in Zagreb.
    late_evening = datetime(2026, 3, 10, 23, 30, tzinfo=UTC)
    events = [
        InvoiceStatus(
            integration_uid="int-a", occurred_at=late_evening,
            invoice=InvoiceRef(source_id=f"d-{i}", number=f"D-{i}", version="v1",
                               issued_at=late_evening - timedelta(hours=i)),
            state=InvoiceState.FISCALIZED if i else InvoiceState.FAILED,
            reason_code="ok", message="",
        )
        for i in range(3)
    ]
    await store.apply(events)
    daily = await store.journal.daily(["int-a"], date(2026, 3, 9), 3, ZAGREB)
    assert daily.counts == {
        date(2026, 3, 9): {},
        date(2026, 3, 10): {InvoiceState.FISCALIZED: 2},
        date(2026, 3, 11): {InvoiceState.FAILED: 1},
    }


async def test_the_late_flag_follows_the_latest_status(store: Store) -> None:
    """The journal keeps what the reporter's latest status said about lateness: the
    portal's "late" lists it while retrying, and a late delivery stays marked."""
    ref = InvoiceRef(source_id="late-1", number="INV-L1", version="v1", issued_at=T0)

    def status(state: InvoiceState, minutes: int, late: bool) -> InvoiceStatus:
        return InvoiceStatus(integration_uid="int-late", invoice=ref, state=state,
                             reason_code="s006", message="m", attempt=minutes + 1,
                             message_id=f"m{minutes}", late=late,
                             occurred_at=T0 + timedelta(minutes=minutes))

    late = InvoiceFilter(states=(InvoiceState.RETRYING,), late=True)
    await store.apply([status(InvoiceState.RETRYING, 1, False)])
    assert await store.journal.count(["int-late"], late) == (0, False)
    await store.apply([status(InvoiceState.RETRYING, 2, True)])
    assert await store.journal.count(["int-late"], late) == (1, False)
    record = await store.journal.get("int-late", "late-1")
    assert record is not None and record.late
    await store.apply([status(InvoiceState.FISCALIZED, 3, True)])
    assert await store.journal.count(["int-late"], late) == (0, False)
    record = await store.journal.get("int-late", "late-1")
    assert record is not None and record.late and record.state is InvoiceState.FISCALIZED
