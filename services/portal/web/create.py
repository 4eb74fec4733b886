"""Create Integration: choose the type (cards), upload the certificate, fill in the
settings, then the accounting system's consent (Zoho Books: OAuth).

1. /integrations/new: one card per integration type; Zoho Books → Croatia's CIS today,
   the others are shown as coming.
2. /integrations/new/zoho-books: the certificate alone (PFX and its password). A
   certificate that does not open, is expired, or is refused is answered here, before
   any setting is typed.
3. The settings form (name, OIB prefilled from the certificate, premises, device...),
   carrying the accepted certificate as a vault-sealed field bound to this session and
   account, valid for CERTIFICATE_TTL: the browser never holds the PFX or its password
   in clear, and nothing is stored until the settings are accepted too.
4. POST /integrations checks both together (the OIB must be the certificate's), stores
   the integration as pending and sends the browser to Zoho.

POST /integrations also takes the PFX and password in the same form as the settings
(`pfx`, `password`): one request for scripts; the same checks apply.
"""

from __future__ import annotations

import asyncio
import base64
import json
from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import UploadFile

from fiscal.hr_cis.certificate import CertificateError, WrongPassword, load_certificate
from runtime.store import InvalidInput
from runtime.store.integrations import INTEGRATION_NAME_LENGTH, check_name
from runtime.vault import VaultError
from schemas.events import IntegrationEvent, IntegrationEventKind
from services.portal.web import integrations
from services.portal.web.context import (
    PageError,
    Portal,
    announce,
    log,
    portal_of,
    render,
    signed_in,
)
from services.portal.web.sessions import session_of
from services.portal.web.trust import TrustedCAs, UntrustedIssuer
from services.portal.web.upload import UploadRefused, check_upload
from services.portal.web.zoho_connect import start_flow

router = APIRouter()

ZOHO_PATH = "/integrations/new/zoho-books"
CERTIFICATE_TTL = 3600  # seconds a checked certificate waits for its settings
CERTIFICATE_FIELDS = ("pfx", "password")

# The cards of step 1: what can be connected, and what is on its way.
CARDS: tuple[dict[str, Any], ...] = (
    {"id": "zoho-books", "source": "Zoho Books", "authority": "Croatia · CIS",
     "text": "Invoices and credit notes from Zoho Books, fiscalized with your FINA "
             "certificate as they are issued.", "href": ZOHO_PATH},
    {"id": "quickbooks", "source": "QuickBooks Online", "authority": "Croatia · CIS",
     "text": "Invoices from QuickBooks Online.", "href": None},
    {"id": "xero", "source": "Xero", "authority": "Croatia · CIS",
     "text": "Invoices from Xero.", "href": None},
    {"id": "efi", "source": "Zoho Books", "authority": "Montenegro · EFI",
     "text": "Fiscalization with Montenegro's tax administration.", "href": None},
    {"id": "taxcore", "source": "Zoho Books", "authority": "Fiji, Samoa · TaxCore",
     "text": "V-SDC fiscalization for TaxCore countries.", "href": None},
)


def _context(request: Request, account_id: str) -> str:
    return f"portal.create.certificate|{session_of(request).sid}|{account_id}"


def _seal(portal: Portal, context: str, pfx: bytes, password: str) -> str:
    if portal.store.vault is None:
        raise RuntimeError("the portal needs the store's vault (FISCOBRIDGE_MASTER_KEY)")
    plain = json.dumps({"pfx": base64.b64encode(pfx).decode("ascii"), "password": password,
                        "iat": int(portal.clock())}).encode()
    return base64.urlsafe_b64encode(portal.store.vault.encrypt(plain, context)).decode("ascii")


def _unseal(portal: Portal, context: str, sealed: str) -> tuple[bytes, str] | None:
    """The certificate of step 2, or None when the field is not one this session and
    account sealed, or it is older than CERTIFICATE_TTL."""
    if portal.store.vault is None or not sealed:
        return None
    try:
        data = json.loads(portal.store.vault.decrypt(base64.urlsafe_b64decode(sealed), context))
    except (VaultError, ValueError):
        return None
    if portal.clock() - int(data.get("iat", 0)) > CERTIFICATE_TTL:
        return None
    return base64.b64decode(data["pfx"]), str(data["password"])


def _no_zoho(portal: Portal) -> None:
    if portal.oauth is None:
        raise PageError(503, "Zoho Books connection unavailable",
                        "This portal has no Zoho OAuth client configured, so a new integration "
                        "could not be connected. Nothing was created; ask the operator.")


def _sentence(text: str) -> str:
    """A checker's reason as a sentence on the page: capital first, full stop last."""
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def _sentences(problems: dict[str, str] | None) -> dict[str, str]:
    return {field: _sentence(text) for field, text in (problems or {}).items()}


def _certificate_page(
    request: Request, status: int = 200, problems: dict[str, str] | None = None
) -> Response:
    return render(request, "new_integration_certificate.html", status,
                  problems=_sentences(problems),
                  zoho_configured=portal_of(request).oauth is not None)


def _settings_page(
    request: Request, sealed: str, facts: dict[str, str], status: int = 200,
    values: dict[str, Any] | None = None, problems: dict[str, str] | None = None,
) -> Response:
    defaults = {**dict.fromkeys(integrations.SETTINGS_FIELDS, ""), "sequence_mark": "P",
                "in_vat_system": True, "name": "", "oib": facts.get("oib", "")}
    return render(request, "new_integration_settings.html", status, sealed=sealed,
                  facts=facts, values={**defaults, **(values or {})},
                  problems=_sentences(problems),
                  name_length=INTEGRATION_NAME_LENGTH)


