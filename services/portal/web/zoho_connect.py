"""Connecting an integration to Zoho Books: consent, callback, organization choice.

The `state` sent to Zoho is signed, names the integration and the browser session, and
is single use: its nonce lives in the session until the callback consumes it. The
code is exchanged only at the accounts server the redirect names, and only if that is
a known one (ZohoOAuth refuses others before sending the client secret anywhere).

A new connection needs the user to pick the organization (one grant may reach several;
never silently the first). A reconnect keeps the organization the integration already
fiscalizes for, and refuses a grant that does not reach it.
"""

from __future__ import annotations

import binascii
import secrets
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from connectors.zoho.errors import ClientInvalid, OAuthError, TokenInvalid
from connectors.zoho.oauth import DEFAULT_SCOPES, TokenSet, ZohoOAuth, authorization_url
from runtime.store import IntegrationRecord, IntegrationStatus, OrganizationTaken
from runtime.vault import VaultError
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
from services.portal.web.sessions import Session, session_of
from services.portal.web.signing import BadToken, ExpiredToken

router = APIRouter()

CONNECTABLE = (IntegrationStatus.PENDING, IntegrationStatus.INACTIVE)


def _oauth(portal: Portal) -> ZohoOAuth:
    if portal.oauth is None:
        raise PageError(503, "Zoho Books connection unavailable",
                        "This portal has no Zoho OAuth client configured; ask the operator.")
    return portal.oauth


def _back(uid: str) -> dict[str, str]:
    return {"next_url": f"/integrations/{uid}", "next_label": "Back to the integration"}


def start_flow(request: Request, portal: Portal, uid: str) -> RedirectResponse:
    """Send the browser to Zoho's consent page for integration `uid`."""
    _oauth(portal)
    session = session_of(request)
    nonce = secrets.token_urlsafe(16)
    session.start_flow(nonce, uid)
    state = portal.state_signer.sign({"n": nonce, "i": uid, "s": session.sid}, now=portal.clock())
    settings = portal.settings
    url = authorization_url(
        settings.zoho.client_id, settings.redirect_uri, DEFAULT_SCOPES, state,
        settings.zoho.accounts_url,
    )
    log.info("sent to Zoho for consent", extra={"integration_uid": uid})
    return RedirectResponse(url, status_code=303)


def _not_connectable(record: IntegrationRecord) -> PageError:
    if record.status is IntegrationStatus.REMOVED:
        return PageError(409, "Integration removed",
                         f"Integration {record.uid} was removed; removal is final. Create a new "
                         "integration to fiscalize again.", **_back(record.uid))
    return PageError(409, "Already connected",
                     f"Integration {record.uid} is connected to Zoho Books already; nothing "
                     "was changed.", **_back(record.uid))


def _named(record: IntegrationRecord) -> str:
    return f"{record.name} ({record.uid})" if record.name else record.uid


def held_elsewhere(record: IntegrationRecord, organization_id: str,
                   holder: IntegrationRecord) -> str:
    """Why `record` cannot have the organization, and the way back, in the owner's words."""
    if holder.account_id != record.account_id:
        return (f"Zoho Books organization {organization_id} is already fiscalized by an "
                "integration of another FiscoBridge account. One organization can have only "
                "one integration, or every invoice would be fiscalized twice. If that "
                "integration is yours or was set up for you, remove it there first. Nothing "
                "was changed.")
    way_back = ("Reconnect that integration to resume fiscalization"
                if holder.status is not IntegrationStatus.ACTIVE else
                "It is active: nothing needs to be done")
    return (f"Zoho Books organization {organization_id} is already fiscalized by your "
            f"integration {_named(holder)} ({holder.status.value}). One organization can have "
            f"only one integration, or every invoice would be fiscalized twice. {way_back}; "
            "to move the organization here, remove that integration first. Nothing was "
            "changed.")


async def _holder(portal: Portal, record: IntegrationRecord,
                  organization_id: str) -> IntegrationRecord | None:
    """The other integration holding the organization, if any."""
    uid = await portal.store.integrations.holder_of(organization_id)
    if uid is None or uid == record.uid:
        return None
    return await portal.store.integrations.get(uid)


