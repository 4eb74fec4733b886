"""`/_sandbox/...`: set the sandbox's world up and look inside it (tests, demo, benchmarks)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from sandbox.zoho import books as zb
from sandbox.zoho.state import (
    PLAN_DAILY_CAPS,
    BooksState,
    Limits,
    Organization,
    SandboxError,
    WebhookConfig,
)
from sandbox.zoho.webhooks import WebhookSender

router = APIRouter(prefix="/_sandbox")


def _books(request: Request) -> BooksState:
    books: BooksState = request.app.state.books
    return books


def _sender(request: Request) -> WebhookSender:
    sender: WebhookSender = request.app.state.webhooks
    return sender


def _org(request: Request, organization_id: str) -> Organization:
    return _books(request).organization(organization_id)


class ClientIn(BaseModel):
    redirect_uris: list[str]
    client_id: str | None = None
    client_secret: str | None = None


class UserIn(BaseModel):
    email: str
    password: str
    dc: str = "com"


class LimitsIn(BaseModel):
    per_minute: int | None = Field(default=None, ge=1)
    window_seconds: float | None = Field(default=None, gt=0)
    daily: int | None = Field(default=None, ge=0)
    max_in_flight: int | None = Field(default=None, ge=1)
    latency_seconds: float | None = Field(default=None, ge=0)


class OrganizationIn(BaseModel):
    name: str
    users: list[str]
    time_zone: str = "Europe/Zagreb"
    currency_code: str = "EUR"
    limits: LimitsIn | None = None
    # The Zoho plan sets the daily call cap (limits.daily overrides it).
    plan: str = Field(default="premium", pattern="^(free|standard|professional|premium)$")
    inclusive_tax: bool = False
    inclusive_totals: str = Field(default="gross", pattern="^(gross|net)$")


class CustomFieldIn(BaseModel):
    api_name: str = Field(pattern=r"^cf_[a-z0-9_]+$")
    label: str
    entity: str = Field(default="invoice", pattern=r"^(invoice|creditnote)$")


class ContactIn(BaseModel):
    """A customer as the business entered it; unset tax numbers are Zoho's ""."""

    contact_name: str
    company_name: str = ""
    tax_reg_no: str = ""
    vat_reg_no: str = ""
    gst_no: str = ""
    country_code: str = ""
    custom_fields: dict[str, str] = Field(default_factory=dict)  # api_name (cf_...) -> value


class WebhookIn(BaseModel):
    url: str
    secret: str = Field(pattern=r"^[A-Za-z0-9]{12,50}$")
    duplicate_probability: float = Field(default=0.0, ge=0, le=1)
    drop_probability: float = Field(default=0.0, ge=0, le=1)
    max_attempts: int = Field(default=4, ge=1)
    retry_base_seconds: float = Field(default=0.5, ge=0)
    signature_encoding: str = Field(default="hex", pattern="^(hex|base64)$")


class SettingsIn(BaseModel):
    access_token_ttl: int | None = Field(default=None, ge=1)
    code_ttl: int | None = Field(default=None, ge=1)
    max_refresh_tokens: int | None = Field(default=None, ge=1)
    max_access_tokens_per_window: int | None = Field(default=None, ge=1)
    access_token_window: int | None = Field(default=None, ge=1)


class RevokeIn(BaseModel):
    client_id: str | None = None


class ClockIn(BaseModel):
    advance_seconds: float


def _error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _organization_out(org: Organization) -> dict[str, Any]:
    return {
        "organization_id": org.organization_id,
        "name": org.name,
        "dc": org.dc,
        "time_zone": org.time_zone,
        "currency_code": org.currency_code,
        "limits": vars(org.limits),
        "plan": org.plan,
        "inclusive_tax": org.inclusive_tax,
        "inclusive_totals": org.inclusive_totals,
        "taxes": [
            {"tax_id": t.tax_id, "tax_name": t.name, "tax_percentage": str(t.percentage)}
            for t in org.taxes.values()
        ],
        "invoice_custom_fields": org.invoice_custom_fields,
    }


