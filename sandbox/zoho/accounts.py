"""Zoho Accounts stand-in: authorize page, token endpoint, revoke.

Like Zoho, the flow may start at any data centre's accounts server; the user's own
data centre issues the code, and the redirect back names it (`location`,
`accounts-server`). Token-endpoint errors are answered under HTTP 200 with an `error`
field (`invalid_code`, `invalid_client`, ...), as Zoho does; only the refresh-rate
refusal comes as HTTP 400 "Access Denied".
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import jinja2
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from sandbox.zoho.books import dumps
from sandbox.zoho.state import BooksState, DataCentre, Grant

router = APIRouter()

_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True
)
OAUTH_FIELDS = (
    "scope",
    "client_id",
    "response_type",
    "redirect_uri",
    "access_type",
    "prompt",
    "state",
)
_TICKET_TTL = timedelta(minutes=10)


def _books(request: Request) -> BooksState:
    books: BooksState = request.app.state.books
    return books


def _dc(request: Request) -> DataCentre:
    dc: DataCentre = request.app.state.dc
    return dc


def _page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(_TEMPLATES.get_template(name).render(**context), status_code=status)


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(dumps(body), status_code=status, media_type="application/json")


def _authorize_problem(books: BooksState, oauth: dict[str, str]) -> str | None:
    client = books.clients.get(oauth.get("client_id", ""))
    if client is None:
        return "Invalid Client: no application with this client_id"
    if oauth.get("redirect_uri") not in client.redirect_uris:
        return "Invalid Redirect Uri: it is not registered for this client"
    if oauth.get("response_type") != "code":
        return "Invalid Response Type: only response_type=code is supported"
    if not [s for s in oauth.get("scope", "").split(",") if s.strip()]:
        return "Invalid OAuth Scope: scope is required"
    return None


@router.get("/oauth/v2/auth", response_class=HTMLResponse)
async def authorize_page(request: Request) -> Response:
    books, dc = _books(request), _dc(request)
    oauth = {key: request.query_params.get(key, "") for key in OAUTH_FIELDS}
    problem = _authorize_problem(books, oauth)
    books.count(f"oauth:{dc.key}", "authorize_page" if problem is None else "authorize_refused")
    if problem:
        return _page("error.html", 400, title="Invalid request", message=problem)
    return _page("login.html", dc=dc.key, client_id=oauth["client_id"], oauth=oauth, email="")


@router.post("/oauth/v2/auth", response_class=HTMLResponse)
async def authorize_submit(request: Request) -> Response:
    books, dc = _books(request), _dc(request)
    form = await request.form()
    oauth = {key: str(form.get(key, "")) for key in OAUTH_FIELDS}
    problem = _authorize_problem(books, oauth)
    if problem:
        return _page("error.html", 400, title="Invalid request", message=problem)
    step = str(form.get("step", ""))
    now = books.clock.now()

    if step == "login":
        email = str(form.get("email", ""))
        user = books.user_by_email(email)
        if user is None or user.password != str(form.get("password", "")):
            books.count(f"oauth:{dc.key}", "login_failed")
            return _page(
                "login.html",
                dc=dc.key,
                client_id=oauth["client_id"],
                oauth=oauth,
                email=email,
                error="Incorrect email or password",
            )
        ticket = books.new_token("ticket")
        books.login_tickets[ticket] = (user.user_id, now)
        grant = Grant(oauth["client_id"], user.user_id, user.dc, (), None)
        return _page(
            "consent.html",
            dc=user.dc,
            client_id=oauth["client_id"],
            email=user.email,
            scopes=oauth["scope"].split(","),
            organizations=books.organizations_of(grant),
            oauth=oauth,
            ticket=ticket,
        )

    held = books.login_tickets.pop(str(form.get("ticket", "")), None)
    if step not in ("accept", "reject") or held is None or now - held[1] > _TICKET_TTL:
        return _page("error.html", 400, title="Session expired", message="Please sign in again")
    user = books.users[held[0]]
    if step == "reject":
        return _redirect(oauth["redirect_uri"], {"error": "access_denied", "state": oauth["state"]})
    chosen = str(form.get("organization_id", ""))
    scopes = tuple(s.strip() for s in oauth["scope"].split(",") if s.strip())
    grant = Grant(oauth["client_id"], user.user_id, user.dc, scopes, None)
    if chosen:
        if chosen not in {o.organization_id for o in books.organizations_of(grant)}:
            return _page("error.html", 400, title="Invalid organization", message=chosen)
        grant.organization_ids = (chosen,)
    home = books.data_centres[user.dc]
    code = books.issue_code(grant, oauth["redirect_uri"], offline=oauth["access_type"] == "offline")
    books.count(f"oauth:{home.key}", "code_issued")
    return _redirect(
        oauth["redirect_uri"],
        {
            "state": oauth["state"],
            "code": code,
            "location": home.location,
            "accounts-server": home.accounts_url,
        },
    )


def _redirect(uri: str, params: dict[str, str]) -> RedirectResponse:
    parts = urlsplit(uri)
    query = urlencode([*parse_qsl(parts.query), *params.items()])
    return RedirectResponse(urlunsplit(parts._replace(query=query)), status_code=302)


@router.post("/oauth/v2/token")
async def token(request: Request) -> Response:
    books, dc = _books(request), _dc(request)
    params = dict(request.query_params)
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        params.update({k: str(v) for k, v in (await request.form()).items()})
    area = f"oauth:{dc.key}"
    grant_type = params.get("grant_type", "")
    client = books.clients.get(params.get("client_id", ""))
    if client is None or client.client_secret != params.get("client_secret"):
        books.count(area, "invalid_client")
        return _json({"error": "invalid_client"})
    now = books.clock.now()

    if grant_type == "authorization_code":
        code = books.codes.get(params.get("code", ""))
        if code is not None and code.grant.dc != dc.key:
            books.count(area, "invalid_client")  # a grant of another data centre
            return _json({"error": "invalid_client"})
        expired = code is not None and (
            now - code.issued_at > timedelta(seconds=books.settings.code_ttl)
        )
        if code is None or code.used or expired or code.grant.client_id != client.client_id:
            books.count(area, "invalid_code")
            return _json({"error": "invalid_code"})
        if params.get("redirect_uri") != code.redirect_uri:
            books.count(area, "invalid_redirect_uri")
            return _json({"error": "invalid_redirect_uri"})
        code.used = True
        refresh = books.issue_refresh_token(code.grant) if code.offline else None
        access = books.issue_access_token(code.grant, refresh.token if refresh else None)
        books.count(area, "code_exchanged")
        answer = _token_answer(books, dc, access.token, code.grant.scopes)
        if refresh is not None:
            answer["refresh_token"] = refresh.token
        return _json(answer)

    if grant_type == "refresh_token":
        held = books.refresh_tokens.get(params.get("refresh_token", ""))
        if held is not None and held.grant.dc != dc.key:
            books.count(area, "invalid_client")
            return _json({"error": "invalid_client"})
        if held is None or held.grant.client_id != client.client_id:
            books.count(area, "invalid_code")
            return _json({"error": "invalid_code"})
        window = timedelta(seconds=books.settings.access_token_window)
        while held.access_issued and held.access_issued[0] <= now - window:
            held.access_issued.popleft()
        if len(held.access_issued) >= books.settings.max_access_tokens_per_window:
            books.count(area, "refresh_denied_too_many")
            return _json(
                {
                    "error_description": "You have made too many requests continuously. "
                    "Please try again after some time.",
                    "error": "Access Denied",
                    "status": "failure",
                },
                400,
            )
        held.access_issued.append(now)
        access = books.issue_access_token(held.grant, held.token)
        books.count(area, "refreshed")
        return _json(_token_answer(books, dc, access.token, held.grant.scopes))

    books.count(area, "unsupported_grant_type")
    return _json({"error": "unsupported_grant_type"})


def _token_answer(
    books: BooksState, dc: DataCentre, access_token: str, scopes: tuple[str, ...]
) -> dict[str, Any]:
    return {
        "access_token": access_token,
        "scope": " ".join(scopes),
        "api_domain": dc.api_url,
        "token_type": "Bearer",
        "expires_in": books.settings.access_token_ttl,
    }


@router.post("/oauth/v2/token/revoke")
async def revoke(request: Request) -> Response:
    books, dc = _books(request), _dc(request)
    token_value = request.query_params.get("token", "")
    area = f"oauth:{dc.key}"
    held = books.refresh_tokens.get(token_value)
    if held is not None and held.grant.dc == dc.key:
        books.revoke_refresh_token(token_value)
        books.count(area, "revoked")
        return _json({"status": "success"})
    access = books.access_tokens.get(token_value)
    if access is not None and access.grant.dc == dc.key:
        del books.access_tokens[token_value]
        books.count(area, "revoked")
        return _json({"status": "success"})
    books.count(area, "revoke_unknown")
    return _json({"error": "invalid_code"})
