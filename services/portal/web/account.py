"""Account settings: name, e-mail, password, and the active sessions list.

Changing the e-mail or the password asks for the current password (a session left open
on a shared computer must not be enough to take the account over). A password change
ends every session of the account, this one included, and signs this browser in anew.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from runtime.store import InvalidInput
from runtime.store.accounts import AccountRecord, EmailTaken
from services.portal.web import passwords
from services.portal.web.auth import MIN_PASSWORD_LENGTH, now_of, start_session
from services.portal.web.context import log, portal_of, render, signed_in
from services.portal.web.sessions import session_of

router = APIRouter()

ACCOUNT_PATH = "/account"


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
    sessions = await portal.store.accounts.sessions_of(session.user_id, now=now_of(portal))
    return render(
        request, "account.html", status,
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
    signed_in(request)
    portal = portal_of(request)
    session = session_of(request)
    assert session.user_id is not None
    form = await request.form()
    email = str(form.get("email") or "").strip()
    if not await portal.store.accounts.check_password(
        session.user_id, str(form.get("current_password") or "")
    ):
        return await _page(request, 400, email="E-mail not changed: the current password is "
                           "wrong.")
    try:
        saved = await portal.store.accounts.change_email(session.user_id, email)
    except (InvalidInput, EmailTaken) as refused:
        return await _page(request, 400, email=f"E-mail not changed: {refused}.")
    log.info("account e-mail changed", extra={"account_id": session.account_id})
    session.flash(f"Your e-mail address is now {saved}; sign in with it from now on.")
    return _back()


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