@router.post("/clients")
async def add_client(request: Request, body: ClientIn) -> Response:
    try:
        client = _books(request).add_client(body.redirect_uris, body.client_id, body.client_secret)
    except SandboxError as error:
        return _error(str(error))
    return JSONResponse(vars(client), status_code=201)


@router.post("/users")
async def add_user(request: Request, body: UserIn) -> Response:
    try:
        user = _books(request).add_user(body.email, body.password, body.dc)
    except SandboxError as error:
        return _error(str(error))
    return JSONResponse({"user_id": user.user_id, "email": user.email, "dc": user.dc}, 201)


@router.post("/users/{email}/revoke")
async def revoke_user(request: Request, email: str, body: RevokeIn | None = None) -> Response:
    books = _books(request)
    user = books.user_by_email(email)
    if user is None:
        return _error(f"no user {email}", 404)
    revoked = books.revoke_user(user, body.client_id if body else None)
    return JSONResponse({"revoked": revoked})


@router.post("/tokens/expire")
async def expire_tokens(request: Request, email: str | None = None) -> Response:
    books = _books(request)
    user = books.user_by_email(email) if email else None
    if email and user is None:
        return _error(f"no user {email}", 404)
    return JSONResponse({"expired": books.expire_access_tokens(user)})


@router.post("/orgs")
async def add_organization(request: Request, body: OrganizationIn) -> Response:
    given = body.limits.model_dump(exclude_none=True) if body.limits else {}
    limits = Limits(**{"daily": PLAN_DAILY_CAPS[body.plan], **given})
    try:
        org = _books(request).add_organization(
            body.name, body.users, body.time_zone, body.currency_code, limits
        )
    except SandboxError as error:
        return _error(str(error))
    org.plan = body.plan
    org.inclusive_tax = body.inclusive_tax
    org.inclusive_totals = body.inclusive_totals
    return JSONResponse(_organization_out(org), status_code=201)


@router.post("/orgs/{organization_id}/customfields")
async def add_custom_field(request: Request, organization_id: str, body: CustomFieldIn) -> Response:
    """An invoice (or credit note) custom field the business created (what write-back is
    mapped onto)."""
    try:
        org = _org(request, organization_id)
    except SandboxError as error:
        return _error(str(error), 404)
    if any(f["api_name"] == body.api_name for f in org.custom_fields_of(body.entity)):
        return _error(f"{body.entity} custom field {body.api_name} exists")
    return JSONResponse(org.add_invoice_custom_field(body.api_name, body.label, body.entity),
                        status_code=201)


@router.put("/orgs/{organization_id}/contacts/{contact_id}")
async def put_contact(
    request: Request, organization_id: str, contact_id: str, body: ContactIn
) -> Response:
    """Create or replace a customer (what `GET /books/v3/contacts/{id}` answers)."""
    try:
        org = _org(request, organization_id)
    except SandboxError as error:
        return _error(str(error), 404)
    if not contact_id.isdigit():
        return _error("contact ids are numeric strings")
    bad = [name for name in body.custom_fields if not name.startswith("cf_")]
    if bad:
        return _error(f"custom field api_names start with cf_: {', '.join(bad)}")
    previous = org.contacts.get(contact_id)
    now = _books(request).clock.now()
    org.contacts[contact_id] = {
        **body.model_dump(),
        "contact_id": contact_id,
        "created_at": previous["created_at"] if previous else now,
    }
    return JSONResponse({"contact_id": contact_id}, status_code=200 if previous else 201)


@router.delete("/orgs/{organization_id}/contacts/{contact_id}")
async def delete_contact(request: Request, organization_id: str, contact_id: str) -> Response:
    try:
        org = _org(request, organization_id)
    except SandboxError as error:
        return _error(str(error), 404)
    if org.contacts.pop(contact_id, None) is None:
        return _error(f"no contact {contact_id}", 404)
    return JSONResponse({"deleted": contact_id})


@router.put("/orgs/{organization_id}/limits")
async def set_limits(request: Request, organization_id: str, body: LimitsIn) -> Response:
    try:
        org = _org(request, organization_id)
    except SandboxError as error:
        return _error(str(error), 404)
    for key, value in body.model_dump(exclude_none=True).items():
        setattr(org.limits, key, value)
    return JSONResponse(_organization_out(org))