def _facts(pfx: bytes, password: str, trusted: TrustedCAs | None) -> dict[str, str]:
    """What the settings step shows of a certificate; CertificateError or UntrustedIssuer
    when it is refused (the same checks as check_upload's, without the OIB)."""
    certificate = load_certificate(pfx, password)
    if trusted is not None:
        trusted.check(certificate.certificate, certificate.chain, None)
    return {"subject": certificate.subject, "issuer": certificate.issuer,
            "oib": certificate.oib, "not_after": certificate.not_after.strftime("%Y-%m-%d")}


@router.get("/integrations/new")
async def choose_type(request: Request) -> Response:
    account_id = signed_in(request)
    await integrations._tier_with_room(portal_of(request), account_id)
    return render(request, "new_integration.html", cards=CARDS)


@router.get(ZOHO_PATH)
async def certificate_step(request: Request) -> Response:
    account_id = signed_in(request)
    await integrations._tier_with_room(portal_of(request), account_id)
    return _certificate_page(request)


async def _read_certificate(form: Any) -> tuple[bytes, str]:
    upload = form.get("pfx")
    pfx = await upload.read() if isinstance(upload, UploadFile) else b""
    return pfx, str(form.get("password") or "")


@router.post(ZOHO_PATH)
async def upload_certificate(request: Request) -> Response:
    account_id = signed_in(request)
    portal = portal_of(request)
    _no_zoho(portal)
    await integrations._tier_with_room(portal, account_id)
    pfx, password = await _read_certificate(await request.form())
    if not pfx:
        return _certificate_page(request, 400, {"pfx": "Choose the certificate file (.pfx or "
                                                "p12) FINA issued to your business."})
    try:
        # Opening a PKCS#12 costs tens of milliseconds of CPU: keep it off the event loop.
        facts = await asyncio.to_thread(_facts, pfx, password, portal.trusted_cas)
    except (CertificateError, UntrustedIssuer) as error:
        field = "password" if isinstance(error, WrongPassword) else "pfx"
        log.info("certificate upload refused", extra={"reason": error.code})
        return _certificate_page(request, 400, {field: str(error)})
    sealed = _seal(portal, _context(request, account_id), pfx, password)
    return _settings_page(request, sealed, facts)


@router.post("/integrations")
async def create_integration(request: Request) -> Response:
    account_id = signed_in(request)
    portal = portal_of(request)
    _no_zoho(portal)
    tier = await integrations._tier_with_room(portal, account_id)
    form = await request.form()
    values: dict[str, Any] = {
        name: str(form.get(name) or "").strip() for name in integrations.SETTINGS_FIELDS}
    values["in_vat_system"] = form.get("in_vat_system") == "on"
    values["name"] = str(form.get("name") or "").strip()
    sealed = str(form.get("certificate") or "")
    if sealed:
        opened = _unseal(portal, _context(request, account_id), sealed)
        if opened is None:
            return _certificate_page(request, 400, {"pfx": (
                "The certificate of this form has expired (it waits an hour) or belongs to "
                "another session. Upload it again; nothing was created.")})
        pfx, password = opened
    else:
        pfx, password = await _read_certificate(form)
    problems: dict[str, str] = {}
    name = None
    try:
        name = check_name(values["name"])
    except InvalidInput as refused:
        problems["name"] = f"{str(refused)[0].upper()}{str(refused)[1:]}."
    try:
        # Opening a PKCS#12 costs tens of milliseconds of CPU: keep it off the event loop.
        settings, certificate = await asyncio.to_thread(
            partial(check_upload, trusted=portal.trusted_cas),
            {k: v for k, v in values.items() if k != "name"}, pfx, password)
    except UploadRefused as refused:
        log.info("integration settings refused", extra={"reason": refused.code})
        if refused.code == "oib_mismatch":
            # The certificate is fine; the OIB typed in the settings is not its OIB.
            problems["oib"] = refused.problems.get("pfx", str(refused))
        elif set(refused.problems) & set(CERTIFICATE_FIELDS):
            return _certificate_page(request, 400, refused.problems)
        else:
            problems.update(refused.problems)
    if problems:
        facts = await asyncio.to_thread(_facts, pfx, password, portal.trusted_cas)
        sealed = sealed or _seal(portal, _context(request, account_id), pfx, password)
        return _settings_page(request, sealed, facts, 400, values, problems)
    created = await portal.store.integrations.create(
        account_id=account_id, fiscal_settings=settings, pfx=pfx, password=password,
        certificate=certificate, tier=tier, name=name,
    )
    uid = created.record.uid
    log.info("integration created", extra={"integration_uid": uid})
    await announce(
        portal,
        IntegrationEvent(integration_uid=uid, kind=IntegrationEventKind.CREATED,
                         tier=created.record.tier, reason="created by the owner in the portal",
                         details={"type": created.record.type}),
        failure=f"Integration {uid} was saved (pending) but the change could not be "
        "published. Open it from the Integrations page and connect it to Zoho Books later.",
    )
    return start_flow(request, portal, uid)


@router.post("/integrations/{uid}/name")
async def rename(request: Request, uid: str) -> Response:
    portal = portal_of(request)
    await portal.owned_integration(request, uid)
    form = await request.form()
    try:
        name = await portal.store.integrations.rename(uid, str(form.get("name") or ""))
    except InvalidInput as refused:
        raise PageError(400, "Name not changed", f"The name was not changed: {refused}.",
                        next_url=f"/integrations/{uid}",
                        next_label="Back to the integration") from None
    log.info("integration renamed", extra={"integration_uid": uid})
    session_of(request).flash(f"Integration {uid} is now called \u201c{name}\u201d."
                              if name else f"Integration {uid} has no name now.")
    return RedirectResponse(f"/integrations/{uid}", status_code=303)

