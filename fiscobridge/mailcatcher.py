"""A local mail catcher for development and tests: an SMTP server (aiosmtpd) that keeps
what it receives in memory, and a small web page to read it.

    python -m fiscobridge.mailcatcher --smtp-port 8025 --http-port 8026
    (or `fiscobridge portal mail-catcher`; `fiscobridge dev` starts one)

http://127.0.0.1:<http-port>/ lists the mails, newest first; /messages/<id> shows one
with its links clickable; /messages.json gives them all as JSON (tests read that).
It listens on loopback only and accepts mail for any recipient: it never relays.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import itertools
import re
from collections import deque
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

KEEP = 500  # the newest mails kept; older ones are dropped
_LINK = re.compile(r"https?://[^\s<>\"']+")


@dataclass(frozen=True)
class CaughtMail:
    id: int
    received_at: str
    mail_from: str
    to: list[str]
    subject: str
    body: str


class MailCatcher:
    def __init__(self, keep: int = KEEP) -> None:
        self.mails: deque[CaughtMail] = deque(maxlen=keep)
        self._ids = itertools.count(1)
        self._servers: list[asyncio.base_events.Server] = []
        self.smtp_port = 0

    # aiosmtpd handler hook: called for every accepted message.
    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        message = message_from_bytes(raw, policy=policy.default)
        assert isinstance(message, EmailMessage)
        part = message.get_body(preferencelist=("plain", "html"))
        body = part.get_content() if part is not None else ""
        self.mails.append(CaughtMail(
            id=next(self._ids), received_at=datetime.now(UTC).isoformat(timespec="seconds"),
            mail_from=str(envelope.mail_from or ""), to=[str(t) for t in envelope.rcpt_tos],
            subject=str(message.get("Subject", "")), body=str(body),
        ))
        return "250 OK"

    async def start_smtp(self, host: str = "127.0.0.1", port: int = 0) -> int:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: SMTP(self, hostname="mailcatcher"),
                                          host=host, port=port)
        self._servers.append(server)
        self.smtp_port = int(server.sockets[0].getsockname()[1])
        return self.smtp_port

    async def close(self) -> None:
        for server in self._servers:
            server.close()
            await server.wait_closed()
        self._servers.clear()

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/", self._index),
            Route("/messages.json", self._json),
            Route("/messages/{id:int}", self._one),
        ])

    async def _json(self, request: Request) -> Response:
        return JSONResponse([asdict(mail) for mail in reversed(self.mails)])

    async def _index(self, request: Request) -> Response:
        rows = "".join(
            f"<tr><td>{m.received_at}</td><td>{html.escape(', '.join(m.to))}</td>"
            f"<td><a href=\"/messages/{m.id}\">{html.escape(m.subject or '(no subject)')}</a>"
            "</td></tr>"
            for m in reversed(self.mails)
        ) or "<tr><td colspan=\"3\">No mail yet.</td></tr>"
        return HTMLResponse(_page("Mail catcher", (
            f"<p>SMTP on 127.0.0.1:{self.smtp_port}; the newest {KEEP} mails are kept in "
            "memory.</p><table><thead><tr><th scope=\"col\">Received (UTC)</th>"
            "<th scope=\"col\">To</th><th scope=\"col\">Subject</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>")))

    async def _one(self, request: Request) -> Response:
        wanted = int(request.path_params["id"])
        mail = next((m for m in self.mails if m.id == wanted), None)
        if mail is None:
            return HTMLResponse(_page("Not found", "<p>No such mail.</p>"), 404)
        body = _LINK.sub(lambda m: f"<a href=\"{m.group(0)}\">{m.group(0)}</a>",
                         html.escape(mail.body, quote=False))
        return HTMLResponse(_page(mail.subject, (
            f"<p>From {html.escape(mail.mail_from)} to {html.escape(', '.join(mail.to))}, "
            f"{mail.received_at}</p><pre>{body}</pre><p><a href=\"/\">All mail</a></p>")))


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>"
            f"{html.escape(title)}</title></head><body><main><h1>{html.escape(title)}</h1>"
            f"{body}</main></body></html>")


async def serve(smtp_port: int, http_port: int, host: str = "127.0.0.1") -> None:
    import uvicorn

    catcher = MailCatcher()
    await catcher.start_smtp(host, smtp_port)
    print(f"mail catcher: SMTP on {host}:{catcher.smtp_port}, mail at http://{host}:{http_port}/",
          flush=True)
    server = uvicorn.Server(uvicorn.Config(catcher.app(), host=host, port=http_port,
                                           log_level="warning", access_log=False,
                                           lifespan="off"))
    try:
        await server.serve()
    finally:
        await catcher.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smtp-port", type=int, default=8025)
    parser.add_argument("--http-port", type=int, default=8026)
    args: Any = parser.parse_args(argv)
    asyncio.run(serve(args.smtp_port, args.http_port))


if __name__ == "__main__":
    main()
