"""The read options page: how the integration's Zoho invoices are read, for the owner.

Where the buyer's tax number (OIB) comes from (a contact custom field `cf_...`, else the
contact's tax_reg_no / vat_reg_no / gst_no), which payment method each Zoho payment mode
is, the method of an invoice without payments, and the organization's base currency.
Each method is shown with the payment code it is reported to the tax authority as
(G/K/T/O), from the integration's fiscal settings.

Saving validates through connectors.zoho.mapping.MappingOptions and stores the result,
as `fiscobridge integrations read-options` does, then announces `settings_changed`: the
poller reads the options from the store at every poll and ingest within its integration
cache time, and documents that were refused before they were signed are read again with
them (runtime/store/refetch.py). Bad input is refused with what is wrong, and nothing is
changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from connectors.zoho.mapping import DEFAULT_PAYMENT_MODES, MappingOptions, payment_mode_key
from fiscal.hr_cis.settings import DEFAULT_PAYMENT_METHODS, FiscalSettings
from runtime.store import IntegrationRecord, IntegrationStatus
from schemas.events import IntegrationEvent, IntegrationEventKind
from schemas.invoice import PaymentMethod
from services.portal.web.context import announce, log, portal_of, render
from services.portal.web.sessions import session_of

router = APIRouter()

METHOD_LABELS = {
    PaymentMethod.CASH: "Cash", PaymentMethod.CARD: "Card",
    PaymentMethod.BANK_TRANSFER: "Bank transfer", PaymentMethod.CHEQUE: "Cheque",
    PaymentMethod.OTHER: "Other",
}
CODE_LABELS = {"G": "G - gotovina (cash)", "K": "K - kartice (cards)",
               "T": "T - transakcijski račun (bank transfer)", "O": "O - ostalo (other)"}
MODE_LABELS = {
    "cash": "Cash", "creditcard": "Credit card", "banktransfer": "Bank transfer",
    "bankremittance": "Bank remittance", "check": "Check",
    "autotransaction": "Auto transaction (online payment)", "others": "Others",
}
BUILT_IN_MODES = tuple(DEFAULT_PAYMENT_MODES)
# Rows for payment modes the business added in Zoho Books: its own, and this many blank.
BLANK_MODE_ROWS = 2
# Every row is two form fields and the CSRF guard parses at most 50.
MAX_OWN_MODES = 15
MAX_MODE_LENGTH = 100


@dataclass(frozen=True)
class ModeRow:
    key: str
    label: str
    method: PaymentMethod
    built_in: PaymentMethod | None  # the built-in table's method, None for the business's own
    code: str  # reported as, by the fiscal settings


@dataclass(frozen=True)
class Reporting:
    """How the integration's fiscal settings turn payment methods into CIS codes."""

    methods: Mapping[PaymentMethod, str]
    mode_codes: Mapping[str, str]
    default_code: str | None  # fixed code for invoices without payments, if set

    @classmethod
    def of(cls, record: IntegrationRecord) -> Reporting:
        try:
            settings = FiscalSettings.model_validate(record.fiscal_settings)
        except ValidationError:
            return cls(dict(DEFAULT_PAYMENT_METHODS), {}, None)
        return cls(dict(settings.payment_methods), dict(settings.payment_mode_codes),
                   settings.default_payment)

    def code(self, mode: str | None, method: PaymentMethod) -> str:
        if mode is not None and mode in self.mode_codes:
            return self.mode_codes[mode]
        return self.methods.get(method, "O")


def _options(record: IntegrationRecord) -> tuple[MappingOptions, str | None]:
    """The stored options, or the defaults and why the stored ones cannot be used."""
    try:
        return MappingOptions.from_stored(record.zoho_read_options), None
    except ValueError as error:
        return MappingOptions(), str(error)


def form_values(options: MappingOptions) -> dict[str, str]:
    """The form's fields as the options fill them."""
    values = {
        "buyer_tax_field": options.buyer_tax_field or "",
        "default_payment_method": options.default_payment_method.value,
        "base_currency": options.base_currency,
    }
    for mode in BUILT_IN_MODES:
        values[f"mode.{mode}"] = options.payment_modes.get(
            mode, DEFAULT_PAYMENT_MODES[mode]).value
    own = [(m, v) for m, v in options.payment_modes.items() if m not in DEFAULT_PAYMENT_MODES]
    for i, (mode, method) in enumerate(sorted(own)):
        values[f"own_mode.{i}"] = mode
        values[f"own_method.{i}"] = method.value
    return values


def own_rows(values: Mapping[str, str]) -> list[str]:
    """The indices of the form's rows for the business's own modes: filled, then blank."""
    filled = sorted({name.partition(".")[2] for name in values
                     if name.startswith(("own_mode.", "own_method."))},
                    key=lambda i: (len(i), i))
    start = max((int(i) for i in filled if i.isdigit()), default=-1) + 1
    blank = [str(start + n) for n in range(BLANK_MODE_ROWS)]
    return (filled + blank)[:max(MAX_OWN_MODES, len(filled))]


def _method(value: str) -> PaymentMethod | None:
    try:
        return PaymentMethod(value)
    except ValueError:
        return None


