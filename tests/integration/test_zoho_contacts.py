"""The buyer's contact against the Zoho sandbox: Zoho's shape, read once per contact
and cache period, counted against the organization's calls, absent without the scope."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from connectors.zoho.contacts import CONTACTS_SCOPE_MISSING, ContactCache
from connectors.zoho.mapping import MappingOptions
from connectors.zoho.oauth import DEFAULT_SCOPES
from connectors.zoho.ratelimit import RateLimiter
from connectors.zoho.sync import changed_invoices
from tests.fixtures.zoho import ZohoSandboxHandle, invoice_spec
from tests.integration.test_zoho_api import raw_get

FAST = {"per_minute": 100_000, "daily": 1_000_000}
CUSTOMER = "460000000044001"  # invoice_spec's customer_id


async def test_get_contact_answers_in_zoho_s_shape(zoho_sandbox: ZohoSandboxHandle) -> None:
    zoho = zoho_sandbox
    connection = await zoho.connect()
    narrow = await zoho.connect(
        scopes=tuple(s for s in DEFAULT_SCOPES if s != "ZohoBooks.contacts.READ")
    )
    org = connection.organization_id
    await zoho.put_contact(org, CUSTOMER, contact_name="Kava d.o.o.", vat_reg_no="HR12345678903",
                           custom_fields={"cf_oib": "12345678903"})  # fmt: skip
    answer = await raw_get(zoho, connection, f"/contacts/{CUSTOMER}", organization_id=org)
    assert answer.status_code == 200
    body = answer.json()
    assert (body["code"], body["message"]) == (0, "success")
    contact = body["contact"]
    assert contact["contact_id"] == CUSTOMER and isinstance(contact["contact_id"], str)
    assert (contact["tax_reg_no"], contact["vat_reg_no"], contact["gst_no"]) == (
        "", "HR12345678903", "")
    [field] = contact["custom_fields"]
    assert (field["api_name"], field["value"]) == ("cf_oib", "12345678903")
    assert contact["custom_field_hash"]["cf_oib"] == "12345678903"
    assert contact["website"] == "" and contact["billing_address"]["zip"] == ""

    missing = await raw_get(zoho, connection, "/contacts/460000000000001", organization_id=org)
    assert (missing.status_code, missing.json()["code"]) == (404, 1002)
    refused = await raw_get(zoho, narrow, f"/contacts/{CUSTOMER}",
                            organization_id=narrow.organization_id)  # fmt: skip
    assert (refused.status_code, refused.json()["code"]) == (401, 57)


async def test_sync_reads_each_contact_once_and_counts_the_call(
    zoho_sandbox: ZohoSandboxHandle,
) -> None:
    zoho = zoho_sandbox
    connection = await zoho.connect(limits=FAST)
    org = connection.organization_id
    await zoho.put_contact(org, CUSTOMER, tax_reg_no="12345678903")
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    specs = [invoice_spec(created_time=(base + timedelta(minutes=i)).isoformat(),
                          last_modified_time=(base + timedelta(minutes=i)).isoformat())
             for i in range(5)]  # fmt: skip
    specs.append(invoice_spec(customer_id="460000000044002", tax_reg_no="98765432106",
                              created_time=(base + timedelta(minutes=6)).isoformat(),
                              last_modified_time=(base + timedelta(minutes=6)).isoformat()))
    await zoho.create_invoices(org, specs)
    now = [datetime.now(UTC)]
    cache = ContactCache(ttl=timedelta(minutes=30), clock=lambda: now[0])
    books = connection.client(zoho.http, RateLimiter(per_minute=100_000))

    first = await changed_invoices(books, None, contacts=cache)
    assert first.complete and len(first.invoices) == 6
    by_customer = {(i.customer.source_id, i.customer.tax_id, i.customer.tax_id_source)
                   for i in first.invoices}  # fmt: skip
    assert by_customer == {
        (CUSTOMER, "12345678903", "contact.tax_reg_no"),
        ("460000000044002", "98765432106", "invoice.tax_reg_no"),  # its own: no call
    }
    # two list pages, six details, one contact for five invoices
    assert cache.calls == 1
    assert first.api_calls == 2 + 6 + 1

    # Within the cache period the contact is not read again; after it, once more.
    again = await changed_invoices(books, None, contacts=cache)
    assert cache.calls == 1 and again.api_calls == 2 + 6
    now[0] += timedelta(minutes=31)
    await changed_invoices(books, None, contacts=cache)
    assert cache.calls == 2

    # The same options as an integration stores them pick the custom field first.
    await zoho.put_contact(org, CUSTOMER, tax_reg_no="12345678903",
                           custom_fields={"cf_oib": "11111111119"})  # fmt: skip
    now[0] += timedelta(minutes=31)
    options = MappingOptions.from_stored({"buyer_tax_field": "cf_oib"})
    third = await changed_invoices(books, None, contacts=cache, options=options)
    assert {i.customer.tax_id for i in third.invoices if i.customer.source_id == CUSTOMER} == {
        "11111111119"}


async def test_concurrent_reads_of_one_contact_share_one_call(
    zoho_sandbox: ZohoSandboxHandle,
) -> None:
    zoho = zoho_sandbox
    connection = await zoho.connect(limits=FAST)
    await zoho.put_contact(connection.organization_id, CUSTOMER, tax_reg_no="12345678903")
    cache = ContactCache()
    books = connection.client(zoho.http, RateLimiter(per_minute=100_000))
    contacts = await asyncio.gather(*(cache.get(books, CUSTOMER) for _ in range(10)))
    assert cache.calls == 1 and books.limiter.calls == 1
    assert {c["tax_reg_no"] for c in contacts if c is not None} == {"12345678903"}
    assert await cache.get(books, "460000000000001") is None  # 1002: cached as absent
    assert await cache.get(books, "460000000000001") is None
    assert cache.calls == 2


async def test_without_the_contacts_scope_invoices_map_without_the_contact(
    zoho_sandbox: ZohoSandboxHandle,
) -> None:
    zoho = zoho_sandbox
    connection = await zoho.connect(
        limits=FAST, scopes=tuple(s for s in DEFAULT_SCOPES if s != "ZohoBooks.contacts.READ")
    )
    await zoho.put_contact(connection.organization_id, CUSTOMER, tax_reg_no="12345678903")
    for _ in range(3):
        await zoho.create_invoice(connection.organization_id)
    cache = ContactCache()
    books = connection.client(zoho.http, RateLimiter(per_minute=100_000))
    result = await changed_invoices(books, None, contacts=cache)
    assert result.complete and len(result.invoices) == 3
    assert {i.customer.tax_id for i in result.invoices} == {None}
    assert CONTACTS_SCOPE_MISSING in books.scopes_missing
    assert cache.calls == 1  # asked once, not once per invoice or poll
    await changed_invoices(books, None, contacts=cache)
    assert cache.calls == 1


async def test_a_contact_refused_for_the_day_keeps_its_invoice_for_the_next_sync(
    zoho_sandbox: ZohoSandboxHandle,
) -> None:
    zoho = zoho_sandbox
    connection = await zoho.connect(limits={"per_minute": 100_000, "daily": 3})
    await zoho.put_contact(connection.organization_id, CUSTOMER, tax_reg_no="12345678903")
    await zoho.create_invoice(connection.organization_id)
    await zoho.reset_usage(connection.organization_id)
    cache = ContactCache()
    books = connection.client(zoho.http, RateLimiter(per_minute=100_000))
    # two lists and the detail fit the day's three calls; the contact does not
    result = await changed_invoices(books, None, contacts=cache)
    assert not result.complete and result.invoices == []
    assert result.new_watermark is None  # the invoice is read again, not lost
    await zoho.set_limits(connection.organization_id, daily=4)  # the next day
    await zoho.reset_usage(connection.organization_id)
    books = connection.client(zoho.http, RateLimiter(per_minute=100_000))
    again = await changed_invoices(books, None, contacts=cache)
    assert again.complete and [i.customer.tax_id for i in again.invoices] == ["12345678903"]
