"""Invoices in the portal over real HTTP on the real store: pages past the old 200-row cut
with every fiscalized invoice's JIR reachable, filters and their errors, the streamed CSV,
the detail page (VAT by rate from the signed request, payment method, QR code and URL,
history, downloads, the write-back's outcome), kept after Remove, and no access to
another account's invoices."""

from __future__ import annotations

import csv
import html
import io
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from lxml import etree

from fiscal.hr_cis.document import RacunFields, TaxRowText, build_request
from runtime import resend as resending
from schemas.events import Channel, InvoiceReceived, InvoiceRef, InvoiceState, InvoiceStatus
from tests.factories import make_invoice
from tests.fixtures.certs import Pfx
from tests.fixtures.zoho import forms_of
from tests.integration.test_portal_helpers import (  # noqa: F401 - fixtures
    SQLITE_ONLY,
    Browser,
    PortalUnderTest,
    env_fixture,
    make_portal_fixture,
    producer_fixture,
    zoho_user_with_org,
)

pytestmark = [pytest.mark.kafka, SQLITE_ONLY]

T0 = datetime(2026, 3, 10, 8, 0, tzinfo=UTC)  # 09:00 in Zagreb


def _signed_request(number: int, zki: str) -> str:
    fields = RacunFields(
        oib="69435151530", in_vat_system=True, issued_at="10.03.2026T09:00:00",
        sequence_mark="P", invoice_number=str(number), premises_code="POSL1", device_code="1",
        vat=(TaxRowText("25.00", "100.00", "25.00"), TaxRowText("13.00", "10.00", "1.30")),
        total="136.30", payment_code="K", operator_oib="69435151530", protection_code=zki,
        subsequent_delivery=False,
    )
    root = build_request(fields, message_id="6f2c8d1e-0000-4000-8000-000000000001",
                         sent_at="10.03.2026T09:00:01")
    return etree.tostring(root, encoding="unicode")


def _events(uid: str, n: int) -> list[InvoiceStatus]:
    """Invoice i issued at T0 + i minutes; every third blocked (the trial limit)."""
    events = []
    for i in range(n):
        fiscalized = i % 3 != 2
        zki = f"{i:032x}"
        events.append(InvoiceStatus(
            integration_uid=uid, occurred_at=T0 + timedelta(minutes=i, seconds=3),
            invoice=InvoiceRef(
                source_id=f"4600000000{i:06d}", number=f"INV-{i:05d}", version="v1",
                customer="Ćevapi d.o.o." if i % 2 else "=HYPERLINK(\"x\")",
                total=Decimal("136.30") if i % 2 else Decimal("10.00"),
                issued_at=T0 + timedelta(minutes=i),
            ),
            state=InvoiceState.FISCALIZED if fiscalized else InvoiceState.BLOCKED,
            reason_code="ok" if fiscalized else "license_limit",
            message="" if fiscalized else "This month's limit is reached",
            receipt_id=f"aaaa{i:04d}-0000-4000-8000-000000000000" if fiscalized else None,
            protection_code=zki if fiscalized else None,
            fiscal_number=f"{i + 1}/POSL1/1" if fiscalized else None,
            signed_request=_signed_request(i + 1, zki) if fiscalized else None,
            signed_answer="<Jir>answer</Jir>" if fiscalized else None,
        ))
    return events


async def _connected(env: PortalUnderTest, demo_pfx: Pfx, demo_oib: str,
                     email: str) -> tuple[Browser, str]:
    user, _ = await zoho_user_with_org(env.zoho)
    browser = env.browser()
    await browser.signup(email)
    return browser, await browser.connect(demo_pfx, demo_oib, user)


def _sources(page: str) -> list[str]:
    return re.findall(r'data-source="([^"]+)"', page)


def _href(page: str, link_id: str) -> str | None:
    found = re.search(rf'id="{link_id}" href="([^"]+)"', page)
    return found.group(1).replace("&amp;", "&") if found else None


