"""Serving the Zoho Books sandbox: four origins (com/eu x accounts/api) on one event loop.

The loop runs in a thread of its own, in tests and on the command line alike, so the
uvicorn servers never touch signal handlers and a test's blocking call cannot stall
the sandbox.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import uvicorn

from sandbox.zoho.app import ROLES, create_app
from sandbox.zoho.state import BooksState, DataCentre, Settings
from sandbox.zoho.webhooks import WebhookSender

DATA_CENTRES = (("com", "us"), ("eu", "eu"))


class ZohoSandbox:
    """`port=0`: four free ports; `port=P`: P..P+3 (com accounts, com api, eu accounts, eu api)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        seed: int | None = None,
        settings: Settings | None = None,
    ):
        self.host = host
        self._sockets: dict[tuple[str, str], socket.socket] = {}
        data_centres = []
        offset = 0
        for key, location in DATA_CENTRES:
            dc = DataCentre(key, location)
            for role in ROLES:
                sock = self._bind(port + offset if port else 0)
                offset += 1
                self._sockets[(key, role)] = sock
                url = f"http://{host}:{sock.getsockname()[1]}"
                if role == "accounts":
                    dc.accounts_url = url
                else:
                    dc.api_url = url
            data_centres.append(dc)
        self.books = BooksState(data_centres, settings)
        self.webhooks = WebhookSender(self.books, seed)
        self._servers: list[uvicorn.Server] = []
        self._thread: threading.Thread | None = None
        self._started = threading.Event()

    def _bind(self, port: int) -> socket.socket:
        # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted sockets whose
        # proto says TCP, and without it every answer waits ~40 ms for a delayed ACK.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, port))
        sock.setblocking(False)
        return sock

    @property
    def urls(self) -> dict[str, dict[str, str]]:
        return {
            key: {"accounts": dc.accounts_url, "api": dc.api_url, "location": dc.location}
            for key, dc in self.books.data_centres.items()
        }

    @property
    def admin_url(self) -> str:
        return self.books.data_centres["com"].accounts_url + "/_sandbox"

    async def serve(self) -> None:
        await self.webhooks.start()
        self._servers = [
            uvicorn.Server(
                uvicorn.Config(
                    create_app(self.books, self.webhooks, self.books.data_centres[key], role),
                    log_level="warning",
                    access_log=False,
                    lifespan="off",
                    timeout_graceful_shutdown=1,
                )
            )
            for key, role in self._sockets
        ]
        tasks = [
            asyncio.create_task(server.serve(sockets=[sock]))
            for server, sock in zip(self._servers, self._sockets.values(), strict=True)
        ]
        while not all(server.started for server in self._servers):
            if any(task.done() for task in tasks):
                break
            await asyncio.sleep(0.01)
        self._started.set()
        try:
            await asyncio.gather(*tasks)
        finally:
            await self.webhooks.stop()

    def start_in_thread(self, timeout: float = 10) -> None:
        self._thread = threading.Thread(
            target=asyncio.run, args=(self.serve(),), name="zoho-sandbox", daemon=True
        )
        self._thread.start()
        if not self._started.wait(timeout) or not all(s.started for s in self._servers):
            self.stop()
            raise RuntimeError("the Zoho Books sandbox did not start")

    def stop(self, timeout: float = 10) -> None:
        for server in self._servers:
            server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> ZohoSandbox:
        self.start_in_thread()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def wait_forever() -> None:
    """Block the main thread until Ctrl+C (the sandbox serves from its own thread)."""
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return
