"""Signed-cookie sessions and the CSRF token every POST form carries.

The session lives entirely in the cookie (signed, not encrypted), so it holds ids and
non-secret bookkeeping only; any portal instance with the same secret can serve any
request. Every visitor gets one, signed in or not, so even the login form has a CSRF
token. Signing in or out starts a new session (new id, new CSRF token): a session id
planted before login is useless after it.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.portal.web.signing import BadToken, Signer

COOKIE = "fb_session"
CSRF_FIELD = "csrf_token"
_SCOPE_KEY = "fiscobridge.session"
# Pending OAuth flows per session: enough for a few tabs, small enough for a cookie.
MAX_FLOWS = 3


@dataclass
class Session:
    data: dict[str, Any] = field(default_factory=dict)
    changed: bool = False
    stored: bool = True  # came from a cookie

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
        value = self.data.get("account")
        return str(value) if value else None

    @property
    def email(self) -> str | None:
        value = self.data.get("email")
        return str(value) if value else None

    def csrf_matches(self, sent: object) -> bool:
        expected = str(self.data["csrf"]).encode()
        return isinstance(sent, str) and hmac.compare_digest(sent.encode(), expected)

    def sign_in(self, account_id: str, email: str) -> None:
        self.data = {**Session.fresh().data, "account": account_id, "email": email}
        self.changed = True

    def sign_out(self) -> None:
        self.data = Session.fresh().data
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
    ) -> None:
        self.app = app
        self.signer = signer
        self.max_age = max_age
        self.secure = secure
        self.clock = clock

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

    def cookie(self, session: Session) -> str:
        token = self.signer.sign(session.data, now=self.clock())
        attributes = f"Path=/; Max-Age={self.max_age}; HttpOnly; SameSite=Lax"
        return f"{COOKIE}={token}; {attributes}" + ("; Secure" if self.secure else "")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        session = self.load(HTTPConnection(scope).cookies.get(COOKIE))
        scope[_SCOPE_KEY] = session

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start" and session.changed:
                MutableHeaders(scope=message).append("Set-Cookie", self.cookie(session))
            await send(message)

        await self.app(scope, receive, send_with_cookie)