async def test_every_receipt_is_reachable_through_the_pages(
    env: PortalUnderTest, demo_pfx: Pfx, demo_oib: str
) -> None:
    """The finding: blocked rows pushed fiscalized ones off a 200-row list. Now the pages
    reach every invoice, and the state filter lists the fiscalized ones alone."""
    browser, uid = await _connected(env, demo_pfx, demo_oib, "pages@firma.example")
    events = _events(uid, 230)
    await env.store.apply(events)
    seen: list[str] = []
    url: str | None = f"/integrations/{uid}/invoices?size=100"
    while url:
        page = await browser.get(url)
        assert page.status_code == 200, page.text
        seen += _sources(page.text)
        url = _href(page.text, "older")
    newest_first = [e.invoice.source_id for e in reversed(events)]
    assert seen == newest_first
    assert "230 invoices match" in (await browser.get(f"/integrations/{uid}/invoices")).text

    fiscalized = await browser.get(f"/integrations/{uid}/invoices?state=fiscalized&size=200")
    receipts = [e.receipt_id for e in events if e.receipt_id]
    assert len(receipts) == 154 and all(r in fiscalized.text for r in receipts[-154 + 46:])
    assert "154 invoices match" in fiscalized.text
    assert "license_limit" not in fiscalized.text

    by_fiscal = await browser.get(f"/integrations/{uid}/invoices?sort=fiscal&size=25")
    first = _sources(by_fiscal.text)[0]
    assert first == events[229].invoice.source_id  # 230/POSL1/1, the highest number

    # The account-wide list has them too.
    overall = await browser.get("/invoices?number=INV-00007")
    assert _sources(overall.text) == [events[7].invoice.source_id]


async def test_filters_and_their_errors(
    env: PortalUnderTest, demo_pfx: Pfx, demo_oib: str
) -> None:
    browser, uid = await _connected(env, demo_pfx, demo_oib, "filters@firma.example")
    events = _events(uid, 12)
    await env.store.apply(events)
    base = f"/integrations/{uid}/invoices"
    page = await browser.get(base)
    form = forms_of(page.text)["filters"]
    assert {"from", "to", "number", "customer", "min", "max"} <= set(form)
    for control in ("from", "to", "number", "customer", "min", "max", "sort", "size"):
        assert f'<label for="{control}">' in page.text  # every control is labelled

    cev = await browser.get(base + "?customer=%C4%87EV")  # "ćEV": any case, starts with
    assert _sources(cev.text) == [e.invoice.source_id for e in reversed(events)
                                  if (e.invoice.customer or "").startswith("Ć")]
    amount = await browser.get(base + "?min=100&max=136,30")
    assert len(_sources(amount.text)) == 6
    day = await browser.get(base + "?from=2026-03-10&to=2026-03-10")
    assert len(_sources(day.text)) == 12
    assert _sources((await browser.get(base + "?from=2026-03-11")).text) == []

    for query, message in (
        ("?from=10.3.2026", "is not a date"),
        ("?state=done", "There is no state 'done'"),
        ("?min=lots", "is not an amount"),
        ("?from=2026-03-11&to=2026-03-10", "before the first day"),
        ("?sort=customer", "sort by 'issued' or 'fiscal'"),
        ("?after=garbage", "damaged"),
        ("?size=100000", "A page holds"),
    ):
        refused = await browser.get(base + query)
        assert refused.status_code == 400, query
        assert message in html.unescape(refused.text), (query, refused.text)


async def test_csv_export_streams_the_filtered_list(
    env: PortalUnderTest, demo_pfx: Pfx, demo_oib: str
) -> None:
    browser, uid = await _connected(env, demo_pfx, demo_oib, "csv@firma.example")
    events = _events(uid, 1205)  # more than one batch of the export
    await env.store.apply(events)
    page = await browser.get(f"/integrations/{uid}/invoices?state=fiscalized")
    url = _href(page.text, "csv")
    assert url == (f"/integrations/{uid}/invoices.csv"
                   "?state=fiscalized&sort=issued&order=desc&size=50")
    response = await browser.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0][:4] == ["integration", "integration_name", "invoice_number", "kind"]
    fiscalized = [e for e in reversed(events) if e.state is InvoiceState.FISCALIZED]
    assert [r[11] for r in rows[1:]] == [e.receipt_id for e in fiscalized]
    assert {r[4] for r in rows[1:]} == {"Ćevapi d.o.o.", "'=HYPERLINK(\"x\")"}  # no formulas
    assert rows[1][6] == "2026-03-11 05:04:00"  # Croatian time: 09:00 + 1204 minutes


