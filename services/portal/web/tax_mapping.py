"""The tax mapping page: what the tax authority is told about the amounts under each of
the organization's Zoho taxes, under no tax at all, and in charges outside the lines.

The fiscal record (fiscal/hr_cis/record.py) reports a taxed amount as VAT at its tax's
rate unless this mapping says otherwise, and refuses to guess for an amount without VAT
(exempt, not subject, margin scheme or VAT at 0 % are different fields of the record):
such an invoice waits, rejected with a reason that sends the bookkeeper here. The taxes
are listed from Zoho Books with the integration's grant; when Zoho cannot list them, a
tax id can still be typed.

Saving checks each row (a tax that charges VAT stays VAT; a charge outside the lines
carries none; a rate is a percentage; a fee has a name), then the whole settings through
fiscal.hr_cis.settings.FiscalSettings, stores them and announces `settings_changed`: the
fiscalizer applies it at once, and the invoices that waited for it are read again from
Zoho Books (runtime/store/refetch.py). Bad input is refused with what is wrong, and
nothing is changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from connectors.zoho.errors import ZohoError
from fiscal.hr_cis.record import UNTAXED_KEY
from fiscal.hr_cis.settings import FiscalSettings, TaxCategory, TaxTreatment
from runtime.store import IntegrationRecord, IntegrationStatus
from schemas.events import IntegrationEvent, IntegrationEventKind
from schemas.invoice import ChargeKind
from services.portal.web.context import PageError, Portal, announce, log, portal_of, render
from services.portal.web.sessions import session_of
from services.portal.web.zoho_books import books_client

router = APIRouter()

CATEGORY_LABELS: dict[str, str] = {
    "vat": "VAT (PDV) at the rate given",
    "pnp": "Consumption tax (PNP) at the rate given",
    "exempt": "Exempt from VAT (oslobođeno)",
    "not_subject": "Not subject to VAT (ne podliježe oporezivanju)",
    "margin": "Margin scheme (posebni postupak oporezivanja marže)",
    "fee": "A fee (naknada), with its name",
}
CHARGE_LABELS = {
    ChargeKind.ADJUSTMENT: "Adjustment (Zoho's adjustment of the total)",
    ChargeKind.ROUNDING: "Rounding of the total",
    ChargeKind.DISCOUNT_AFTER_TAX: "Discount after tax",
}
# Rows for tax ids typed by hand (when Zoho cannot list the taxes, or for a tax it no
# longer lists), and at most this many listed taxes: every row is two form fields (three
# for a typed one), and the CSRF guard parses at most 50.
BLANK_ROWS = 2
MAX_TAX_ROWS = 18
MAX_ID_LENGTH = 40


@dataclass(frozen=True)
class Row:
    key: str  # the mapping's key: a Zoho tax id, "" (no tax) or "charge:<kind>"
    label: str
    kind: str  # "tax" (charges VAT), "zero" (a 0 % tax or no tax), "charge"
    rate: Decimal | None = None  # a Zoho tax's own percentage
    listed: bool = True  # False: mapped, but Zoho did not list it now

    @property
    def field(self) -> str:
        return "t." + (self.key or "none")


def _percentage(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


async def _taxes(portal: Portal, record: IntegrationRecord) -> tuple[list[Row] | None, str | None]:
    """The organization's taxes as rows, or None and why they are not listed."""
    client = await books_client(portal, record)
    if isinstance(client, str):
        return None, client
    try:
        listed = await client.taxes()
    except ZohoError as error:
        log.warning("listing Zoho taxes failed",
                    extra={"integration_uid": record.uid, "error": type(error).__name__})
        return None, f"Zoho Books did not list the taxes ({error})"
    rows = []
    for tax in listed:
        tax_id, rate = str(tax.get("tax_id") or ""), _percentage(tax.get("tax_percentage"))
        if not tax_id or rate is None:
            continue
        name = str(tax.get("tax_name") or tax_id)
        rows.append(Row(tax_id, f"{name} ({rate.normalize():f} %)",
                        "tax" if rate else "zero", rate))
    return rows, None