@router.post("/integrations/{uid}/connect")
async def connect(request: Request, uid: str) -> Response:
    portal = portal_of(request)
    record = await portal.owned_integration(request, uid)
    if record.status not in CONNECTABLE:
        raise _not_connectable(record)
    return start_flow(request, portal, uid)


def _consume_state(request: Request, portal: Portal, state: str) -> str:
    """The integration the state was issued for; refuses forged, foreign, old or used ones."""
    session = session_of(request)
    try:
        payload = portal.state_signer.verify(
            state, max_age=portal.settings.oauth_state_ttl.total_seconds(), now=portal.clock()
        )
    except ExpiredToken:
        minutes = portal.settings.oauth_state_ttl // timedelta(minutes=1)
        raise PageError(400, "The Zoho sign-in took too long",
                        f"More than {minutes} minutes "
                        "passed between leaving for Zoho and coming back. Nothing was "
                        "changed; start the connection again.") from None
    except BadToken:
        payload = {}
    nonce, uid = payload.get("n"), payload.get("i")
    if payload.get("s") != session.sid or not isinstance(nonce, str) or not isinstance(uid, str):
        log.warning("OAuth callback with a state this session did not issue")
        raise PageError(400, "Zoho sign-in not recognised",
                        "This answer from Zoho does not belong to a connection started in this "
                        "browser session (it was altered, or comes from another session). "
                        "Nothing was changed; start the connection again from the "
                        "Integrations page.")
    if session.finish_flow(nonce) != uid:
        raise PageError(400, "Zoho sign-in already used",
                        "This answer from Zoho was used already; each sign-in counts once. "
                        "Nothing was changed.", **_back(uid))
    return uid


async def _exchange(oauth: ZohoOAuth, code: str, accounts_server: str, uid: str) -> TokenSet:
    try:
        return await oauth.exchange_code(code, accounts_server)
    except TokenInvalid:
        message = ("Zoho no longer accepts this sign-in: its code was used already or is older "
                   "than about a minute. Nothing was changed; connect again.")
        status, title = 400, "The Zoho sign-in expired"
    except ClientInvalid as error:
        status, title = 502, "Zoho refused FiscoBridge"
        if error.error == "unknown_accounts_server":
            message = (f"Zoho's answer names {accounts_server} as your data centre, which is "
                       "not a Zoho accounts server FiscoBridge works with. Nothing was changed.")
        else:
            message = (f"The Zoho accounts server of your data centre ({accounts_server}) "
                       "refused FiscoBridge's client. Usually FiscoBridge is not enabled for "
                       "that data centre yet: tell the operator. Nothing was changed.")
    except OAuthError as error:
        status, title = 502, "Zoho did not answer"
        message = ("Zoho could not be reached to complete the sign-in. Nothing was changed; "
                   "try again in a few minutes." if error.transient else
                   f"Zoho refused the sign-in ({error.error}). Nothing was changed; try again.")
    log.warning("Zoho code exchange failed", extra={"integration_uid": uid, "http_status": status})
    raise PageError(status, title, message, **_back(uid))


