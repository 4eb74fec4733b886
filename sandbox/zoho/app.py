"""One FastAPI app per data centre and role: the accounts server or the API domain.

Zoho serves OAuth at `accounts.zoho.<dc>` and the API at `www.zohoapis.<dc>`; the
sandbox mirrors that with four origins (two roles x two data centres) sharing one
world, so a client that calls the accounts server for the API, or one data centre
with another's token, fails here as it would there. `/_sandbox` is on all four.
"""

from __future__ import annotations

from fastapi import FastAPI

from sandbox.zoho import accounts, admin, api
from sandbox.zoho.state import BooksState, DataCentre
from sandbox.zoho.webhooks import WebhookSender

ROLES = ("accounts", "api")


def create_app(books: BooksState, webhooks: WebhookSender, dc: DataCentre, role: str) -> FastAPI:
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    app = FastAPI(title=f"Zoho Books sandbox ({dc.key} {role})", docs_url=None, redoc_url=None)
    app.state.books = books
    app.state.webhooks = webhooks
    app.state.dc = dc
    app.state.role = role
    app.include_router(accounts.router if role == "accounts" else api.router)
    app.include_router(admin.router)
    return app