async def test_detail_page_shows_the_evidence_and_keeps_it_after_remove(
    env: PortalUnderTest, demo_pfx: Pfx, demo_oib: str
) -> None:
    browser, uid = await _connected(env, demo_pfx, demo_oib, "detail@firma.example")
    events = _events(uid, 3)
    await env.store.apply(events)
    await env.store.apply([InvoiceStatus(  # a retry before, in the history
        integration_uid=uid, occurred_at=T0 - timedelta(minutes=5), invoice=events[1].invoice,
        state=InvoiceState.RETRYING, reason_code="s006", message="CIS unavailable", attempt=1,
    )])
    source = events[1].invoice.source_id
    url = f"/integrations/{uid}/invoices/{source}"
    page = await browser.get(url)
    assert page.status_code == 200, page.text
    text = page.text
    assert "2/POSL1/1" in text and events[1].receipt_id in text  # type: ignore[operator]
    assert f"{1:032x}" in text  # the ZKI
    assert "Card (K)" in text
    assert re.search(r"25.00 %</td><td class=\"num\">100.00</td><td class=\"num\">25.00", text)
    assert re.search(r"13.00 %</td><td class=\"num\">10.00</td><td class=\"num\">1.30", text)
    qr = (f"https://porezna.gov.hr/rn?jir={events[1].receipt_id}"
          "&amp;datv=20260310_0901&amp;izn=13630")
    assert qr in text
    assert "<svg" in text and "QR code of invoice INV-00001" in text
    assert "Not written back yet" in text  # no write-back outcome yet
    # The write-back stage's outcome, as the projector stores it; an older one delivered
    # late does not replace a newer one.
    for state, reason, at in (("failed", "reconnect Zoho Books", 2), ("written_back", None, 3),
                              ("waiting", "stale", 1)):
        await env.store.writebacks.apply(
            integration_uid=uid, source_id=source, state=state, reason=reason,
            fiscal_number="2/POSL1/1", event_id=f"wb-{at}", occurred_at=T0 + timedelta(hours=at),
        )
        shown = (await browser.get(url)).text
        label = shown[shown.index('id="write-back"'):].split("</dd>")[0]
        assert label.endswith(
            "Failed: reconnect Zoho Books" if at == 2 else "Written back"), label
    history = text[text.index('id="history"'):]
    assert history.index("CIS unavailable") < history.index("Fiscalized")

    removed = await browser.submit(f"/integrations/{uid}/remove", "remove",
                                   f"/integrations/{uid}/remove")
    assert removed.status_code == 303
    request = await browser.get(url + "/signed-request.xml")
    assert request.status_code == 200
    assert "attachment" in request.headers["content-disposition"]
    assert request.text == events[1].signed_request
    answer = await browser.get(url + "/signed-answer.xml")
    assert answer.status_code == 200 and answer.text == "<Jir>answer</Jir>"
    blocked = await browser.get(f"/integrations/{uid}/invoices/{events[2].invoice.source_id}")
    assert "license_limit" in blocked.text and 'id="qr"' not in blocked.text
    none = await browser.get(
        f"/integrations/{uid}/invoices/{events[2].invoice.source_id}/signed-request.xml")
    assert none.status_code == 404


async def test_another_accounts_invoices_are_not_found(
    env: PortalUnderTest, demo_pfx: Pfx, demo_oib: str
) -> None:
    owner, uid = await _connected(env, demo_pfx, demo_oib, "owner-inv@firma.example")
    events = _events(uid, 2)
    await env.store.apply(events)
    stranger = env.browser()
    await stranger.signup("stranger-inv@firma.example")
    source = events[0].invoice.source_id
    for path in (f"/integrations/{uid}/invoices", f"/integrations/{uid}/invoices.csv",
                 f"/integrations/{uid}/invoices/{source}",
                 f"/integrations/{uid}/invoices/{source}/signed-request.xml"):
        response = await stranger.get(path)
        assert response.status_code == 404, path
        assert events[0].receipt_id not in response.text  # type: ignore[operator]
    assert _sources((await stranger.get("/invoices")).text) == []
    assert "aaaa" not in (await stranger.get("/invoices.csv")).text
    assert (await owner.get(f"/integrations/{uid}/invoices/{source}")).status_code == 200
    anonymous = env.browser()
    assert (await anonymous.get("/invoices")).status_code == 303