@router.get("/oauth/zoho/callback")
async def callback(request: Request) -> Response:
    signed_in(request)
    portal = portal_of(request)
    query = request.query_params
    uid = _consume_state(request, portal, query.get("state", ""))
    record = await portal.owned_integration(request, uid)
    error = query.get("error")
    if error == "access_denied":
        log.info("Zoho consent denied", extra={"integration_uid": uid})
        raise PageError(400, "Zoho access not granted",
                        "You declined FiscoBridge's access in Zoho, so nothing was connected and "
                        f"integration {uid} stays {record.status.value}. Connect it again when "
                        "you are ready; FiscoBridge only reads invoices and organization "
                        "settings.", **_back(uid))
    code = query.get("code")
    if error or not code:
        raise PageError(400, "Zoho refused the sign-in",
                        f"Zoho answered {(error or 'without a code')[:80]!r}. Nothing was "
                        "changed; try connecting again.", **_back(uid))
    if record.status not in CONNECTABLE:
        raise _not_connectable(record)
    oauth = _oauth(portal)
    # `accounts-server` names the user's data centre; without it (a client not enabled
    # for several data centres) the grant lives where the consent started.
    accounts_server = query.get("accounts-server") or portal.settings.zoho.accounts_url
    tokens = await _exchange(oauth, code, accounts_server, uid)
    try:
        organizations = await grants.organizations(oauth, portal.http, tokens, accounts_server)
        if not organizations:
            raise PageError(400, "No Zoho Books organization",
                            "The Zoho user you signed in with has no Zoho Books organization "
                            "FiscoBridge may read. Nothing was changed; sign in with a user of "
                            "the organization whose invoices should be fiscalized.", **_back(uid))
        kept = record.zoho_organization_id
        if kept and kept not in {str(org["organization_id"]) for org in organizations}:
            raise PageError(400, "Another Zoho organization",
                            "The Zoho user you signed in with does not reach organization "
                            f"{kept}, whose invoices this integration fiscalizes. Nothing was "
                            "changed; sign in with a user of that organization.", **_back(uid))
    except BaseException:
        await grants.revoke_quietly(oauth, tokens.refresh_token, accounts_server, uid)
        raise
    if kept:
        try:
            await _store_grant(portal, record, tokens, accounts_server, kept)
        except OrganizationTaken as taken:
            await grants.revoke_quietly(oauth, tokens.refresh_token, accounts_server, uid)
            raise PageError(409, "Organization held by another integration",
                            held_elsewhere(record, kept, taken.holder), **_back(uid)) from None
        await _activate(portal, record, IntegrationEventKind.RECONNECTED)
        session_of(request).flash("Reconnected to Zoho Books: invoices are fiscalized again.")
        return RedirectResponse(f"/integrations/{uid}", status_code=303)
    session = session_of(request)
    previous = session.any_choice()
    if previous is not None:
        await drop_choice(portal, session, previous)
    session.await_choice(
        uid, accounts_server, grants.seal(portal.store, tokens, session_id=session.sid, uid=uid)
    )
    return RedirectResponse(f"/integrations/{uid}/organization", status_code=303)


async def _store_grant(
    portal: Portal, record: IntegrationRecord, tokens: TokenSet, accounts_server: str,
    organization_id: str,
) -> None:
    """Claim the organization, keep the new grant, then let go of the one it replaces.

    `OrganizationTaken` when another integration holds the organization: nothing kept.
    """
    assert tokens.refresh_token is not None
    holder = await _holder(portal, record, organization_id)
    if holder is not None:
        raise OrganizationTaken(organization_id, holder)
    old = await portal.store.tokens.get(record.uid)
    await portal.store.integrations.set_zoho_connection(
        record.uid, organization_id=organization_id, accounts_server=accounts_server,
        api_domain=tokens.api_domain,
    )
    await portal.store.tokens.set(
        record.uid, refresh_token=tokens.refresh_token, access_token=tokens.access_token,
        access_expires_at=tokens.expires_at,
    )
    if old is not None and old.refresh_token != tokens.refresh_token:
        await grants.revoke_quietly(
            portal.oauth, old.refresh_token, record.zoho_accounts_server, record.uid
        )


async def _activate(portal: Portal, record: IntegrationRecord, kind: IntegrationEventKind) -> None:
    await announce(
        portal,
        IntegrationEvent(integration_uid=record.uid, kind=kind,
                         reason=f"{kind.value} to Zoho Books by the owner in the portal",
                         details={"organization_id": record.zoho_organization_id}),
        failure="The Zoho connection was saved but could not be switched on. Nothing is "
        "fiscalized yet; connect again in a few minutes.",
    )
    log.info("integration connected", extra={"integration_uid": record.uid, "kind": kind.value})


def _unseal(portal: Portal, session: Session, choice: dict[str, str]) -> TokenSet | None:
    try:
        return grants.unseal(portal.store, choice["grant"], session_id=session.sid,
                             uid=choice["uid"])
    except (VaultError, ValueError, KeyError, binascii.Error):
        return None


