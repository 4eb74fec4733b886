from datetime import UTC, datetime

from runtime.store.accounts import SessionRecord
from services.portal.web.sessions import COOKIE, ENDED, MAX_FLOWS, Session, SessionMiddleware
from services.portal.web.signing import Signer

SIGNER = Signer(b"0123456789abcdef-portal-tests", "session")
_T = datetime(2026, 12, 2, tzinfo=UTC)
LOGIN = SessionRecord(id="s1", user_id="u1", account_id="acct1", email="a@firma.example",
                      created_at=_T, last_seen_at=_T, expires_at=_T, ip=None, user_agent=None)


async def _app(scope: object, receive: object, send: object) -> None:  # never called here
    raise AssertionError


def _middleware(*, secure: bool = False, now: float = 1000.0) -> SessionMiddleware:
    return SessionMiddleware(_app, SIGNER, max_age=3600, secure=secure, clock=lambda: now)


def _value(set_cookie: str) -> str:
    return set_cookie.split(";")[0].removeprefix(f"{COOKIE}=")


def test_a_session_survives_the_cookie_round_trip_but_signs_in_only_through_the_store() -> None:
    middleware = _middleware()
    session = Session.fresh()
    session.sign_in("token1", LOGIN)
    assert session.account_id == "acct1" and session.email == "a@firma.example"
    loaded = middleware.load(_value(middleware.cookie(session)))
    # The cookie carries the login token, not who is signed in: that takes the store.
    assert loaded.login_token == "token1" and loaded.account_id is None
    assert loaded.csrf == session.csrf and not loaded.changed


def test_a_forged_or_expired_cookie_means_a_fresh_anonymous_session() -> None:
    session = Session.fresh()
    session.sign_in("token1", LOGIN)
    cookie = _value(_middleware().cookie(session))
    forged = cookie[:-1] + ("A" if cookie[-1] != "A" else "B")
    for loaded in (_middleware().load(forged), _middleware(now=1000 + 3601).load(cookie),
                   _middleware().load("garbage")):
        assert loaded.login_token is None and not loaded.stored
        assert loaded.csrf != session.csrf and loaded.changed


def test_a_new_session_gets_a_cookie_only_once_its_token_was_handed_out() -> None:
    session = Session.fresh()
    assert not session.changed
    assert session.csrf_matches(session.data["csrf"]) and not session.changed
    session.csrf  # noqa: B018 - rendering a form reads it
    assert session.changed


def test_cookie_attributes() -> None:
    cookie = _middleware().cookie(Session.fresh())
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Max-Age=3600" in cookie
    assert "Secure" not in cookie
    assert cookie.endswith("; Secure") is False
    assert _middleware(secure=True).cookie(Session.fresh()).endswith("; Secure")
    # Served over https (a TLS listener, or a trusted proxy saying so): Secure as well.
    assert _middleware().cookie(Session.fresh(), https=True).endswith("; Secure")


def test_signing_in_and_out_starts_a_new_session() -> None:
    session = Session.fresh()
    before = (session.sid, session.csrf)
    session.sign_in("token1", LOGIN)
    assert (session.sid, session.csrf) != before and session.account_id == "acct1"
    signed_in = (session.sid, session.csrf)
    session.sign_out()
    assert (session.sid, session.csrf) != signed_in and session.account_id is None
    assert session.login_token is None


def test_an_oauth_flow_finishes_once() -> None:
    session = Session.fresh()
    session.start_flow("n1", "uid1")
    assert session.finish_flow("n2") is None
    assert session.finish_flow("n1") == "uid1"
    assert session.finish_flow("n1") is None


def test_only_the_newest_flows_are_kept() -> None:
    session = Session.fresh()
    for i in range(MAX_FLOWS + 2):
        session.start_flow(f"n{i}", f"uid{i}")
    assert session.finish_flow("n0") is None and session.finish_flow("n1") is None
    assert session.finish_flow(f"n{MAX_FLOWS + 1}") == f"uid{MAX_FLOWS + 1}"


def test_csrf_comparison() -> None:
    session = Session.fresh()
    assert session.csrf_matches(session.csrf)
    assert not session.csrf_matches(Session.fresh().csrf)
    assert not session.csrf_matches(None) and not session.csrf_matches("")
    assert not session.csrf_matches("é")


def test_a_pending_choice_belongs_to_one_integration() -> None:
    session = Session.fresh()
    session.await_choice("uid1", "https://accounts.zoho.eu", "sealed")
    assert session.pending_choice("uid2") is None
    assert session.pending_choice("uid1") == {
        "uid": "uid1", "accounts_server": "https://accounts.zoho.eu", "grant": "sealed"}
    session.clear_choice()
    assert session.any_choice() is None


class _Lookup:
    """The store's side of sessions: the tokens that are live."""

    def __init__(self, live: dict[str, SessionRecord]) -> None:
        self.live = live

    async def resolve_session(self, token: str, *, now: datetime) -> SessionRecord | None:
        return self.live.get(token)


async def _request(middleware: SessionMiddleware, cookie: str | None, *, scheme: str = "http",
                   path: str = "/integrations") -> tuple[Session, list[str]]:
    seen: list[Session] = []
    sent: list[str] = []

    async def app(scope: dict, receive: object, send: object) -> None:
        session = scope["fiscobridge.session"]
        session.csrf  # noqa: B018 - a page with a form
        seen.append(session)
        await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b""})  # type: ignore[operator]

    async def send(message: dict) -> None:
        for name, value in message.get("headers", []):
            if name == b"set-cookie":
                sent.append(value.decode())

    middleware.app = app  # type: ignore[assignment]
    headers = [(b"cookie", f"{COOKIE}={cookie}".encode())] if cookie else []
    scope = {"type": "http", "scheme": scheme, "path": path, "headers": headers,
             "method": "GET", "query_string": b""}
    await middleware(scope, None, send)  # type: ignore[arg-type]
    return seen[0], sent


async def test_who_is_signed_in_comes_from_the_store_and_an_ended_session_signs_out() -> None:
    lookup = _Lookup({"token1": LOGIN})
    middleware = SessionMiddleware(_app, SIGNER, max_age=3600, secure=False,
                                   clock=lambda: 1000.0, logins=lookup)
    session = Session.fresh()
    session.sign_in("token1", LOGIN)
    cookie = _value(middleware.cookie(session))
    live, _ = await _request(middleware, cookie)
    assert live.account_id == "acct1" and live.email == "a@firma.example"
    # Static files never ask the store.
    static, _ = await _request(middleware, cookie, path="/static/portal.css")
    assert static.account_id is None and static.login_token == "token1"
    del lookup.live["token1"]  # Sign out elsewhere, a password change, "End"
    ended, sent = await _request(middleware, cookie)
    assert ended.account_id is None and ended.login_token is None
    assert ended.pop_flash() == ENDED and sent


async def test_a_request_over_https_gets_a_secure_cookie() -> None:
    middleware = SessionMiddleware(_app, SIGNER, max_age=3600, secure=False,
                                   clock=lambda: 1000.0)
    _, plain = await _request(middleware, None)
    _, tls = await _request(middleware, None, scheme="https")
    assert plain and "Secure" not in plain[0]
    assert tls and tls[0].endswith("; Secure")