async def test_resend_button_for_stuck_invoices_only(
    env: PortalUnderTest, demo_pfx: Pfx, demo_oib: str
) -> None:
    browser, uid = await _connected(env, demo_pfx, demo_oib, "resend@firma.example")
    events = _events(uid, 2)
    stuck = InvoiceStatus(
        integration_uid=uid, occurred_at=T0 + timedelta(minutes=9), invoice=InvoiceRef(
            source_id="4600000000099999", number="INV-99999", version="v1",
            issued_at=T0 + timedelta(minutes=9)),
        state=InvoiceState.RETRYING, reason_code="s006", message="CIS unavailable", attempt=3,
        message_id="6f2c8d1e-0000-4000-8000-000000000099", late=True,
    )
    await env.store.apply([*events, stuck])
    asked: list[tuple[str, list[str], str]] = []

    async def resend(uid: str, records: list[Any], who: str) -> resending.Outcome:
        asked.append((uid, [r.source_invoice_id for r in records], who))
        return resending.Outcome(sent=[r.source_invoice_id for r in records])

    env.portal.resend = resend
    try:
        url = f"/integrations/{uid}/invoices/{stuck.invoice.source_id}"
        page = await browser.get(url)
        assert 'id="resend"' in page.text and 'id="late"' in page.text
        done = await browser.submit(url, "resend", url + "/resend")
        assert done.status_code == 303 and done.headers["location"] == url
        assert asked == [(uid, [stuck.invoice.source_id],
                          "the Client Portal (resend@firma.example)")]
        assert "Resent" in (await browser.get(url)).text
        # A fiscalized invoice has no button, and a forged POST is refused unsent.
        fiscalized = f"/integrations/{uid}/invoices/{events[0].invoice.source_id}"
        on_time = (await browser.get(fiscalized)).text
        assert 'id="resend"' not in on_time and 'id="late"' not in on_time
        forged = await browser.submit(url, "resend", fiscalized + "/resend")
        assert forged.status_code == 409 and "fiscalized" in forged.text
        assert len(asked) == 1
    finally:
        env.portal.resend = None
    # Without the pipeline's clients the button answers 503 and sends nothing.
    unavailable = await browser.submit(url, "resend", url + "/resend")
    assert unavailable.status_code == 503


