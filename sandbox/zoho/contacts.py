"""Contacts as Zoho Books' `GET /books/v3/contacts/{contact_id}` shows them.

Following Zoho's published Get Contact response (API v3, Contacts): ids as strings, `""`
for empty texts, amounts as numbers, the edition-specific tax numbers (`tax_reg_no`,
`vat_reg_no`, `gst_no`) always present and `""` when unset, `custom_fields[]` with
`api_name` and `custom_field_hash`, billing and shipping addresses, contact persons.
Written from Zoho's documentation, not from what the connector reads.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sandbox.zoho.state import Organization

_ADDRESS_KEYS = ("attention", "address", "street2", "state_code", "city", "state", "zip",
                 "country", "fax", "phone")


def render_contact(org: Organization, contact: dict[str, Any], now: datetime) -> dict[str, Any]:
    """One stored contact (admin input) as Zoho answers it."""
    local = org.local(contact.get("created_at", now)).strftime("%Y-%m-%dT%H:%M:%S%z")
    fields = []
    for index, (api_name, value) in enumerate(sorted((contact.get("custom_fields") or {}).items())):
        fields.append(
            {
                "customfield_id": str(460_000_000_080_001 + index),
                "index": index + 1,
                "label": api_name.removeprefix("cf_").replace("_", " ").title(),
                "api_name": api_name,
                "data_type": "string",
                "placeholder": api_name,
                "value": value,
                "value_formatted": str(value),
                "is_active": True,
                "show_in_all_pdf": False,
                "show_on_pdf": False,
                "edit_on_portal": False,
                "edit_on_store": False,
                "show_in_portal": False,
                "show_in_store": False,
                "search_entity": "contact",
                "selected_option_id": "",
            }
        )
    address = {key: "" for key in _ADDRESS_KEYS} | {"address_id": ""}
    return {
        "contact_id": contact["contact_id"],
        "contact_name": contact["contact_name"],
        "company_name": contact.get("company_name", ""),
        "first_name": "",
        "last_name": "",
        "designation": "",
        "department": "",
        "website": "",
        "language_code": "",
        "language_code_formatted": "",
        "contact_salutation": "",
        "email": contact.get("email", ""),
        "phone": "",
        "mobile": "",
        "portal_status": "disabled",
        "has_transaction": True,
        "contact_type": "customer",
        "customer_sub_type": contact.get("customer_sub_type", "business"),
        "owner_id": "",
        "owner_name": "",
        "source": "user",
        "documents": [],
        "twitter": "",
        "facebook": "",
        "is_crm_customer": False,
        "is_linked_with_zohocrm": False,
        "primary_contact_id": "",
        "zcrm_account_id": "",
        "zcrm_contact_id": "",
        "crm_owner_id": "",
        "payment_terms": 0,
        "payment_terms_label": "Due on Receipt",
        "credit_limit_exceeded_amount": 0.0,
        "currency_id": "460000000000097",
        "currency_code": org.currency_code,
        "currency_symbol": "€" if org.currency_code == "EUR" else org.currency_code,
        "price_precision": 2,
        "exchange_rate": "",
        "can_show_customer_ob": True,
        "can_show_vendor_ob": False,
        "opening_balance_amount": 0.0,
        "opening_balance_amount_bcy": "",
        "outstanding_ob_receivable_amount": 0.0,
        "outstanding_ob_payable_amount": 0.0,
        "outstanding_receivable_amount": 0.0,
        "outstanding_receivable_amount_bcy": 0.0,
        "outstanding_payable_amount": 0.0,
        "outstanding_payable_amount_bcy": 0.0,
        "unused_credits_receivable_amount": 0.0,
        "unused_credits_receivable_amount_bcy": 0.0,
        "unused_credits_payable_amount": 0.0,
        "unused_credits_payable_amount_bcy": 0.0,
        "unused_retainer_payments": 0.0,
        "status": "active",
        "payment_reminder_enabled": True,
        "is_sms_enabled": True,
        "is_consent_agreed": False,
        "consent_date": "",
        "is_client_review_settings_enabled": False,
        "custom_fields": fields,
        "custom_field_hash": {
            key: value
            for field in fields
            for key, value in ((field["api_name"], field["value"]),
                               (field["api_name"] + "_unformatted", field["value"]))
        },
        "is_taxable": True,
        "tax_id": "",
        "tax_name": "",
        "tax_percentage": "",
        "tax_reg_no": contact.get("tax_reg_no", ""),
        "vat_reg_no": contact.get("vat_reg_no", ""),
        "gst_no": contact.get("gst_no", ""),
        "vat_treatment": "",
        "tax_treatment": "",
        "country_code": contact.get("country_code", ""),
        "billing_address": dict(address),
        "shipping_address": dict(address),
        "contact_persons": [],
        "addresses": [],
        "pricebook_id": "",
        "pricebook_name": "",
        "default_templates": {
            "invoice_template_id": "",
            "invoice_template_name": "",
            "creditnote_template_id": "",
            "creditnote_template_name": "",
        },
        "associated_with_square": False,
        "cards": [],
        "checks": [],
        "bank_accounts": [],
        "vpa_list": [],
        "notes": "",
        "created_time": local,
        "created_date": local[:10],
        "created_by_name": "",
        "last_modified_time": local,
        "tags": [],
        "zohopeople_client_id": "",
    }