def check(form: Mapping[str, str]) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """The options JSON the form asks for (validated by MappingOptions, as the CLI's) and
    the problems, by field name ("" for the whole form)."""
    problems: dict[str, str] = {}
    methods = ", ".join(METHOD_LABELS.values())

    buyer = form.get("buyer_tax_field", "").strip() or None
    try:
        MappingOptions(buyer_tax_field=buyer)
    except ValueError as error:
        problems["buyer_tax_field"] = f"Buyer's OIB field: {error}"

    currency = form.get("base_currency", "").strip().upper()
    try:
        MappingOptions(base_currency=currency)
    except ValueError as error:
        problems["base_currency"] = f"Base currency: {error}"

    default = _method(form.get("default_payment_method", ""))
    if default is None:
        problems["default_payment_method"] = (
            f"Invoices without payments: choose one of {methods}")

    modes: dict[str, str] = {}
    for mode in BUILT_IN_MODES:
        name = f"mode.{mode}"
        method = _method(form.get(name, DEFAULT_PAYMENT_MODES[mode].value))
        if method is None:
            problems[name] = f"Zoho payment mode {MODE_LABELS[mode]}: choose one of {methods}"
        elif method is not DEFAULT_PAYMENT_MODES[mode]:
            modes[mode] = method.value
    indices = sorted({name.partition(".")[2] for name in form
                      if name.startswith(("own_mode.", "own_method."))})
    own = 0
    for index in indices:
        name, method_name = f"own_mode.{index}", f"own_method.{index}"
        raw = form.get(name, "").strip()
        chosen = form.get(method_name, "")
        if not raw:
            if chosen:
                problems[name] = ("A payment mode of your own: type its name as Zoho Books shows"
                                  " it, or choose \u201cremove\u201d")
            continue
        key = payment_mode_key(raw)
        method = _method(chosen)
        if len(raw) > MAX_MODE_LENGTH:
            problems[name] = f"Payment mode {raw[:40]!r}…: at most {MAX_MODE_LENGTH} characters"
        elif method is None:
            problems[name] = f"Payment mode {raw!r}: choose one of {methods}"
        elif key in DEFAULT_PAYMENT_MODES or key in modes:
            problems[name] = (f"Payment mode {raw!r} is already in the table above; each Zoho"
                              " payment mode has one method")
        else:
            own += 1
            modes[key] = method.value
    if own > MAX_OWN_MODES:
        problems[""] = (f"At most {MAX_OWN_MODES} payment modes of your own can be set here;"
                        " an operator can set more with the CLI")
    if problems:
        return None, problems

    stored: dict[str, Any] = {"buyer_tax_field": buyer, "base_currency": currency,
                              "default_payment_method": default.value if default else None,
                              "payment_modes": modes}
    try:
        options = MappingOptions.from_stored(stored)
    except ValueError as error:  # what the field checks above did not catch
        return None, {"": str(error)}
    return options.stored(), {}


def _page(
    request: Request, record: IntegrationRecord, values: Mapping[str, str],
    problems: Mapping[str, str] | None = None, status: int = 200,
) -> Response:
    reporting = Reporting.of(record)
    options, stored_invalid = _options(record)
    shown = options.payment_modes
    rows = [
        ModeRow(mode, MODE_LABELS[mode], shown.get(mode, DEFAULT_PAYMENT_MODES[mode]),
                DEFAULT_PAYMENT_MODES[mode],
                reporting.code(mode, shown.get(mode, DEFAULT_PAYMENT_MODES[mode])))
        for mode in BUILT_IN_MODES
    ] + [
        ModeRow(mode, mode, method, None, reporting.code(mode, method))
        for mode, method in sorted(shown.items()) if mode not in DEFAULT_PAYMENT_MODES
    ]
    return render(
        request, "read_options.html", status, record=record, values=values,
        problems=problems or {}, options=options, rows=rows, reporting=reporting,
        unusable=stored_invalid, methods=METHOD_LABELS, codes=CODE_LABELS,
        built_in=BUILT_IN_MODES, mode_labels=MODE_LABELS, own_rows=own_rows(values),
        default_code=reporting.default_code
        or reporting.methods.get(options.default_payment_method, "O"),
        editable=record.status is not IntegrationStatus.REMOVED,
    )


@router.get("/integrations/{uid}/read-options")
async def read_options_page(request: Request, uid: str) -> Response:
    record = await portal_of(request).owned_integration(request, uid)
    options, _ = _options(record)
    return _page(request, record, form_values(options))


@router.post("/integrations/{uid}/read-options")
async def save_read_options(request: Request, uid: str) -> Response:
    portal = portal_of(request)
    record = await portal.owned_integration(request, uid)
    current = form_values(_options(record)[0])
    if record.status is IntegrationStatus.REMOVED:
        return _page(request, record, current,
                     {"": "A removed integration reads no invoices; nothing was changed."}, 409)
    form = {k: str(v) for k, v in (await request.form()).items() if k != "csrf_token"}
    stored, problems = check(form)
    if stored is None:
        return _page(request, record, form, problems, 400)
    await portal.store.integrations.set_zoho_read_options(uid, stored)
    await announce(
        portal,
        IntegrationEvent(integration_uid=uid, kind=IntegrationEventKind.SETTINGS_CHANGED,
                         reason="read options set by the owner in the portal",
                         details={"zoho_read_options": stored}),
        failure="The read options were saved and apply from the next poll; invoices that "
                "waited for them are read again once they are saved again: save them again "
                "in a minute.",
    )
    log.info("read options set", extra={"integration_uid": uid, "options": sorted(stored)})
    session_of(request).flash(
        "Read options saved. The next poll reads invoices with them, and webhooks within"
        " half a minute; invoices already read keep what they were read with."
    )
    return RedirectResponse(f"/integrations/{uid}/read-options", status_code=303)
