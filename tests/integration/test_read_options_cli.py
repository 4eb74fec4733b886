"""`fiscobridge integrations read-options`: shows, changes and validates an integration's
Zoho read options in the store; bad input is refused and changes nothing."""

from __future__ import annotations

import re

import pytest

from fiscal.hr_cis.certificate import FiscalCertificate
from fiscal.hr_cis.settings import FiscalSettings
from runtime.store import Store
from tests.fixtures.certs import Pfx
from tests.integration.test_store_cli import Invoke, cli_env, invoke, topics  # noqa: F401

pytestmark = pytest.mark.kafka


async def test_read_options_are_shown_set_merged_and_refused_when_invalid(
    invoke: Invoke,  # noqa: F811
    store: Store,
    demo_pfx: Pfx,
    demo_certificate: FiscalCertificate,
    fiscal_settings: FiscalSettings,
) -> None:
    account, _ = await store.accounts.ensure("owner@obrt.hr")
    uid = (await store.integrations.create(
        account_id=account.account_id, fiscal_settings=fiscal_settings, pfx=demo_pfx.data,
        password=demo_pfx.password, certificate=demo_certificate,
    )).record.uid  # fmt: skip

    async def stored() -> dict[str, object]:
        record = await store.integrations.get(uid)
        assert record is not None
        return record.zoho_read_options

    shown = await invoke("integrations", "read-options", uid)
    assert shown.exit_code == 0, shown.output
    assert re.search(r"^buyer_tax_field:\s+-$", shown.stdout, re.M)
    assert re.search(r"^payment_modes:\s+built-in table$", shown.stdout, re.M)
    assert re.search(r"^base_currency:\s+EUR$", shown.stdout, re.M)

    result = await invoke("integrations", "read-options", uid, "--buyer-tax-field", "cf_oib",
                          "--payment-mode", "Stripe Card=card", "--payment-mode", "cash=other")
    assert result.exit_code == 0, result.output
    assert re.search(r"^buyer_tax_field:\s+cf_oib$", result.stdout, re.M)
    assert re.search(r"^payment_modes:\s+cash=other, stripecard=card$", result.stdout, re.M)
    assert await stored() == {"buyer_tax_field": "cf_oib",
                              "payment_modes": {"cash": "other", "stripecard": "card"}}

    # Options not given keep their value; '-' drops one entry or the field.
    result = await invoke("integrations", "read-options", uid, "--payment-mode", "cash=-",
                          "--default-payment-method", "bank_transfer")
    assert result.exit_code == 0, result.output
    assert await stored() == {"buyer_tax_field": "cf_oib", "payment_modes": {"stripecard": "card"},
                              "default_payment_method": "bank_transfer"}

    before = await stored()
    for args, message in [
        (("--buyer-tax-field", "OIB"), "buyer_tax_field must be a custom field's api_name"),
        (("--buyer-tax-field", "cf_OIB"), "cf_ then lowercase"),
        (("--payment-mode", "cash=wire"), "payment mode 'cash' must be one of"),
        (("--payment-mode", "cash"), "is not MODE=METHOD"),
        (("--default-payment-method", "bitcoin"), "default_payment_method must be one of"),
        (("--base-currency", "EURO"), "three-letter ISO code"),
        (("--reset", "--buyer-tax-field", "x"), "buyer_tax_field must be"),
    ]:
        refused = await invoke("integrations", "read-options", uid, *args)
        assert refused.exit_code == 2, (args, refused.output)
        assert message in refused.output, (args, refused.output)
        assert await stored() == before, args

    missing = await invoke("integrations", "read-options", "no-such", "--buyer-tax-field", "cf_x")
    assert missing.exit_code != 0 and "no integration 'no-such'" in missing.output

    reset = await invoke("integrations", "read-options", uid, "--reset")
    assert reset.exit_code == 0, reset.output
    assert await stored() == {}
