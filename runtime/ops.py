"""Operational endpoints every service serves: /healthz, /readyz, /metrics.

Liveness says the process runs its loop; readiness says it can do its job (connected
to Kafka and the store). Mountable into a service's own ASGI app (ingest) or served on
its own port by workers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator

import prometheus_client
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

ReadinessCheck = Callable[[], Awaitable[dict[str, bool]]]


def routes(ready: ReadinessCheck) -> list[BaseRoute]:
    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        try:
            checks = await asyncio.wait_for(ready(), timeout=5)
        except Exception as exc:  # a readiness probe answers, it never raises
            return JSONResponse({"ready": False, "error": str(exc)}, status_code=503)
        ok = all(checks.values())
        return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)

    async def metrics(_: Request) -> Response:
        return Response(
            prometheus_client.generate_latest(), media_type=prometheus_client.CONTENT_TYPE_LATEST
        )

    return [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
    ]


class QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the service that embeds it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class OpsServer:
    def __init__(self, ready: ReadinessCheck, host: str = "127.0.0.1", port: int = 0) -> None:
        app = Starlette(routes=routes(ready))
        self._server = QuietServer(
            uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                           lifespan="off")
        )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()  # surfaces a bind error
            await asyncio.sleep(0.01)

    @property
    def port(self) -> int:
        return int(self._server.servers[0].sockets[0].getsockname()[1])

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task:
            await self._task
