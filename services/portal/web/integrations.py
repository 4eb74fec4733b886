"""The Integrations page, one integration's page (webhook setup, fiscalized invoices) and
Remove. Create Integration is in create.py."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from runtime.licensing import LABELS
from runtime.store import IntegrationRecord, IntegrationStatus, InvalidInput
from schemas.events import IntegrationEvent, IntegrationEventKind
from services.portal.web import grants
from services.portal.web.context import (
    PageError,
    Portal,
    announce,
    log,
    portal_of,
    render,
    signed_in,
)
from services.portal.web.plans import PLANS_PATH, live, tier_of_account
from services.portal.web.sessions import session_of
from services.portal.web.zoho_connect import drop_choice

router = APIRouter()

STATUS_LABELS = {
    IntegrationStatus.ACTIVE: "Active",
    IntegrationStatus.INACTIVE: "Inactive",
    IntegrationStatus.PENDING: "Pending",
    IntegrationStatus.REMOVED: "Removed",
}
TYPE_LABELS = {"zoho_books": "Zoho Books"}
# A chosen start is a day in the tax authority's calendar (CIS: Croatian local time).
START_ZONE = ZoneInfo("Europe/Zagreb")
SETTINGS_FIELDS = ("oib", "premises_code", "device_code", "operator_oib", "sequence_mark")


async def _row(portal: Portal, record: IntegrationRecord) -> dict[str, Any]:
    return {
        "record": record,
        "status": STATUS_LABELS[record.status],
        "type": TYPE_LABELS.get(record.type, record.type),
        "used": await portal.store.usage.count(record.uid),
        "limit": portal.monthly_limit(record.tier),
    }


@router.get("/integrations")
async def integrations_page(request: Request) -> Response:
    account_id = signed_in(request)
    portal = portal_of(request)
    records = await portal.store.integrations.find(account_id=account_id)
    rows = [await _row(portal, record) for record in records]
    return render(request, "integrations.html", rows=rows)


async def _tier_with_room(portal: Portal, account_id: str) -> str:
    """The account's tier, for a new integration; refused when the tier's connections
    are all in use (removed integrations do not count)."""
    existing = await portal.store.integrations.find(account_id=account_id)
    tier = tier_of_account(portal, existing)
    allowed = portal.tiers.connections(tier)
    if allowed is not None and len(live(existing)) >= allowed:
        raise PageError(
            403, "Connection limit reached",
            f"The {LABELS.get(tier, tier)} plan includes {allowed} connection"
            f"{'' if allowed == 1 else 's'} and this account has {len(live(existing))}. "
            "Remove one, or upgrade the plan (see Plans). Nothing was created.",
            next_url=PLANS_PATH, next_label="See the plans",
        )
    return tier


def mask(secret: str) -> str:
    """The secret as shown after its one full showing: enough to tell two apart."""
    return "•" * (len(secret) - 4) + secret[-4:]


async def render_integration(
    request: Request, portal: Portal, record: IntegrationRecord, *, reveal: bool = False,
    status: int = 200, reveal_error: str | None = None,
) -> Response:
    uid = record.uid
    connected = record.status in (IntegrationStatus.ACTIVE, IntegrationStatus.INACTIVE)
    webhook = None
    if connected:
        secrets = await portal.store.integrations.webhook_secrets(uid)
        now = datetime.now(UTC)
        # Shown in full once (the first page after it was made), then only masked unless
        # the owner gives the password again.
        first = not reveal and await portal.store.integrations.claim_webhook_secret_showing(
            uid, now=now)
        in_full = first or reveal
        webhook = {
            "url": portal.settings.webhook_url(uid),
            "secret": secrets.current if in_full else mask(secrets.current),
            "in_full": in_full, "first": first,
            "previous_until": (secrets.previous_until
                               if secrets.previous and secrets.previous_until
                               and secrets.previous_until > now else None),
            "reveal_error": reveal_error,
        }
    return render(
        request, "integration.html", status,
        row=await _row(portal, record),
        certificate=await portal.store.integrations.certificate_info(uid),
        webhook=webhook,
        journal=await portal.store.journal.entries(uid, limit=20),
        awaiting_choice=session_of(request).pending_choice(uid) is not None,
        zone=START_ZONE,
    )


@router.get("/integrations/{uid}")
async def integration_page(request: Request, uid: str) -> Response:
    portal = portal_of(request)
    record = await portal.owned_integration(request, uid)
    return await render_integration(request, portal, record)


@router.post("/integrations/{uid}/start")
async def choose_start(request: Request, uid: str) -> Response:
    """An earlier start: invoices created since that day are fiscalized too."""
    portal = portal_of(request)
    record = await portal.owned_integration(request, uid)
    form = await request.form()
    back = {"next_url": f"/integrations/{uid}", "next_label": "Back to the integration"}
    try:
        day = date.fromisoformat(str(form.get("starts_on") or ""))
    except ValueError:
        raise PageError(400, "Not a date",
                        "Give the first day whose invoices FiscoBridge should fiscalize, as "
                        "YYYY-MM-DD. Nothing was changed.", **back) from None
    if form.get("confirm") != "on":
        raise PageError(400, "Please confirm",
                        "Tick the confirmation that invoices from that day on were not "
                        "fiscalized by another system: FiscoBridge will fiscalize them, and an "
                        "invoice fiscalized twice is reported twice. Nothing was changed.",
                        **back)
    starts_at = datetime.combine(day, time(0, 0), tzinfo=START_ZONE)
    try:
        await portal.store.integrations.choose_start(
            uid, starts_at, now=datetime.now(UTC)
        )
    except InvalidInput as refused:
        raise PageError(400, "Start not changed",
                        f"The start of integration {uid} was not changed: {refused}.",
                        **back) from None
    await announce(
        portal,
        IntegrationEvent(integration_uid=uid, kind=IntegrationEventKind.SETTINGS_CHANGED,
                         reason=f"start moved to {day.isoformat()} by the owner in the portal",
                         details={"starts_at": starts_at.isoformat()}),
        failure="The new start was saved; the services pick it up within a minute.",
    )
    log.info("integration start moved earlier", extra={"integration_uid": uid})
    when = ("from its next check of Zoho" if record.status is IntegrationStatus.ACTIVE
            else "once it is connected")
    session_of(request).flash(
        f"Invoices created since {day.isoformat()} are fiscalized by this integration {when}."
    )
    return RedirectResponse(f"/integrations/{uid}", status_code=303)


@router.get("/integrations/{uid}/remove")
async def remove_page(request: Request, uid: str) -> Response:
    record = await portal_of(request).owned_integration(request, uid)
    if record.status is IntegrationStatus.REMOVED:
        return RedirectResponse(f"/integrations/{uid}", status_code=303)
    return render(request, "remove.html", record=record)


@router.post("/integrations/{uid}/remove")
async def remove(request: Request, uid: str) -> Response:
    portal = portal_of(request)
    record = await portal.owned_integration(request, uid)
    session = session_of(request)
    if record.status is IntegrationStatus.REMOVED:
        return RedirectResponse(f"/integrations/{uid}", status_code=303)
    # Removed first: once the event is durable nothing fiscalizes for this integration,
    # whatever happens to the revocation below.
    await announce(
        portal,
        IntegrationEvent(integration_uid=uid, kind=IntegrationEventKind.REMOVED,
                         reason="removed by the owner in the portal"),
        failure="The integration was not removed; nothing was changed. Try again shortly.",
    )
    tokens = await portal.store.tokens.get(uid)
    revoked = await grants.revoke_quietly(
        portal.oauth, tokens.refresh_token if tokens else None, record.zoho_accounts_server, uid
    )
    await portal.store.tokens.delete(uid)
    choice = session.pending_choice(uid)
    if choice is not None:
        await drop_choice(portal, session, choice)
    log.info("integration removed", extra={"integration_uid": uid, "zoho_revoked": revoked})
    note = "" if revoked or tokens is None else (
        " Zoho could not be reached to revoke FiscoBridge's access; remove FiscoBridge under "
        "Connected Apps in your Zoho account."
    )
    session.flash(f"Integration {uid} was removed; its fiscalized invoices stay on record.{note}")
    return RedirectResponse("/integrations", status_code=303)
