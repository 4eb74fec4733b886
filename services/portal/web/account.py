"""Account settings: name, e-mail, password, and the active sessions list.

Changing the e-mail or the password asks for the current password (a session left open
on a shared computer must not be enough to take the account over). A password change
ends every session of the account, this one included, and signs this browser in anew.
A new e-mail address takes effect only when the link mailed to it is opened (proof that
the mailbox is the user's); the old address is told at once and stays the sign-in until
then. Opening the link shows a page whose button confirms: a mail scanner that fetches
links changes nothing.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from runtime.store import InvalidInput
from runtime.store.accounts import AccountRecord, EmailTaken
from services.portal.web import mail, passwords
from services.portal.web.auth import MIN_PASSWORD_LENGTH, now_of, start_session
from services.portal.web.context import PageError, log, portal_of, render, signed_in
from services.portal.web.sessions import session_of

router = APIRouter()

ACCOUNT_PATH = "/account"
EMAIL_CHANGE = "email_change"  # throttling scope: change mails per user and hour


def _back() -> RedirectResponse:
    return RedirectResponse(ACCOUNT_PATH, status_code=303)


def _browser(user_agent: str | None) -> str:
    """A short description of a User-Agent for the sessions list."""
    agent = user_agent or ""
    for name in ("Edg/", "OPR/", "Firefox/", "Chrome/", "Safari/"):
        if name in agent:
            browser = {"Edg/": "Edge", "OPR/": "Opera"}.get(name, name.rstrip("/"))
            break
    else:
        browser = "Unknown browser"
    for system in ("Windows", "Android", "iPhone", "iPad", "Mac OS X", "Linux"):
        if system in agent:
            return f"{browser} on {system.replace('Mac OS X', 'macOS')}"
    return browser


async def _page(request: Request, status: int = 200, **problems: Any) -> Response:
    portal = portal_of(request)
    session = session_of(request)
    signed_in(request)
    assert session.login is not None and session.user_id is not None
    account: AccountRecord | None = await portal.store.accounts.by_user(session.user_id)
    assert account is not None
    now = now_of(portal)
    sessions = await portal.store.accounts.sessions_of(session.user_id, now=now)
    pending = await portal.store.accounts.pending_email_change(session.user_id, now=now)
    return render(
        request, "account.html", status, pending=pending,
        account=account, current_id=session.login.id, min_length=MIN_PASSWORD_LENGTH,
        sessions=[{"record": s, "browser": _browser(s.user_agent)} for s in sessions],
        problems={"name": None, "email": None, "password": None, **problems},
    )


@router.get(ACCOUNT_PATH)
async def account_page(request: Request) -> Response:
    signed_in(request)
    return await _page(request)


@router.post(f"{ACCOUNT_PATH}/name")
async def change_name(request: Request) -> Response:
    signed_in(request)
    session = session_of(request)
    form = await request.form()
    name = str(form.get("name") or "")
    try:
        assert session.user_id is not None
        await portal_of(request).store.accounts.set_name(session.user_id, name)
    except InvalidInput as refused:
        return await _page(request, 400, name=f"Name not changed: {refused}.")
    session.flash("Your name was saved." if name.strip() else "Your name was removed.")
    return _back()


@router.post(f"{ACCOUNT_PATH}/email")
async def change_email(request: Request) -> Response:
    """Mail a confirmation link to the new address and a notice to the current one; the
    address changes only when the link is opened."""
    signed_in(request)
    portal = portal_of(request)
    settings = portal.settings
    session = session_of(request)
    user_id = session.user_id
    assert user_id is not None
    form = await request.form()
    email = str(form.get("email") or "").strip()
    if not await portal.store.accounts.check_password(
        user_id, str(form.get("current_password") or "")
    ):
        return await _page(request, 400, email="E-mail not changed: the current password is "
                           "wrong.")
    if not settings.smtp_url:
        return await _page(request, 503, email="E-mail not changed: this portal has no mail "
                           "server configured, so it cannot send the confirmation link to the "
                           "new address. Ask the operator to set FISCOBRIDGE_PORTAL_SMTP_URL.")
    now = now_of(portal)
    hour = timedelta(hours=1)
    count, oldest = await portal.store.accounts.recent_failures(EMAIL_CHANGE, user_id,
                                                                since=now - hour)
    if count >= settings.reset_mails_per_hour and oldest is not None:
        wait = max(1, math.ceil((oldest + hour - now).total_seconds() / 60))
        return await _page(request, 429, email=f"E-mail not changed: {count} confirmation "
                           "links were sent in the last hour; use the newest one, or ask "
                           f"again in {wait} minute{'' if wait == 1 else 's'}.")
    lifetime = settings.email_change_ttl
    try:
        token, old, new = await portal.store.accounts.request_email_change(
            user_id, email, now=now, lifetime=lifetime)
    except (InvalidInput, EmailTaken) as refused:
        return await _page(request, 400, email=f"E-mail not changed: {refused}.")
    await portal.store.accounts.forget_failures_before((EMAIL_CHANGE,), now - hour)
    await portal.store.accounts.record_failure(EMAIL_CHANGE, user_id, now=now)
    link = f"{settings.base_url}{ACCOUNT_PATH}/email/confirm/{token}"
    try:
        await mail.send(settings, to=new, subject="Confirm your new FiscoBridge e-mail address",
                        body=mail.email_change_body(link, old, lifetime))
    except mail.MailError as error:
        log.error("e-mail change link not sent", extra={"error": str(error)})
        # The link never left: a later request replaces it, and nothing changed meanwhile.
        return await _page(request, 502, email="E-mail not changed: the mail server did not "
                           "take the confirmation message. Try again in a few minutes.")
    try:
        await mail.send(settings, to=old, subject="Your FiscoBridge e-mail address is changing",
                        body=mail.email_change_notice(old, new, lifetime))
    except mail.MailError as error:
        # The change still needs the new mailbox's link; the notice is a courtesy.
        log.error("e-mail change notice to the old address not sent",
                  extra={"error": str(error)})
    log.info("account e-mail change requested", extra={"account_id": session.account_id})
    session.flash(f"A confirmation link was sent to {new}. Your e-mail address changes when "
                  f"you open it (within {mail.hours(lifetime)}); until then you sign in "
                  f"with {old}.")
    return _back()


def _bad_change_link() -> PageError:
    return PageError(400, "Link not valid",
                     "This e-mail confirmation link does not work: it was used already, it "
                     "has expired, a newer change replaced it, or the password changed since. "
                     "Ask for the change again in the account settings.",
                     next_url=ACCOUNT_PATH, next_label="Account settings")


@router.get(ACCOUNT_PATH + "/email/confirm/{token}")
async def confirm_email_page(request: Request, token: str) -> Response:
    portal = portal_of(request)
    change = await portal.store.accounts.email_change_of(token, now=now_of(portal))
    if change is None:
        raise _bad_change_link()
    old, new = change
    return render(request, "email_confirm.html", token=token, old=old, new=new)


@router.post(ACCOUNT_PATH + "/email/confirm/{token}")
async def confirm_email(request: Request, token: str) -> Response:
    portal = portal_of(request)
    try:
        changed = await portal.store.accounts.confirm_email_change(token, now=now_of(portal))
    except EmailTaken as refused:
        raise PageError(409, "E-mail not changed",
                        f"E-mail not changed: {refused}. Your address stays as it was.",
                        next_url=ACCOUNT_PATH, next_label="Account settings") from None
    if changed is None:
        raise _bad_change_link()
    old, new = changed
    log.info("account e-mail changed")
    try:
        await mail.send(portal.settings, to=old, subject="Your FiscoBridge e-mail address changed",
                        body=mail.email_changed_notice(old, new))
    except mail.MailError as error:
        log.error("e-mail changed notice not sent", extra={"error": str(error)})
    session_of(request).flash(f"Your e-mail address is now {new}; sign in with it from now on.")
    return RedirectResponse(ACCOUNT_PATH if session_of(request).user_id else "/login",
                            status_code=303)


@router.post(f"{ACCOUNT_PATH}/password")
async def change_password(request: Request) -> Response:
    signed_in(request)
    portal = portal_of(request)
    session = session_of(request)
    assert session.user_id is not None and session.email is not None
    form = await request.form()
    new = str(form.get("new_password") or "")
    if not await portal.store.accounts.check_password(
        session.user_id, str(form.get("current_password") or "")
    ):
        return await _page(request, 400, password="Password not changed: the current "
                           "password is wrong.")
    problem = passwords.problem(new, email=session.email)
    if problem is None and new != str(form.get("new_password_repeat") or ""):
        problem = "The two new passwords differ; type the same password twice."
    if problem is not None:
        return await _page(request, 400, password=f"Password not changed. {problem}")
    user_id = session.user_id
    await portal.store.accounts.change_password(user_id, new, now=now_of(portal))
    account = await portal.store.accounts.by_user(user_id)
    assert account is not None
    # Every session ended with the old password (a thief's too); this browser goes on
    # in a new one.
    await start_session(request, account)
    log.info("account password changed", extra={"account_id": account.account_id})
    session.flash("Your password was changed. Every other session of your account was "
                  "signed out.")
    return _back()


@router.post(f"{ACCOUNT_PATH}/sessions/others/end")
async def end_other_sessions(request: Request) -> Response:
    signed_in(request)
    session = session_of(request)
    assert session.user_id is not None and session.login is not None
    ended = await portal_of(request).store.accounts.end_other_sessions(
        session.user_id, session.login.id)
    session.flash(f"{ended} other session{'' if ended == 1 else 's'} signed out."
                  if ended else "There were no other sessions.")
    return _back()


@router.post(ACCOUNT_PATH + "/sessions/{session_id}/end")
async def end_session(request: Request, session_id: str) -> Response:
    signed_in(request)
    session = session_of(request)
    assert session.user_id is not None and session.login is not None
    if session_id == session.login.id:
        token = session.login_token
        if token is not None:
            await portal_of(request).store.accounts.end_session_by_token(token)
        session.sign_out()
        session.flash("You are signed out.")
        return RedirectResponse("/login", status_code=303)
    ended = await portal_of(request).store.accounts.end_session(session.user_id, session_id)
    session.flash("That session was signed out." if ended
                  else "That session had already ended.")
    return _back()