@router.post("/orgs/{organization_id}/limits/reset")
async def reset_usage(request: Request, organization_id: str) -> Response:
    """Forget the calls made so far (window and day), e.g. between benchmark runs."""
    try:
        org = _org(request, organization_id)
    except SandboxError as error:
        return _error(str(error), 404)
    org.accepted.clear()
    org.day, org.day_calls = None, 0
    return JSONResponse(_organization_out(org))


@router.put("/orgs/{organization_id}/webhook")
async def set_webhook(request: Request, organization_id: str, body: WebhookIn) -> Response:
    try:
        org = _org(request, organization_id)
    except SandboxError as error:
        return _error(str(error), 404)
    org.webhook = WebhookConfig(**body.model_dump())
    return JSONResponse({"organization_id": organization_id, "url": body.url})


@router.delete("/orgs/{organization_id}/webhook")
async def remove_webhook(request: Request, organization_id: str) -> Response:
    try:
        _org(request, organization_id).webhook = None
    except SandboxError as error:
        return _error(str(error), 404)
    return Response(status_code=204)


@router.post("/orgs/{organization_id}/invoices")
async def create_invoices(request: Request, organization_id: str) -> Response:
    """One invoice object, or {"invoices": [...]} to create many in one call."""
    books, sender = _books(request), _sender(request)
    try:
        org = _org(request, organization_id)
    except SandboxError as error:
        return _error(str(error), 404)
    payload = await request.json()
    many = isinstance(payload, dict) and isinstance(payload.get("invoices"), list)
    specs = payload["invoices"] if many else [payload]
    try:
        for spec in specs:
            if not isinstance(spec, dict):
                raise SandboxError("each invoice must be an object")
            zb.validate(org, spec)
    except SandboxError as error:
        return _error(str(error))
    created = []
    for spec in specs:
        stored = books.create_invoice(org, dict(spec))
        document = zb.render(org, stored)
        sender.notify(org, document)
        created.append(document)
    if many:
        summary = [
            {k: d[k] for k in ("invoice_id", "invoice_number", "last_modified_time")}
            for d in created
        ]
        return Response(zb.dumps({"invoices": summary}), 201, media_type="application/json")
    return Response(zb.dumps({"invoice": created[0]}), 201, media_type="application/json")


@router.patch("/orgs/{organization_id}/invoices/{invoice_id}")
async def edit_invoice(request: Request, organization_id: str, invoice_id: str) -> Response:
    books, sender = _books(request), _sender(request)
    try:
        org = _org(request, organization_id)
        changes = await request.json()
        if not isinstance(changes, dict):
            raise SandboxError("changes must be an object")
        current = org.invoices.get(invoice_id)
        if current is None:
            return _error(f"no invoice {invoice_id}", 404)
        zb.validate(org, {**current.fields, **changes})
        stored = books.edit_invoice(org, invoice_id, dict(changes))
    except SandboxError as error:
        return _error(str(error))
    document = zb.render(org, stored)
    sender.notify(org, document)
    return Response(zb.dumps({"invoice": document}), media_type="application/json")


@router.get("/orgs/{organization_id}/invoices/{invoice_id}")
async def show_invoice(request: Request, organization_id: str, invoice_id: str) -> Response:
    """The invoice as the API shows it, plus what was written back to it (fields, comments)."""
    try:
        org = _org(request, organization_id)
    except SandboxError as error:
        return _error(str(error), 404)
    stored = org.invoices.get(invoice_id)
    if stored is None:
        return _error(f"no invoice {invoice_id}", 404)
    names = {f["customfield_id"]: f["api_name"] for f in org.custom_fields_of("invoice")}
    body = {
        "invoice": zb.render(org, stored),
        "written_back": {names.get(k, k): v for k, v in stored.custom_values.items()},
        "comments": stored.comments,
    }
    return Response(zb.dumps(body), media_type="application/json")


