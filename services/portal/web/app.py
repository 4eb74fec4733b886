"""The Client Portal as one ASGI app: pages, static CSS and the ops endpoints."""

from __future__ import annotations

from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runtime.ops import routes
from services.portal.web import (
    account,
    auth,
    certificates,
    create,
    dashboard,
    integrations,
    invoices,
    plans,
    read_options,
    tax_mapping,
    writeback,
    zoho_connect,
)
from services.portal.web.context import PageError, Portal, SignInRequired, csrf_guard, render
from services.portal.web.sessions import SessionMiddleware

_HEADERS = {
    # Pages carry CSRF tokens and the webhook secret: no cache may keep them.
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # The callback URL holds the one-time code; it must not leak as a referrer.
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'",
}


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in _HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers if scope["type"] == "http" else send)


def create_app(portal: Portal) -> FastAPI:
    # The CSRF check sits on the app, so no POST route can be added without it.
    app = FastAPI(title="FiscoBridge Client Portal", docs_url=None, redoc_url=None,
                  openapi_url=None, dependencies=[Depends(csrf_guard)])
    app.state.portal = portal
    # create.router first: Create Integration's pages take over /integrations/new and
    # POST /integrations.
    for router in (create.router, auth.router, account.router, certificates.router,
                   dashboard.router, integrations.router, invoices.router, plans.router,
                   read_options.router, tax_mapping.router, writeback.router,
                   zoho_connect.router):
        app.include_router(router)
    if portal.ready is not None:
        app.router.routes.extend(routes(portal.ready))
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")

    @app.exception_handler(PageError)
    async def page_error(request: Request, error: PageError) -> Response:
        return render(request, "error.html", error.status, error=error)

    @app.exception_handler(SignInRequired)
    async def sign_in_required(request: Request, _: SignInRequired) -> Response:
        return RedirectResponse("/login", status_code=303)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> Response:
        title = {404: "Not found", 405: "Not allowed"}.get(error.status_code, "Request refused")
        return render(request, "error.html", error.status_code,
                      error=PageError(error.status_code, title, str(error.detail)))

    app.add_middleware(
        SessionMiddleware,
        signer=portal.session_signer,
        max_age=int(portal.settings.session_max_age.total_seconds()),
        secure=portal.settings.secure_cookies,
        clock=portal.clock,
        logins=portal.store.accounts,
    )
    app.add_middleware(SecurityHeaders)
    return app
