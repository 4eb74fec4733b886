"""Sign-up, sign-in (throttled), sign-out and password reset by e-mail.

Passwords are argon2id hashes in the store; being signed in is a `portal_sessions` row
(see sessions.py). Sign-in is throttled per e-mail address and per client address: after
`login_failures_per_account` (per_ip) refused attempts within the window, further
attempts are refused without checking the password until the oldest one leaves the
window, so guessing costs the attacker time whatever the password.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from runtime.store import InvalidInput
from runtime.store.accounts import AccountRecord, EmailTaken
from services.portal.web import mail, passwords
from services.portal.web.context import PageError, Portal, log, portal_of, render
from services.portal.web.sessions import session_of

router = APIRouter()

MIN_PASSWORD_LENGTH = passwords.MIN_LENGTH
ACCOUNT, IP, RESET = "account", "ip", "reset"


def _home() -> RedirectResponse:
    return RedirectResponse("/integrations", status_code=303)


def now_of(portal: Portal) -> datetime:
    return datetime.fromtimestamp(portal.clock(), UTC)


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _minutes(delta: timedelta) -> str:
    minutes = max(1, math.ceil(delta.total_seconds() / 60))
    return f"{minutes} minute{'' if minutes == 1 else 's'}"


async def start_session(request: Request, account: AccountRecord) -> None:
    """Signs this browser in as `account`: a new store session and a new cookie."""
    portal = portal_of(request)
    now = now_of(portal)
    _, token = await portal.store.accounts.start_session(
        account.user_id, now=now,
        lifetime=portal.settings.session_max_age,
        ip=client_ip(request), user_agent=request.headers.get("user-agent"),
    )
    login = await portal.store.accounts.resolve_session(token, now=now)
    if login is None:  # deleted in between (a password change elsewhere): not signed in
        raise PageError(409, "Not signed in", "Your account changed while signing in; sign "
                        "in again.", next_url="/login", next_label="Sign in")
    session_of(request).sign_in(token, login)


def _email_key(email: str) -> str:
    return email.strip().lower()


async def _throttled(portal: Portal, email: str, ip: str, now: datetime) -> str | None:
    """Why this sign-in attempt is refused unseen, or None when it may be checked."""
    settings = portal.settings
    window = settings.login_window
    accounts = portal.store.accounts
    count, oldest = await accounts.recent_failures(ACCOUNT, _email_key(email), since=now - window)
    if count >= settings.login_failures_per_account and oldest is not None:
        return (f"Too many failed sign-ins for {email} in the last {_minutes(window)}. "
                f"Try again in {_minutes(oldest + window - now)}, or reset the password "
                "with \"Forgot your password?\" below.")
    count, oldest = await accounts.recent_failures(IP, ip, since=now - window)
    if count >= settings.login_failures_per_ip and oldest is not None:
        return (f"Too many failed sign-ins from your network address ({ip}) in the last "
                f"{_minutes(window)}. Try again in {_minutes(oldest + window - now)}.")
    return None


@router.get("/")
async def index(request: Request) -> Response:
    if session_of(request).account_id:
        return _home()
    return RedirectResponse("/login", status_code=303)


@router.get("/login")
async def login_page(request: Request) -> Response:
    if session_of(request).account_id:
        return _home()
    return render(request, "login.html", email="", error=None)


@router.post("/login")
async def login(request: Request) -> Response:
    portal = portal_of(request)
    form = await request.form()
    email = str(form.get("email") or "").strip()
    password = str(form.get("password") or "")
    now = now_of(portal)
    ip = client_ip(request)
    refusal = await _throttled(portal, email, ip, now)
    if refusal is not None:
        log.info("sign-in throttled")
        return render(request, "login.html", 429, email=email, error=refusal)
    try:
        account = await portal.store.accounts.authenticate(email, password)
    except InvalidInput:
        account = None
    if account is None:
        await portal.store.accounts.record_failure(ACCOUNT, _email_key(email), now=now)
        await portal.store.accounts.record_failure(IP, ip, now=now)
        # Failures older than a window count for nothing: they are dropped now and then.
        await portal.store.accounts.forget_failures_before(
            (ACCOUNT, IP), now - portal.settings.login_window)
        # One message for an unknown e-mail and a wrong password: accounts are not probed.
        return render(request, "login.html", 400, email=email,
                      error="Wrong e-mail or password.")
    await portal.store.accounts.clear_failures(ACCOUNT, account.email)
    await start_session(request, account)
    log.info("signed in", extra={"account_id": account.account_id})
    return _home()


@router.get("/signup")
async def signup_page(request: Request) -> Response:
    return render(request, "signup.html", email="", name="", error=None,
                  min_length=MIN_PASSWORD_LENGTH)


@router.post("/signup")
async def signup(request: Request) -> Response:
    form = await request.form()
    email = str(form.get("email") or "").strip()
    name = str(form.get("name") or "").strip()
    password = str(form.get("password") or "")
    error = passwords.problem(password, email=email)
    if error is None and password != str(form.get("password_repeat") or ""):
        error = "The two passwords differ; type the same password twice."
    if error is None and len(name) > 200:
        error = "A name is at most 200 characters."
    if error is None:
        try:
            account = await portal_of(request).store.accounts.create(
                email, password, name=None)
            if name:
                await portal_of(request).store.accounts.set_name(account.user_id, name)
        except (InvalidInput, EmailTaken) as refused:
            error = f"{str(refused)[0].upper()}{str(refused)[1:]}."
    if error is not None:
        return render(request, "signup.html", 400, email=email, name=name, error=error,
                      min_length=MIN_PASSWORD_LENGTH)
    await start_session(request, account)
    log.info("account created", extra={"account_id": account.account_id})
    return _home()


@router.post("/logout")
async def logout(request: Request) -> Response:
    session = session_of(request)
    token = session.login_token
    if token is not None:
        # The store row goes: a copy of this cookie signs nobody in from now on.
        await portal_of(request).store.accounts.end_session_by_token(token)
    session.sign_out()
    session.flash("You are signed out.")
    return RedirectResponse("/login", status_code=303)


# -- password reset -------------------------------------------------------------------
@router.get("/password/forgot")
async def forgot_page(request: Request) -> Response:
    return render(request, "forgot.html", email="", error=None,
                  can_mail=bool(portal_of(request).settings.smtp_url))


@router.post("/password/forgot")
async def forgot(request: Request) -> Response:
    portal = portal_of(request)
    settings = portal.settings
    form = await request.form()
    email = str(form.get("email") or "").strip()
    if not settings.smtp_url:
        raise PageError(503, "Password reset unavailable",
                        "This portal has no mail server configured, so it cannot send a reset "
                        "link. Ask the operator to set FISCOBRIDGE_PORTAL_SMTP_URL.",
                        next_url="/login", next_label="Back to sign in")
    now = now_of(portal)
    hour = timedelta(hours=1)
    key = _email_key(email)
    count, oldest = await portal.store.accounts.recent_failures(RESET, key, since=now - hour)
    if count >= settings.reset_mails_per_hour and oldest is not None:
        return render(request, "forgot.html", 429, email=email, can_mail=True,
                      error=f"{count} reset links were sent for {email} in the last hour; "
                      f"use the newest one, or ask again in {_minutes(oldest + hour - now)}.")
    await portal.store.accounts.forget_failures_before((RESET,), now - hour)
    await portal.store.accounts.record_failure(RESET, key, now=now)
    lifetime = settings.reset_ttl
    token = await portal.store.accounts.start_reset(email, now=now, lifetime=lifetime)
    if token is not None:
        link = f"{settings.base_url}/password/reset/{token}"
        try:
            await mail.send(settings, to=email.lower(), subject="Reset your FiscoBridge password",
                            body=mail.reset_body(link, lifetime))
        except mail.MailError as error:
            log.error("password reset mail not sent", extra={"error": str(error)})
            raise PageError(502, "Mail not sent",
                            "The mail server did not take the message, so no reset link was "
                            "sent. Try again in a few minutes.",
                            next_url="/password/forgot", next_label="Try again") from None
    log.info("password reset requested", extra={"sent": token is not None})
    # The same answer whether or not the address has an account: accounts are not probed.
    session_of(request).flash(
        f"If {email} has a FiscoBridge account, a link to choose a new password is on its "
        f"way. It works once, for {_minutes(lifetime)}.")
    return RedirectResponse("/login", status_code=303)


def _bad_link() -> PageError:
    return PageError(400, "Link not valid",
                     "This password reset link does not work: it was used already, it has "
                     "expired, or a newer password replaced it. Ask for a new link.",
                     next_url="/password/forgot", next_label="Ask for a new link")


@router.get("/password/reset/{token}")
async def reset_page(request: Request, token: str) -> Response:
    portal = portal_of(request)
    account = await portal.store.accounts.reset_user(token, now=now_of(portal))
    if account is None:
        raise _bad_link()
    return render(request, "reset.html", token=token, email=account.email, error=None,
                  min_length=MIN_PASSWORD_LENGTH)


@router.post("/password/reset/{token}")
async def reset(request: Request, token: str) -> Response:
    portal = portal_of(request)
    now = now_of(portal)
    account = await portal.store.accounts.reset_user(token, now=now)
    if account is None:
        raise _bad_link()
    form = await request.form()
    password = str(form.get("password") or "")
    error = passwords.problem(password, email=account.email)
    if error is None and password != str(form.get("password_repeat") or ""):
        error = "The two passwords differ; type the same password twice."
    if error is not None:
        return render(request, "reset.html", 400, token=token, email=account.email,
                      error=error, min_length=MIN_PASSWORD_LENGTH)
    if await portal.store.accounts.finish_reset(token, password, now=now) is None:
        raise _bad_link()
    await portal.store.accounts.clear_failures(ACCOUNT, account.email)
    log.info("password reset", extra={"account_id": account.account_id})
    session = session_of(request)
    session.sign_out()
    session.flash("Your password was changed and every session of your account was signed "
                  "out. Sign in with the new password.")
    return RedirectResponse("/login", status_code=303)