@router.get("/orgs/{organization_id}/creditnotes/{creditnote_id}")
async def show_credit_note(request: Request, organization_id: str, creditnote_id: str) -> Response:
    """The credit note as the API shows it, plus what was written back to it (fields)."""
    try:
        org = _org(request, organization_id)
    except SandboxError as error:
        return _error(str(error), 404)
    stored = org.credit_notes.get(creditnote_id)
    if stored is None:
        return _error(f"no credit note {creditnote_id}", 404)
    names = {f["customfield_id"]: f["api_name"] for f in org.custom_fields_of("creditnote")}
    body = {
        "creditnote": zb.render(org, stored, "creditnote"),
        "written_back": {names.get(k, k): v for k, v in stored.custom_values.items()},
    }
    return Response(zb.dumps(body), media_type="application/json")


@router.post("/orgs/{organization_id}/creditnotes")
async def create_credit_note(request: Request, organization_id: str) -> Response:
    """A credit note: like an invoice, plus invoices_credited [{invoice_id, amount}]."""
    books, sender = _books(request), _sender(request)
    try:
        org = _org(request, organization_id)
    except SandboxError as error:
        return _error(str(error), 404)
    spec = await request.json()
    try:
        if not isinstance(spec, dict):
            raise SandboxError("a credit note must be an object")
        zb.validate(org, spec, "creditnote")
        stored = books.create_credit_note(org, dict(spec))
    except SandboxError as error:
        return _error(str(error))
    document = zb.render(org, stored, "creditnote")
    sender.notify(org, document, "creditnote")
    return Response(zb.dumps({"creditnote": document}), 201, media_type="application/json")


@router.patch("/orgs/{organization_id}/creditnotes/{creditnote_id}")
async def edit_credit_note(request: Request, organization_id: str, creditnote_id: str) -> Response:
    books, sender = _books(request), _sender(request)
    try:
        org = _org(request, organization_id)
        changes = await request.json()
        if not isinstance(changes, dict):
            raise SandboxError("changes must be an object")
        current = org.credit_notes.get(creditnote_id)
        if current is None:
            return _error(f"no credit note {creditnote_id}", 404)
        zb.validate(org, {**current.fields, **changes}, "creditnote")
        stored = books.edit_invoice(org, creditnote_id, dict(changes), note=True)
    except SandboxError as error:
        return _error(str(error))
    document = zb.render(org, stored, "creditnote")
    sender.notify(org, document, "creditnote")
    return Response(zb.dumps({"creditnote": document}), media_type="application/json")


@router.delete("/orgs/{organization_id}/invoices/{invoice_id}")
async def delete_invoice(request: Request, organization_id: str, invoice_id: str) -> Response:
    try:
        org = _org(request, organization_id)
    except SandboxError as error:
        return _error(str(error), 404)
    if org.invoices.pop(invoice_id, None) is None:
        return _error(f"no invoice {invoice_id}", 404)
    return Response(status_code=204)


@router.put("/settings")
async def set_settings(request: Request, body: SettingsIn) -> Response:
    settings = _books(request).settings
    for key, value in body.model_dump(exclude_none=True).items():
        setattr(settings, key, value)
    return JSONResponse(vars(settings))


@router.post("/clock")
async def advance_clock(request: Request, body: ClockIn) -> Response:
    clock = _books(request).clock
    clock.offset += timedelta(seconds=body.advance_seconds)
    return JSONResponse({"now": clock.now().isoformat()})


@router.get("/counters")
async def counters(request: Request) -> Response:
    return JSONResponse(_books(request).snapshot())


@router.post("/counters/reset")
async def reset_counters(request: Request) -> Response:
    _books(request).counters.clear()
    return Response(status_code=204)


@router.get("/webhooks/deliveries")
async def deliveries(request: Request) -> Response:
    return JSONResponse(_sender(request).log)


@router.post("/webhooks/drain")
async def drain_webhooks(request: Request) -> Response:
    """Answer once every queued delivery has been attempted (retries included)."""
    await _sender(request).drain()
    return JSONResponse({"attempts": len(_sender(request).log)})


@router.get("/health")
async def health(request: Request) -> Response:
    return JSONResponse({"dc": request.app.state.dc.key, "role": request.app.state.role})
