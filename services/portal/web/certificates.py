"""Replace certificate, and the webhook secret: rotate (the old one accepted for a grace
period) and reveal (the password again)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from functools import partial

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import UploadFile

from runtime.store import IntegrationRecord, IntegrationStatus
from schemas.events import IntegrationEvent, IntegrationEventKind
from services.portal.web.context import PageError, Portal, announce, log, portal_of, render
from services.portal.web.integrations import START_ZONE, render_integration
from services.portal.web.sessions import session_of
from services.portal.web.upload import UploadRefused, check_upload

router = APIRouter()


def _back(uid: str) -> dict[str, str]:
    return {"next_url": f"/integrations/{uid}", "next_label": "Back to the integration"}


def _live(record: IntegrationRecord, what: str) -> None:
    if record.status is IntegrationStatus.REMOVED:
        raise PageError(409, "Integration removed",
                        f"Integration {record.uid} is removed, so its {what} cannot be "
                        "changed. Nothing was changed.", **_back(record.uid))


async def _certificate_page(request: Request, portal: Portal, record: IntegrationRecord,
                            status: int = 200, problems: dict[str, str] | None = None
                            ) -> Response:
    return render(
        request, "certificate.html", status, record=record,
        current=await portal.store.integrations.certificate_info(record.uid),
        history=await portal.store.integrations.certificate_history(record.uid),
        problems=problems or {}, zone=START_ZONE,
        trusted=portal.trusted_cas.names if portal.trusted_cas else None,
    )


@router.get("/integrations/{uid}/certificate")
async def certificate_page(request: Request, uid: str) -> Response:
    portal = portal_of(request)
    record = await portal.owned_integration(request, uid)
    return await _certificate_page(request, portal, record)


@router.post("/integrations/{uid}/certificate")
async def replace_certificate(request: Request, uid: str) -> Response:
    """The same checks as at Create Integration (password, validity, the integration's
    OIB, the environment's fiscal CAs); the old certificate stays in the history."""
    portal = portal_of(request)
    record = await portal.owned_integration(request, uid)
    _live(record, "certificate")
    form = await request.form()
    password = str(form.get("password") or "")
    upload = form.get("pfx")
    pfx = await upload.read() if isinstance(upload, UploadFile) else b""
    try:
        _, certificate = await asyncio.to_thread(
            partial(check_upload, trusted=portal.trusted_cas), record.fiscal_settings, pfx,
            password)
    except UploadRefused as refused:
        log.info("certificate replacement refused",
                 extra={"integration_uid": uid, "reason": refused.code})
        return await _certificate_page(request, portal, record, 400, refused.problems)
    info = await portal.store.integrations.replace_certificate(
        uid, pfx=pfx, password=password, certificate=certificate)
    await announce(
        portal,
        IntegrationEvent(integration_uid=uid, kind=IntegrationEventKind.CERTIFICATE_REPLACED,
                         reason="certificate replaced by the owner in the portal",
                         details={"fingerprint_sha256": info.fingerprint_sha256,
                                  "not_after": info.not_after.isoformat()}),
        failure="The new certificate was saved; the services pick it up within a minute.",
    )
    log.info("certificate replaced", extra={"integration_uid": uid})
    session_of(request).flash(
        f"The certificate was replaced: {info.subject}, valid until "
        f"{info.not_after.astimezone(START_ZONE):%Y-%m-%d}. Invoices are signed with it from "
        "now on.")
    return RedirectResponse(f"/integrations/{uid}", status_code=303)


@router.post("/integrations/{uid}/webhook-secret/rotate")
async def rotate_secret(request: Request, uid: str) -> Response:
    portal = portal_of(request)
    record = await portal.owned_integration(request, uid)
    _live(record, "webhook secret")
    form = await request.form()
    if form.get("confirm") != "on":
        raise PageError(400, "Please confirm",
                        "Tick the confirmation that you will paste the new secret into the "
                        "Zoho Books webhook. Nothing was changed.", **_back(uid))
    grace = timedelta(hours=portal.settings.webhook_secret_grace_hours)
    now = datetime.now(UTC)
    await portal.store.integrations.rotate_webhook_secret(uid, grace=grace, now=now)
    log.info("webhook secret rotated", extra={"integration_uid": uid})
    until = (now + grace).astimezone(START_ZONE)
    session_of(request).flash(
        "A new webhook secret was made; it is shown once below. Paste it into the Zoho "
        f"Books webhook now: the old secret keeps working until {until:%Y-%m-%d %H:%M} "
        "(Croatian time).")
    return RedirectResponse(f"/integrations/{uid}#webhook-setup", status_code=303)


@router.post("/integrations/{uid}/webhook-secret/reveal")
async def reveal_secret(request: Request, uid: str) -> Response:
    portal = portal_of(request)
    record = await portal.owned_integration(request, uid)
    form = await request.form()
    email = session_of(request).email or ""
    password = str(form.get("password") or "")
    account = await portal.store.accounts.authenticate(email, password) if password else None
    if account is None or account.account_id != record.account_id:
        log.info("webhook secret reveal refused", extra={"integration_uid": uid})
        return await render_integration(
            request, portal, record, status=403,
            reveal_error="That password is not correct; the secret was not shown.")
    log.info("webhook secret revealed", extra={"integration_uid": uid})
    return await render_integration(request, portal, record, reveal=True)
