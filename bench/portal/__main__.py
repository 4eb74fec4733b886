"""How fast the Client Portal's invoice queries are at a million journal rows on PostgreSQL.

    python -m bench.portal [--rows 1000000] [--repeat 40] [--postgres-url URL]

Starts a throwaway PostgreSQL cluster from /usr/lib/postgresql/*/bin (as the tests do)
unless --postgres-url names a server to create a scratch database on, migrates it, loads
`--rows` journal rows with COPY (one account, three integrations holding 90/5/5 % of the
rows, a year of issue times, realistic state mix, a signed request of ~1.5 KB on every
sent invoice, one history row per invoice), VACUUM ANALYZEs, and then times each of the
portal's queries through the store's own code (SQLAlchemy + asyncpg, as the portal runs
them), interleaved in rounds so machine noise hits all alike.

Printed per query: p50 and p95 in milliseconds, and p95 against the baseline: a
primary-key lookup of one journal row through the same stack, the cheapest query the
portal makes. "offset 100k" is the query keyset pages replace (OFFSET 100000 LIMIT 50),
shown for contrast and not used by the portal.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from sqlalchemy import select, text

from runtime.store import Store
from runtime.store.journal import InvoiceFilter, InvoiceSort
from runtime.store.models import JournalEntry
from runtime.store.repository import new_id
from schemas.events import InvoiceState
from services.portal.web.dashboard import COUNT_CAP
from tests.fixtures.store import _asyncpg_dsn, _postgres_bin, _throwaway_cluster

ZONE = ZoneInfo("Europe/Zagreb")
NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
UIDS = ("int-big", "int-mid", "int-small")
SHARES = (0.90, 0.05, 0.05)
STATES = (  # share of the journal
    ("fiscalized", 0.80), ("blocked", 0.08), ("skipped", 0.03), ("retrying", 0.02),
    ("rejected", 0.03), ("failed", 0.02), ("duplicate", 0.02),
)
CUSTOMERS = [f"{w} {k} d.o.o." for w in ("Alfa", "Beta", "Ćevapi", "Delta", "Zagreb", "Split",
                                           "Obrt", "Kava", "More", "Sunce")
             for k in range(200)]
SIGNED = "<tns:RacunZahtjev>" + "x" * 1500 + "</tns:RacunZahtjev>"
COLUMNS = (
    "integration_uid", "source_invoice_id", "source_version", "invoice_number", "state",
    "reason_code", "message", "protection_code", "fiscal_number", "receipt_id", "message_id",
    "signed_request", "signed_answer", "attempts", "first_seen_at", "last_seen_at",
    "fiscalized_at", "last_event_id", "last_occurred_at", "kind", "customer", "customer_key",
    "total_cents", "issued_at", "fiscal_seq",
)


def _rows(n: int, seed: int = 7) -> list[tuple[Any, ...]]:
    rng = random.Random(seed)
    states = [s for s, _ in STATES]
    weights = [w for _, w in STATES]
    out: list[tuple[Any, ...]] = []
    year = timedelta(days=365).total_seconds()
    for uid, share in zip(UIDS, SHARES, strict=True):
        count = int(n * share)
        seq = 0
        stamps = sorted(NOW - timedelta(seconds=rng.random() * year) for _ in range(count))
        for i, issued in enumerate(stamps):
            state = rng.choices(states, weights)[0]
            sent = state in ("fiscalized", "rejected", "retrying", "failed")
            seq += 1 if sent else 0
            customer = rng.choice(CUSTOMERS)
            seen = issued + timedelta(seconds=rng.randint(1, 120))
            out.append((
                uid, f"46{i:014d}", "v1", f"INV-{i:07d}", state,
                "ok" if state == "fiscalized" else "s006", "", "a" * 32 if sent else None,
                f"{seq}/POSL1/1" if sent else None,
                new_id() if state == "fiscalized" else None, None,
                SIGNED if sent else None, "<Jir/>" if state == "fiscalized" else None,
                1, seen, seen, seen if state == "fiscalized" else None, new_id(), seen,
                "credit_note" if rng.random() < 0.02 else "invoice", customer,
                customer.casefold(), rng.randint(100, 500_000), issued,
                seq if sent else None,
            ))
    return out


async def _load(url: str, rows: list[tuple[Any, ...]]) -> None:
    connection = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        step = 50_000
        for start in range(0, len(rows), step):
            await connection.copy_records_to_table(
                "fiscal_journal", records=rows[start:start + step], columns=COLUMNS)
        await connection.copy_records_to_table(
            "journal_events",
            records=[(r[17], r[0], r[1], r[4], r[5], r[6], 1, r[18]) for r in rows],
            columns=("event_id", "integration_uid", "source_invoice_id", "state",
                     "reason_code", "message", "attempt", "occurred_at"),
        )
        # The projection keeps journal_daily with the journal; COPY bypasses it, so the
        # rows are counted here as the migration counts an existing journal.
        await connection.execute(
            "INSERT INTO journal_daily (integration_uid, day, state, invoices) "
            "SELECT integration_uid, date(timezone('Europe/Zagreb', issued_at)), state, "
            "count(*) FROM fiscal_journal GROUP BY 1, 2, 3")
        await connection.execute("VACUUM ANALYZE fiscal_journal")
        await connection.execute("VACUUM ANALYZE journal_events")
        await connection.execute("VACUUM ANALYZE journal_daily")
    finally:
        await connection.close()


def _queries(store: Store, rows: list[tuple[Any, ...]], rng: random.Random
             ) -> dict[str, Callable[[], Awaitable[Any]]]:
    journal = store.journal
    big = [r for r in rows if r[0] == "int-big"]

    async def cursor_at(fraction: float) -> str:
        # A cursor as the page before it would hand out: the row at that depth.
        row = sorted(big, key=lambda r: (r[23], r[1]), reverse=True)[int(len(big) * fraction)]
        page = await journal.page(["int-big"], InvoiceFilter(
            issued_before=row[23] + timedelta(microseconds=1)), size=1)
        assert page.older is not None
        return page.older

    cursors: dict[str, str] = {}

    async def pk_lookup() -> None:
        r = rng.choice(big)
        async with store.transaction() as session:
            await session.execute(
                select(JournalEntry.state).where(JournalEntry.integration_uid == r[0],
                                                 JournalEntry.source_invoice_id == r[1]))

    async def first_page() -> None:
        await journal.page(["int-big"], size=50)

    async def deep_page() -> None:
        await journal.page(["int-big"], after=cursors["half"], size=50)

    async def account_page() -> None:
        await journal.page(list(UIDS), size=50)

    async def account_failed() -> None:
        await journal.page(list(UIDS), InvoiceFilter(states=(InvoiceState.FAILED,)), size=50)

    async def fiscalized_and_rejected() -> None:
        await journal.page(["int-big"], InvoiceFilter(
            states=(InvoiceState.FISCALIZED, InvoiceState.REJECTED)), size=50)

    async def fiscal_sort() -> None:
        await journal.page(["int-big"], sort=InvoiceSort.FISCAL, size=50)

    async def customer_prefix() -> None:
        await journal.page(["int-big"], InvoiceFilter(customer=rng.choice(CUSTOMERS)[:9]),
                           size=50)

    async def number_exact() -> None:
        await journal.page(list(UIDS), InvoiceFilter(number=rng.choice(big)[3]), size=50)

    async def one_day() -> None:
        day = (NOW - timedelta(days=rng.randint(1, 360))).astimezone(ZONE).date()
        start = datetime.combine(day, datetime.min.time(), tzinfo=ZONE)
        await journal.page(["int-big"], InvoiceFilter(
            issued_from=start, issued_before=start + timedelta(days=1)), size=50)

    async def amount_range() -> None:
        await journal.page(["int-big"], InvoiceFilter(
            amount_min=Decimal("4000"), amount_max=Decimal("4100")), size=50)

    async def count_capped() -> None:
        await journal.count(["int-big"], InvoiceFilter(states=(InvoiceState.BLOCKED,)))

    async def detail() -> None:
        r = rng.choice(big)
        await journal.get(r[0], r[1])
        await journal.history(r[0], r[1])

    async def dashboard_30_days() -> None:
        await journal.daily(list(UIDS), (NOW - timedelta(days=29)).astimezone(ZONE).date(),
                            30, ZONE)

    async def late_and_failed() -> None:
        await journal.count(list(UIDS), InvoiceFilter(
            states=(InvoiceState.RETRYING,), first_seen_before=NOW - timedelta(days=2)),
            cap=COUNT_CAP)
        await journal.count(list(UIDS), InvoiceFilter(states=(InvoiceState.FAILED,)),
                            cap=COUNT_CAP)

    async def offset_100k() -> None:
        async with store.transaction() as session:
            await session.execute(text(
                "SELECT source_invoice_id, state, receipt_id FROM fiscal_journal "
                "WHERE integration_uid = 'int-big' ORDER BY issued_at DESC, "
                "source_invoice_id DESC OFFSET 100000 LIMIT 50"))

    async def prepare() -> None:
        cursors["half"] = await cursor_at(0.5)

    return {
        "_prepare": prepare,
        "baseline: primary-key lookup": pk_lookup,
        "first page (one integration)": first_page,
        "page halfway down (keyset)": deep_page,
        "first page, all 3 integrations": account_page,
        "state=failed, all integrations": account_failed,
        "2 states, one integration": fiscalized_and_rejected,
        "sort by fiscal number": fiscal_sort,
        "customer starts with": customer_prefix,
        "invoice number, all integrations": number_exact,
        "one day": one_day,
        "amount range (sparse)": amount_range,
        "count, capped at 10k": count_capped,
        "detail: row + history": detail,
        "dashboard: 30 days by state": dashboard_30_days,
        "dashboard: late + failed (to 999)": late_and_failed,
        "offset 100k (not used)": offset_100k,
    }


async def _measure(store: Store, rows: list[tuple[Any, ...]], repeat: int) -> None:
    rng = random.Random(11)
    queries = _queries(store, rows, rng)
    await queries.pop("_prepare")()
    times: dict[str, list[float]] = {name: [] for name in queries}
    for query in queries.values():  # warm caches and prepared statements
        for _ in range(3):
            await query()
    for _ in range(repeat):
        for name, query in queries.items():
            start = time.perf_counter()
            await query()
            times[name].append((time.perf_counter() - start) * 1000)
    base = statistics.quantiles(times["baseline: primary-key lookup"], n=20)[18]
    print(f"{'query':34} {'p50 ms':>8} {'p95 ms':>8} {'p95/base':>9}")
    for name, samples in times.items():
        p95 = statistics.quantiles(samples, n=20)[18]
        print(f"{name:34} {statistics.median(samples):8.2f} {p95:8.2f} {p95 / base:9.1f}")


async def _run(url: str, n: int, repeat: int) -> None:
    store = Store.open(url)
    try:
        await store.migrate()
        started = time.perf_counter()
        rows = _rows(n)
        await _load(url, rows)
        print(f"loaded {len(rows):,} journal rows (+ as many history rows) in "
              f"{time.perf_counter() - started:.0f} s")
        await _measure(store, rows, repeat)
    finally:
        await store.close()


async def _scratch(admin_url: str, n: int, repeat: int) -> None:
    from tests.fixtures.store import fresh_postgres

    async with fresh_postgres(admin_url) as url:
        await _run(url, n, repeat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=40)
    parser.add_argument("--postgres-url", help="an admin URL; default: a throwaway cluster")
    args = parser.parse_args()
    if args.postgres_url:
        asyncio.run(_scratch(args.postgres_url, args.rows, args.repeat))
        return
    bin_dir = _postgres_bin()
    if bin_dir is None:
        raise SystemExit("no PostgreSQL under /usr/lib/postgresql/*/bin: install `postgresql` "
                         "or pass --postgres-url")
    with _throwaway_cluster(bin_dir) as admin_url:
        asyncio.run(_scratch(admin_url, args.rows, args.repeat))


if __name__ == "__main__":
    main()
