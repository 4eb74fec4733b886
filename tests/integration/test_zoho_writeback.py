"""Write-back, payments and credit notes against the Zoho sandbox's real HTTP API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from connectors.zoho.mapping import parse_datetime
from connectors.zoho.ratelimit import RateLimiter
from connectors.zoho.sync import changed_invoices
from connectors.zoho.writeback import Action, FieldMap, add_storno_comment, write_back
from schemas.invoice import DocumentKind, PaymentMethod
from tests.fixtures.zoho import ZohoSandboxHandle

FAST = {"per_minute": 100_000, "daily": 1_000_000}
READ_ONLY = ("ZohoBooks.invoices.READ", "ZohoBooks.settings.READ", "ZohoBooks.creditnotes.READ")


async def test_fiscal_fields_are_written_onto_the_invoice(zoho_sandbox: ZohoSandboxHandle) -> None:
    connection = await zoho_sandbox.connect(limits=FAST)
    org = connection.organization_id
    books = connection.client(zoho_sandbox.http)
    created = await zoho_sandbox.create_invoice(org)

    fields = {f["api_name"]: f["customfield_id"] for f in await books.invoice_custom_fields()}
    assert set(fields) >= {"cf_fiskalni_broj", "cf_zki", "cf_jir", "cf_qr_url"}
    mapping = FieldMap({"fiscal_number": fields["cf_fiskalni_broj"], "jir": fields["cf_jir"]})
    jir = "3d6e4b1c-2c3f-4e0a-9f1e-7a1b2c3d4e5f"
    failure = await write_back(
        books, created["invoice_id"], mapping,
        {"fiscal_number": "57/POSL1/1", "jir": jir, "zki": "not mapped: not written"},
    )  # fmt: skip
    assert failure is None
    await books.add_comment(created["invoice_id"], "Fiskalizirano: JIR " + jir)

    shown = await zoho_sandbox.show_invoice(org, created["invoice_id"])
    assert shown["written_back"] == {"cf_fiskalni_broj": "57/POSL1/1", "cf_jir": jir}
    assert [c["description"] for c in shown["comments"]] == ["Fiskalizirano: JIR " + jir]
    detail = await books.invoice(created["invoice_id"])
    assert detail["custom_field_hash"]["cf_jir"] == jir
    # A partial update keeps the invoice's status and lines, and counts as an edit.
    assert detail["status"] == created["status"] and detail["total"] == Decimal("12.38")
    assert parse_datetime(detail["last_modified_time"], "t") > parse_datetime(
        created["last_modified_time"], "t"
    )


async def test_write_back_failures_say_whether_to_retry(zoho_sandbox: ZohoSandboxHandle) -> None:
    connection = await zoho_sandbox.connect(limits=FAST)
    org = connection.organization_id
    books = connection.client(zoho_sandbox.http)
    created = await zoho_sandbox.create_invoice(org)
    jir_field = {f["api_name"]: f["customfield_id"] for f in await books.invoice_custom_fields()}[
        "cf_jir"
    ]

    gone = await write_back(
        books, "5999999999999999999", FieldMap({"jir": jir_field}), {"jir": "x"}
    )
    assert gone is not None and gone.action is Action.NEEDS_CUSTOMER
    assert "no longer exists" in gone.reason
    unknown = await write_back(
        books, created["invoice_id"], FieldMap({"jir": "460000000000999"}), {"jir": "x"}
    )
    assert unknown is not None and unknown.action is Action.NEEDS_CUSTOMER
    assert "custom fields" in unknown.reason

    narrow = await zoho_sandbox.connect(limits=FAST, scopes=READ_ONLY)
    other = await zoho_sandbox.create_invoice(narrow.organization_id)
    fields = await narrow.client(zoho_sandbox.http).invoice_custom_fields()
    refused = await write_back(
        narrow.client(zoho_sandbox.http), other["invoice_id"],
        FieldMap({"jir": fields[0]["customfield_id"]}), {"jir": "x"},
    )  # fmt: skip
    assert refused is not None and refused.action is Action.NEEDS_CUSTOMER
    assert "ZohoBooks.invoices.UPDATE" in refused.reason

    await zoho_sandbox.set_limits(org, daily=0)
    spent = await write_back(
        books, created["invoice_id"], FieldMap({"jir": jir_field}), {"jir": "x"}
    )
    assert spent is not None and spent.action is Action.RETRY and spent.retry_at is not None


async def test_sync_reads_payments_and_credit_notes(zoho_sandbox: ZohoSandboxHandle) -> None:
    connection = await zoho_sandbox.connect(limits=FAST)
    org = connection.organization_id
    books = connection.client(zoho_sandbox.http, RateLimiter(per_minute=100_000))
    paid = await zoho_sandbox.create_invoice(
        org, status="paid",
        payments=[{"payment_mode": "cash", "amount": "2.38"},
                  {"payment_mode": "creditcard", "amount": "10.00"}],
    )  # fmt: skip
    note = await zoho_sandbox.create_credit_note(
        org, invoices_credited=[{"invoice_id": paid["invoice_id"], "amount": "12.38"}]
    )
    result = await changed_invoices(books, datetime.now(UTC) - timedelta(hours=1))
    assert result.complete and not result.rejected
    by_id = {i.source_id: i for i in result.invoices}
    invoice = by_id[paid["invoice_id"]]
    assert invoice.payment_method is PaymentMethod.CARD
    assert [p.mode for p in invoice.payments] == ["cash", "creditcard"]
    credit = by_id[note["creditnote_id"]]
    assert credit.kind is DocumentKind.CREDIT_NOTE and credit.total == Decimal("-12.38")
    assert [c.source_id for c in credit.credited] == [paid["invoice_id"]]
    # Two lists, two details, one payments call (the credit note has none).
    assert result.api_calls == 5


async def test_a_grant_without_the_credit_notes_scope_keeps_syncing_invoices(
    zoho_sandbox: ZohoSandboxHandle,
) -> None:
    connection = await zoho_sandbox.connect(
        limits=FAST, scopes=("ZohoBooks.invoices.READ", "ZohoBooks.settings.READ")
    )
    books = connection.client(zoho_sandbox.http)
    await zoho_sandbox.create_invoice(connection.organization_id)
    first = await changed_invoices(books, None)
    assert first.complete and len(first.invoices) == 1
    assert [(r.invoice_id, r.code) for r in first.rejected] == [("creditnotes", "scope_missing")]
    assert "ZohoBooks.creditnotes.READ" in first.rejected[0].reason
    again = await changed_invoices(books, first.new_watermark, seen=first.seen)
    assert again.complete and again.rejected == [] and again.api_calls == 1  # not asked again


async def test_a_credit_notes_fiscal_fields_go_into_its_own_custom_fields(
    zoho_sandbox: ZohoSandboxHandle,
) -> None:
    connection = await zoho_sandbox.connect(limits=FAST)
    org = connection.organization_id
    books = connection.client(zoho_sandbox.http)
    invoice = await zoho_sandbox.create_invoice(org)
    note = await zoho_sandbox.create_credit_note(
        org, invoices_credited=[{"invoice_id": invoice["invoice_id"], "amount": "12.38"}]
    )
    invoice_fields = {f["customfield_id"] for f in await books.invoice_custom_fields()}
    fields = {f["api_name"]: f["customfield_id"] for f in await books.credit_note_custom_fields()}
    assert set(fields) >= {"cf_fiskalni_broj", "cf_jir"} and not invoice_fields & set(
        fields.values())  # per module: ids of their own
    mapping = FieldMap({"creditnote.fiscal_number": fields["cf_fiskalni_broj"],
                        "creditnote.jir": fields["cf_jir"],
                        "jir": sorted(invoice_fields)[0]})
    written = {"fiscal_number": "8/POSL1/1", "jir": "j-8", "zki": "not mapped for notes"}
    assert await write_back(books, note["creditnote_id"], mapping, written,
                            credit_note=True) is None

    shown = await zoho_sandbox.show_credit_note(org, note["creditnote_id"])
    assert shown["written_back"] == {"cf_fiskalni_broj": "8/POSL1/1", "cf_jir": "j-8"}
    detail = await books.credit_note(note["creditnote_id"])
    assert {f["api_name"]: f["value"] for f in detail["custom_fields"]} == {
        "cf_fiskalni_broj": "8/POSL1/1", "cf_jir": "j-8"}
    assert detail["status"] == note["status"] and detail["total"] == Decimal("12.38")
    untouched = await zoho_sandbox.show_invoice(org, invoice["invoice_id"])
    assert untouched["written_back"] == {}

    # An invoice's field id is no credit note field; a grant without the scope says which.
    wrong = await write_back(books, note["creditnote_id"],
                             FieldMap({"creditnote.jir": sorted(invoice_fields)[0]}),
                             {"jir": "x"}, credit_note=True)
    assert wrong is not None and wrong.action is Action.NEEDS_CUSTOMER
    narrow = await zoho_sandbox.connect(limits=FAST, scopes=READ_ONLY)
    other_invoice = await zoho_sandbox.create_invoice(narrow.organization_id)
    other = await zoho_sandbox.create_credit_note(
        narrow.organization_id,
        invoices_credited=[{"invoice_id": other_invoice["invoice_id"], "amount": "12.38"}],
    )
    refused = await write_back(narrow.client(zoho_sandbox.http), other["creditnote_id"],
                               FieldMap({"creditnote.jir": fields["cf_jir"]}), {"jir": "x"},
                               credit_note=True)
    assert refused is not None and refused.action is Action.NEEDS_CUSTOMER
    assert "ZohoBooks.creditnotes.UPDATE" in refused.reason


async def test_a_stornos_comment_is_added_once(zoho_sandbox: ZohoSandboxHandle) -> None:
    connection = await zoho_sandbox.connect(limits=FAST)
    org = connection.organization_id
    books = connection.client(zoho_sandbox.http)
    voided = await zoho_sandbox.create_invoice(org)
    await books.add_comment(voided["invoice_id"], "Kupac je vratio robu")
    storno = {"fiscal_number": "9/POSL1/1", "jir": "j-9", "qr_url": "https://x?izn=-1238"}

    assert await add_storno_comment(books, voided["invoice_id"], storno) == (True, None)
    assert await add_storno_comment(books, voided["invoice_id"], storno) == (False, None)
    assert await add_storno_comment(
        books, voided["invoice_id"], {**storno, "fiscal_number": "10/POSL1/1"}) == (True, None)
    listed = await books.invoice_comments(voided["invoice_id"])
    assert [c["description"].splitlines()[-1] for c in listed] == [
        "Kupac je vratio robu", "QR: https://x?izn=-1238", "QR: https://x?izn=-1238"]
    assert sum("9/POSL1/1" in c["description"] for c in listed) == 1