def rows_of(taxes: list[Row] | None, mapping: Mapping[str, Any]) -> list[Row]:
    """Every row the form shows: the listed taxes, taxes mapped but not listed, no tax,
    and the charges."""
    rows = list(taxes or [])[:MAX_TAX_ROWS]
    known = {r.key for r in rows}
    special = {UNTAXED_KEY} | {f"charge:{kind.value}" for kind in ChargeKind}
    for key in sorted(mapping):
        if key not in known and key not in special:
            why = "not listed by Zoho Books now" if taxes is not None else "mapped before"
            rows.append(Row(key, f"Tax {key} ({why})", "unknown", None, listed=False))
    rows.append(Row(UNTAXED_KEY, "Amounts without any tax", "zero"))
    rows += [Row(f"charge:{kind.value}", label, "charge") for kind, label in CHARGE_LABELS.items()]
    return rows


async def _rows(portal: Portal, record: IntegrationRecord, mapping: Mapping[str, Any]
                ) -> tuple[list[Row], str | None]:
    """The form's rows, and why Zoho's taxes are not listed (None: they are)."""
    taxes, unlisted = await _taxes(portal, record)
    return rows_of(taxes, mapping), unlisted


def form_values(mapping: Mapping[str, Any]) -> dict[str, str]:
    values: dict[str, str] = {}
    for key, raw in mapping.items():
        treatment = TaxTreatment.model_validate(raw)
        field = "t." + (key or "none")
        values[field] = treatment.category
        detail = treatment.name if treatment.category == "fee" else treatment.rate
        values["d." + field] = "" if detail is None else str(detail)
    return values


def _treatment(row: Row, category: str, detail: str) -> TaxTreatment | str:
    """The row's treatment, or what is wrong with it (said to the bookkeeper)."""
    if category not in CATEGORY_LABELS:
        return f"{row.label}: choose one of the listed treatments"
    if category in ("vat", "pnp"):
        if row.kind == "charge":
            return (f"{row.label}: an amount outside the invoice lines carries no VAT; choose "
                    "exempt, not subject, margin scheme or a fee, or make it an invoice line "
                    "with its tax in Zoho Books")
        rate = None
        if detail:
            rate = _percentage(detail.replace(",", "."))
            if rate is None or not 0 <= rate <= 100 or rate != rate.quantize(Decimal("0.01")):
                return f"{row.label}: the rate is a percentage such as 25 or 5.5, not {detail!r}"
        if row.kind == "zero" and rate not in (None, Decimal(0)):
            return (f"{row.label}: these amounts carry no tax in Zoho Books, so they can only "
                    f"be reported at 0 %, not {rate} %; correct the tax in Zoho Books instead")
        return TaxTreatment(category=category, rate=rate)
    if row.kind == "tax":
        return (f"{row.label}: this tax charges VAT, so the supply under it is not "
                f"{CATEGORY_LABELS[category].split(' (')[0].lower()}; keep it VAT, or use a "
                "0 % tax for such supplies in Zoho Books")
    if category == "fee":
        name = detail.strip()
        if not name or len(name) > 100:
            return f"{row.label}: a fee is reported with its name (1 to 100 characters)"
        return TaxTreatment(category="fee", name=name)
    return TaxTreatment(category=category)


def check(
    form: Mapping[str, str], rows: list[Row]
) -> tuple[dict[str, TaxTreatment] | None, dict[str, str]]:
    """The mapping the form asks for, and the problems by field name."""
    mapping: dict[str, TaxTreatment] = {}
    problems: dict[str, str] = {}
    for row in rows:
        category = form.get(row.field, "").strip()
        if not category:
            continue  # the default: a taxed amount is VAT at its rate; the others wait
        made = _treatment(row, category, form.get("d." + row.field, "").strip())
        if isinstance(made, str):
            problems[row.field] = made
        else:
            mapping[row.key] = made
    for index in range(BLANK_ROWS):
        tax_id = form.get(f"new.{index}", "").strip()
        category = form.get(f"t.new.{index}", "").strip()
        if not tax_id and not category:
            continue
        typed = Row(tax_id, f"Tax {tax_id or '(no id)'}", "unknown")
        if not tax_id.isdigit() or len(tax_id) > MAX_ID_LENGTH:
            problems[f"new.{index}"] = (f"Tax id {tax_id[:MAX_ID_LENGTH]!r}: a Zoho tax id is "
                                        "digits only, as Zoho shows it")
        elif tax_id in mapping or any(r.key == tax_id for r in rows):
            problems[f"new.{index}"] = f"Tax {tax_id} is already in the table above"
        elif not category:
            problems[f"new.{index}"] = f"Tax {tax_id}: choose how it is reported"
        else:
            made = _treatment(typed, category, form.get(f"d.t.new.{index}", "").strip())
            if isinstance(made, str):
                problems[f"new.{index}"] = made
            else:
                mapping[tax_id] = made
    return (None, problems) if problems else (mapping, {})