async def drop_choice(portal: Portal, session: Session, choice: dict[str, str]) -> None:
    tokens = _unseal(portal, session, choice)
    session.clear_choice()
    if tokens is not None:
        await grants.revoke_quietly(
            portal.oauth, tokens.refresh_token, choice["accounts_server"], choice["uid"]
        )


async def _waiting_grant(
    request: Request, portal: Portal, uid: str
) -> tuple[IntegrationRecord, dict[str, str], TokenSet]:
    record = await portal.owned_integration(request, uid)
    session = session_of(request)
    choice = session.pending_choice(uid)
    tokens = _unseal(portal, session, choice) if choice is not None else None
    if choice is None or tokens is None:
        raise PageError(400, "No Zoho sign-in waiting",
                        "There is no Zoho sign-in waiting for an organization choice in this "
                        "browser session. Start the connection again.", **_back(uid))
    if record.status not in CONNECTABLE:
        await drop_choice(portal, session, choice)
        raise _not_connectable(record)
    return record, choice, tokens


@router.get("/integrations/{uid}/organization")
async def organization_page(request: Request, uid: str) -> Response:
    portal = portal_of(request)
    record, choice, tokens = await _waiting_grant(request, portal, uid)
    organizations = await grants.organizations(
        _oauth(portal), portal.http, tokens, choice["accounts_server"]
    )
    return render(request, "choose_organization.html", record=record,
                  organizations=await _marked(portal, record, organizations), error=None)


async def _marked(portal: Portal, record: IntegrationRecord,
                  organizations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The organizations, each with `held_by`: who already fiscalizes it, if anyone."""
    marked = []
    for org in organizations:
        holder = await _holder(portal, record, str(org["organization_id"]))
        held_by = None
        if holder is not None:
            held_by = (f"your integration {_named(holder)}"
                       if holder.account_id == record.account_id
                       else "another FiscoBridge account")
        marked.append({**org, "held_by": held_by})
    return marked


@router.post("/integrations/{uid}/organization")
async def choose_organization(request: Request, uid: str) -> Response:
    portal = portal_of(request)
    form = await request.form()
    session = session_of(request)
    if form.get("action") == "cancel":
        choice = session.pending_choice(uid)
        await portal.owned_integration(request, uid)
        if choice is not None:
            await drop_choice(portal, session, choice)
        session.flash("Connection cancelled; nothing was changed.")
        return RedirectResponse(f"/integrations/{uid}", status_code=303)
    record, choice, tokens = await _waiting_grant(request, portal, uid)
    accounts_server = choice["accounts_server"]
    organizations = await grants.organizations(_oauth(portal), portal.http, tokens,
                                               accounts_server)
    chosen = str(form.get("organization_id") or "")
    match = next((o for o in organizations if str(o["organization_id"]) == chosen), None)
    if match is None:
        return render(request, "choose_organization.html", 400, record=record,
                      organizations=await _marked(portal, record, organizations),
                      error="Choose the Zoho Books organization whose invoices this "
                      "integration fiscalizes.")
    try:
        await _store_grant(portal, record, tokens, accounts_server, chosen)
    except OrganizationTaken as taken:
        log.warning("organization held by another integration",
                    extra={"integration_uid": uid, "holder": taken.holder.uid})
        return render(request, "choose_organization.html", 409, record=record,
                      organizations=await _marked(portal, record, organizations),
                      error=held_elsewhere(record, chosen, taken.holder))
    session.clear_choice()
    kind = (IntegrationEventKind.CONNECTED if record.status is IntegrationStatus.PENDING
            else IntegrationEventKind.RECONNECTED)
    connected = await portal.store.integrations.get(uid)
    assert connected is not None
    await _activate(portal, connected, kind)
    session.flash(f"Connected to Zoho Books organization {match.get('name') or chosen}. "
                  "Set up the webhook below so invoices arrive within seconds.")
    return RedirectResponse(f"/integrations/{uid}", status_code=303)
