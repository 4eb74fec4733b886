"""Sign-up, sign-in and sign-out with e-mail and password (argon2id hashes in the store)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from runtime.store import InvalidInput
from services.portal.web.context import log, portal_of, render
from services.portal.web.sessions import session_of

router = APIRouter()

MIN_PASSWORD_LENGTH = 10


def _home() -> RedirectResponse:
    return RedirectResponse("/integrations", status_code=303)


@router.get("/")
async def index(request: Request) -> Response:
    if session_of(request).account_id:
        return _home()
    return RedirectResponse("/login", status_code=303)


@router.get("/login")
async def login_page(request: Request) -> Response:
    return render(request, "login.html", email="", error=None)


@router.post("/login")
async def login(request: Request) -> Response:
    form = await request.form()
    email = str(form.get("email") or "").strip()
    password = str(form.get("password") or "")
    try:
        account = await portal_of(request).store.accounts.authenticate(email, password)
    except InvalidInput:
        account = None
    if account is None:
        # One message for an unknown e-mail and a wrong password: accounts are not probed.
        return render(request, "login.html", 400, email=email,
                      error="Wrong e-mail or password.")
    session_of(request).sign_in(account.account_id, account.email)
    log.info("signed in", extra={"account_id": account.account_id})
    return _home()


@router.get("/signup")
async def signup_page(request: Request) -> Response:
    return render(request, "signup.html", email="", error=None)


@router.post("/signup")
async def signup(request: Request) -> Response:
    form = await request.form()
    email = str(form.get("email") or "").strip()
    password = str(form.get("password") or "")
    error = None
    if len(password) < MIN_PASSWORD_LENGTH:
        error = f"Choose a password of at least {MIN_PASSWORD_LENGTH} characters."
    elif password != str(form.get("password_repeat") or ""):
        error = "The two passwords differ; type the same password twice."
    else:
        try:
            account = await portal_of(request).store.accounts.create(email, password)
        except InvalidInput as refused:
            error = f"{str(refused)[0].upper()}{str(refused)[1:]}."
    if error is not None:
        return render(request, "signup.html", 400, email=email, error=error)
    session_of(request).sign_in(account.account_id, account.email)
    log.info("account created", extra={"account_id": account.account_id})
    return _home()


@router.post("/logout")
async def logout(request: Request) -> Response:
    session = session_of(request)
    session.sign_out()
    session.flash("You are signed out.")
    return RedirectResponse("/login", status_code=303)