async def test_detail_page_history_names_every_step(
    env: PortalUnderTest, demo_pfx: Pfx, demo_oib: str
) -> None:
    """Received, signed, retried, fiscalized, edited after fiscalization and the storno,
    each at its own moment; a rejection shows its code and what to do."""
    browser, uid = await _connected(env, demo_pfx, demo_oib, "history@firma.example")
    [done] = _events(uid, 1)
    ref = done.invoice
    source = ref.source_id
    request = done.signed_request
    assert request is not None
    retry = InvoiceStatus(
        integration_uid=uid, occurred_at=T0 + timedelta(seconds=2), invoice=ref,
        state=InvoiceState.RETRYING, reason_code="s006", message="CIS unavailable", attempt=1,
        message_id="6f2c8d1e-0000-4000-8000-000000000001", signed_request=request,
    )
    done = done.model_copy(update={"attempt": 2, "message_id": "m-2", "signed_request":
                                   request.replace("T09:00:01<", "T09:00:02<")})
    edited = InvoiceStatus(
        integration_uid=uid, occurred_at=T0 + timedelta(minutes=9), state=InvoiceState.DUPLICATE,
        invoice=ref.model_copy(update={"version": "v2", "total": Decimal("12.00")}),
        reason_code="already_fiscalized", message="already fiscalized",
    )
    storno_ref = ref.model_copy(update={"source_id": source + ":storno",
                                        "total": Decimal("-10.00")})
    storno = InvoiceStatus(
        integration_uid=uid, occurred_at=T0 + timedelta(minutes=10), invoice=storno_ref,
        state=InvoiceState.FISCALIZED, reason_code="ok", message="Fiscalized; JIR s-1.",
        receipt_id="bbbb0000-0000-4000-8000-000000000000",
    )
    await env.store.apply([retry, done, edited, storno])
    await env.store.record_received([InvoiceReceived(
        integration_uid=uid, channel=Channel.POLL, occurred_at=T0 - timedelta(seconds=30),
        invoice=make_invoice(source_id=source, number=ref.number),
    )])
    page = await browser.get(f"/integrations/{uid}/invoices/{source}")
    assert page.status_code == 200, page.text
    history = page.text[page.text.index('id="history"'):]
    rows = re.findall(r'data-step="([^"]+)"><td>([^<]+)</td><td>(.*?)</td>', history)
    # The signature of attempt 2 and the outcome of attempt 1 share a second.
    assert [(step, when) for step, when, _ in rows] == [
        ("received", "2026-03-10 08:59:30"),
        ("signed", "2026-03-10 09:00:01"),
        ("retrying", "2026-03-10 09:00:02"),
        ("signed", "2026-03-10 09:00:02"),
        ("fiscalized", "2026-03-10 09:00:03"),
        ("edited", "2026-03-10 09:09:00"),
        ("storno-fiscalized", "2026-03-10 09:10:00"),
    ]
    labels = {step: html.unescape(re.sub("<[^>]+>", "", label)) for step, _, label in rows}
    assert labels["received"] == "Received" and labels["signed"] == "Signed"
    assert labels["retrying"] == "Retried" and labels["fiscalized"] == "Fiscalized"
    assert labels["edited"] == "Edited after fiscalization"
    assert labels["storno-fiscalized"] == "Storno: Fiscalized"
    assert "total 10.00 -&gt; 12.00 EUR" in history  # escaped, as every message
    assert f'href="/integrations/{uid}/invoices/{source}:storno"' in history

    rejected = InvoiceStatus(
        integration_uid=uid, occurred_at=T0, state=InvoiceState.REJECTED,
        invoice=ref.model_copy(update={"source_id": "rej-1"}), reason_code="s005",
        message="Rejected by the tax authority (s005: wrong certificate). Replace the "
                "certificate on the integration, then resend.",
    )
    await env.store.apply([rejected])
    shown = (await browser.get(f"/integrations/{uid}/invoices/rej-1")).text
    rows = re.findall(r'data-step="rejected"><td>[^<]+</td><td>Rejected</td><td>[^<]*</td>'
                      r'<td>s005</td><td>([^<]+)</td>', shown)
    assert rows and "Replace the certificate" in rows[0]


async def test_integration_names_wherever_the_uid_is_shown(
    env: PortalUnderTest, demo_pfx: Pfx, demo_oib: str
) -> None:
    """The customer's name for an integration beside its uid on the dashboard, both
    invoice lists, an invoice's page and the CSV; escaped, as the customer wrote it."""
    browser, uid = await _connected(env, demo_pfx, demo_oib, "names@firma.example")
    name = "=Shop <b>&</b> Co"
    await env.store.integrations.rename(uid, name)
    [event] = _events(uid, 1)
    await env.store.apply([event])
    escaped = html.escape(name, quote=False)
    shown = f'<span class="integration-name">{escaped}</span> <code>{uid}</code>'
    for url in ("/dashboard", f"/integrations/{uid}/dashboard", "/invoices",
                f"/integrations/{uid}/invoices",
                f"/integrations/{uid}/invoices/{event.invoice.source_id}"):
        page = await browser.get(url)
        assert page.status_code == 200, (url, page.text)
        assert shown in page.text, url
        assert "<b>&</b>" not in page.text, url
    across = (await browser.get("/invoices")).text
    assert re.search(r'<td class="integration"><span class="integration-name">', across)
    rows = list(csv.reader(io.StringIO((await browser.get("/invoices.csv")).text)))
    assert rows[1][:2] == [uid, "'" + name]  # a formula-looking name is quoted
    rows = list(csv.reader(io.StringIO(
        (await browser.get(f"/integrations/{uid}/invoices.csv")).text)))
    assert rows[1][:2] == [uid, "'" + name]