def _page(
    request: Request, record: IntegrationRecord, rows: list[Row], values: Mapping[str, str],
    unlisted: str | None, problems: Mapping[str, str] | None = None, status: int = 200,
) -> Response:
    return render(
        request, "tax_mapping.html", status, record=record, rows=rows, values=values,
        unlisted=unlisted, problems=problems or {}, categories=CATEGORY_LABELS,
        allowed=categories_for, blank_rows=range(BLANK_ROWS),
        in_vat=bool(record.fiscal_settings.get("in_vat_system", True)),
        editable=record.status is not IntegrationStatus.REMOVED,
    )


def _require_hr_cis(record: IntegrationRecord) -> None:
    if record.fiscal_profile != "hr-cis":
        raise PageError(404, "No tax mapping",
                        "This integration's tax authority takes no tax mapping.",
                        next_url=f"/integrations/{record.uid}",
                        next_label="Back to the integration")


@router.get("/integrations/{uid}/tax-mapping")
async def tax_mapping_page(request: Request, uid: str) -> Response:
    portal = portal_of(request)
    record = await portal.owned_integration(request, uid)
    _require_hr_cis(record)
    mapping = record.fiscal_settings.get("tax_mapping") or {}
    rows, unlisted = await _rows(portal, record, mapping)
    return _page(request, record, rows, form_values(mapping), unlisted)


@router.post("/integrations/{uid}/tax-mapping")
async def save_tax_mapping(request: Request, uid: str) -> Response:
    portal = portal_of(request)
    record = await portal.owned_integration(request, uid)
    _require_hr_cis(record)
    current: dict[str, Any] = record.fiscal_settings.get("tax_mapping") or {}
    rows, unlisted = await _rows(portal, record, current)
    if record.status is IntegrationStatus.REMOVED:
        return _page(request, record, rows, form_values(current), unlisted,
                     {"": "A removed integration fiscalizes nothing; nothing was changed."}, 409)
    form = {k: str(v) for k, v in (await request.form()).items() if k != "csrf_token"}
    mapping, problems = check(form, rows)
    if mapping is None:
        return _page(request, record, rows, form, unlisted, problems, 400)
    stored = {key: t.model_dump(mode="json", exclude_none=True) for key, t in mapping.items()}
    try:
        settings = FiscalSettings.model_validate({**record.fiscal_settings,
                                                  "tax_mapping": stored})
    except ValidationError as error:  # settings stored before a rule existed
        return _page(request, record, rows, form, unlisted,
                     {"": f"The integration's fiscal settings are not valid: {error}"}, 400)
    await portal.store.integrations.set_fiscal_settings(uid, settings)
    await announce(
        portal,
        IntegrationEvent(integration_uid=uid, kind=IntegrationEventKind.SETTINGS_CHANGED,
                         reason="tax mapping set by the owner in the portal",
                         details={"tax_mapping": stored}),
        failure="The tax mapping was saved; the fiscalizer applies it within half a minute. "
                "Invoices that waited for it are read again once it is saved again: save it "
                "again in a minute.",
    )
    log.info("tax mapping set", extra={"integration_uid": uid, "keys": sorted(stored)})
    session_of(request).flash(
        "Tax mapping saved. New invoices are reported with it; invoices that waited for it "
        "are read again from Zoho Books within a minute or two and fiscalized.")
    return RedirectResponse(f"/integrations/{uid}/tax-mapping", status_code=303)


def categories_for(kind: str) -> tuple[TaxCategory, ...]:
    """The treatments a row of this kind may take (the template offers only these)."""
    if kind == "tax":
        return ("vat", "pnp")
    if kind == "charge":
        return ("exempt", "not_subject", "margin", "fee")
    return ("vat", "pnp", "exempt", "not_subject", "margin", "fee")
