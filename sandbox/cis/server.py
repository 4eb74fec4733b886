"""Serving the sandbox CIS over real HTTP with uvicorn, in the foreground or a thread.

A "refuse" outage closes the listening socket, so new connections are refused as
by a service that is down, and drops idle kept-alive connections; when the outage
ends the same port is bound again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import threading
import time
from typing import Any

import uvicorn

from sandbox.cis.app import SOAP_PATHS, CisSandbox, create_app
from sandbox.cis.faults import utcnow

_TICK_SECONDS = 0.05
log = logging.getLogger("fiscobridge.sandbox.cis")


class SandboxServer:
    def __init__(self, sandbox: CisSandbox, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sandbox = sandbox
        self.host = host
        self._socket = self._bind(port)
        self.port: int = self._socket.getsockname()[1]
        self._server = uvicorn.Server(
            uvicorn.Config(
                create_app(sandbox),
                log_level="warning",
                access_log=False,
                lifespan="off",
                # Hanging requests sleep for a minute; do not wait for them on shutdown.
                timeout_graceful_shutdown=1,
            )
        )
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def url(self) -> str:
        return self.base_url + SOAP_PATHS[0]

    def _bind(self, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, port))
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        return sock

    async def serve(self) -> None:
        watcher = asyncio.create_task(self._watch_outages())
        try:
            await self._server.serve(sockets=[self._socket])
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def _watch_outages(self) -> None:
        listening = True
        while True:
            await asyncio.sleep(_TICK_SECONDS)
            if not self._server.started:
                continue
            refusing = self.sandbox.faults.refusing(utcnow())
            if refusing and listening:
                self._stop_listening()
                listening = False
            elif not refusing and not listening:
                try:
                    await self._listen_again()
                    listening = True
                except OSError as exc:
                    log.warning("cannot listen on port %d again yet (%s); retrying", self.port, exc)

    def _stop_listening(self) -> None:
        for server in self._server.servers:
            server.close()
        for connection in list(self._server.server_state.connections):
            connection.shutdown()

    async def _listen_again(self) -> None:
        config = self._server.config
        # The same factory uvicorn's startup gives the loop (typed there as a bare Protocol).
        protocol_class: Any = config.http_protocol_class
        protocol = functools.partial(
            protocol_class,
            config=config,
            server_state=self._server.server_state,
            app_state=self._server.lifespan.state,
        )
        sock = self._bind(self.port)
        try:
            server = await asyncio.get_running_loop().create_server(
                protocol, sock=sock, backlog=config.backlog
            )
        except OSError:
            sock.close()
            raise
        self._socket = sock
        self._server.servers = [server]

    def run(self) -> None:
        """Serve in the foreground until interrupted (Ctrl+C, SIGTERM)."""
        asyncio.run(self.serve())

    def start_in_thread(self, timeout: float = 10) -> None:
        self._thread = threading.Thread(
            target=self.run, name=f"cis-sandbox-{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the CIS sandbox did not start")
            time.sleep(0.01)

    def stop(self, timeout: float = 10) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
