"""Sessions: a signed cookie for bookkeeping, a store row for being signed in.

The cookie (signed, not encrypted) holds ids and non-secret bookkeeping: the CSRF
token, pending OAuth flows, a flash message. Every visitor gets one, signed in or not,
so even the login form has a CSRF token. Being signed in is server-side: the cookie
carries a random login token whose SHA-256 names a `portal_sessions` row, looked up on
every request. Deleting the row (Sign out, a password change, "End" in the active
sessions list) signs that browser out at once, and so every copy of its cookie.
Signing in or out starts a new session (new id, new CSRF token): a session id planted
before login is useless after it.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runtime.store.accounts import SessionRecord
from services.portal.web.signing import BadToken, Signer

COOKIE = "fb_session"
CSRF_FIELD = "csrf_token"
_SCOPE_KEY = "fiscobridge.session"
# Pending OAuth flows per session: enough for a few tabs, small enough for a cookie.
MAX_FLOWS = 3
# Requests that never need to know who is signed in: no store lookup for them.
_ANONYMOUS_PATHS = ("/static/", "/healthz", "/readyz", "/metrics")
ENDED = "Your session has ended (signed out, or ended from another browser). Sign in again."


class SessionLookup(Protocol):
    async def resolve_session(self, token: str, *, now: datetime) -> SessionRecord | None: ...


@dataclass
class Session:
    data: dict[str, Any] = field(default_factory=dict)
    changed: bool = False
    stored: bool = True  # came from a cookie
    # The store's row for a signed-in session, set by the middleware (never from the
    # cookie alone): who is signed in is whatever the store says.
    login: SessionRecord | None = None

    @classmethod
    def fresh(cls) -> Session:
        data = {"sid": secrets.token_urlsafe(16), "csrf": secrets.token_urlsafe(32)}
        return cls(data, changed=False, stored=False)

    @property
    def sid(self) -> str:
        return str(self.data["sid"])

    @property
    def csrf(self) -> str:
        # A new session is worth a cookie once its token went into a form; requests that
        # never render one (probes, /metrics, CSS) get no cookie.
        if not self.stored:
            self.changed = True
        return str(self.data["csrf"])

    @property
    def account_id(self) -> str | None:
        return self.login.account_id if self.login else None

    @property
    def user_id(self) -> str | None:
        return self.login.user_id if self.login else None

    @property
    def email(self) -> str | None:
        return self.login.email if self.login else None

    @property
    def login_token(self) -> str | None:
        value = self.data.get("login")
        return str(value) if isinstance(value, str) and value else None

    def csrf_matches(self, sent: object) -> bool:
        expected = str(self.data["csrf"]).encode()
        return isinstance(sent, str) and hmac.compare_digest(sent.encode(), expected)

    def sign_in(self, token: str, login: SessionRecord) -> None:
        """Signed in as the store's session `login`, whose cookie token is `token`."""
        self.data = {**Session.fresh().data, "login": token}
        self.login = login
        self.changed = True

    def sign_out(self) -> None:
        self.data = Session.fresh().data
        self.login = None
        self.changed = True

    def _set(self, key: str, value: Any) -> None:
        if value is None:
            if key in self.data:
                del self.data[key]
                self.changed = True
        elif self.data.get(key) != value:
            self.data[key] = value
            self.changed = True

    # -- OAuth flows: a nonce per redirect to Zoho, consumed by its callback -------------
    def start_flow(self, nonce: str, uid: str) -> None:
        flows = dict(self.data.get("flows") or {})
        flows[nonce] = uid
        self._set("flows", dict(list(flows.items())[-MAX_FLOWS:]))

    def finish_flow(self, nonce: str) -> str | None:
        """The integration the flow was for, once; None if it is unknown or used."""
        flows = dict(self.data.get("flows") or {})
        uid = flows.pop(nonce, None)
        if uid is not None:
            self._set("flows", flows or None)
        return str(uid) if uid is not None else None

    # -- a connection waiting for the user's organization choice -------------------------
    def await_choice(self, uid: str, accounts_server: str, sealed_grant: str) -> None:
        self._set("choice", {"uid": uid, "accounts_server": accounts_server,
                             "grant": sealed_grant})

    def any_choice(self) -> dict[str, str] | None:
        choice = self.data.get("choice")
        return self.pending_choice(str(choice.get("uid"))) if isinstance(choice, dict) else None

    def pending_choice(self, uid: str) -> dict[str, str] | None:
        choice = self.data.get("choice")
        if isinstance(choice, dict) and choice.get("uid") == uid:
            return {str(k): str(v) for k, v in choice.items()}
        return None

    def clear_choice(self) -> None:
        self._set("choice", None)

    # -- one message for the next page --------------------------------------------------
    def flash(self, message: str) -> None:
        self._set("flash", message)

    def pop_flash(self) -> str | None:
        message = self.data.get("flash")
        self._set("flash", None)
        return str(message) if message else None


def session_of(connection: HTTPConnection) -> Session:
    session: Session = connection.scope[_SCOPE_KEY]
    return session


class SessionMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        signer: Signer,
        *,
        max_age: int,
        secure: bool,
        clock: Callable[[], float],
        logins: SessionLookup | None = None,
    ) -> None:
        self.app = app
        self.signer = signer
        self.max_age = max_age
        self.secure = secure
        self.clock = clock
        self.logins = logins

    def load(self, cookie: str | None) -> Session:
        if cookie:
            try:
                data = self.signer.verify(cookie, max_age=self.max_age, now=self.clock())
            except BadToken:
                pass  # forged or expired: the visitor starts over, signed out
            else:
                if isinstance(data.get("sid"), str) and isinstance(data.get("csrf"), str):
                    data.pop("iat", None)
                    return Session(data)
        return Session.fresh()

    def cookie(self, session: Session, *, https: bool = False) -> str:
        token = self.signer.sign(session.data, now=self.clock())
        attributes = f"Path=/; Max-Age={self.max_age}; HttpOnly; SameSite=Lax"
        # Secure whenever the portal is reached over https: configured so (the public
        # base URL), or this very request came over TLS (directly or via a trusted proxy).
        secure = self.secure or https
        return f"{COOKIE}={token}; {attributes}" + ("; Secure" if secure else "")

    async def resolve(self, session: Session, path: str) -> None:
        token = session.login_token
        if token is None or self.logins is None or path.startswith(_ANONYMOUS_PATHS):
            return
        now = datetime.fromtimestamp(self.clock(), UTC)
        session.login = await self.logins.resolve_session(token, now=now)
        if session.login is None:
            # Ended in the store (or expired): this cookie signs nobody in any more.
            session.sign_out()
            session.flash(ENDED)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        session = self.load(HTTPConnection(scope).cookies.get(COOKIE))
        await self.resolve(session, str(scope.get("path") or ""))
        scope[_SCOPE_KEY] = session
        https = scope.get("scheme") == "https"

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start" and session.changed:
                MutableHeaders(scope=message).append(
                    "Set-Cookie", self.cookie(session, https=https))
            await send(message)

        await self.app(scope, receive, send_with_cookie)
