"""The load driver's HTTP client against a real uvicorn server: statuses, kept-alive
connections, a connection the server closed while idle, silence, and refusal."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import uvicorn
import uvloop
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from runtime.ops import QuietServer
from sandbox.poster import NO_ANSWER, WebhookPoster

SEEN: list[tuple[str, bytes, str | None, tuple[str, int] | None]] = []


async def hook(request: Request) -> Response:
    body = await request.body()
    SEEN.append((request.url.path, body, request.headers.get("x-sig"), request.client and
                 (request.client.host, request.client.port)))
    if body == b"slow":
        await asyncio.sleep(1)
    if body == b"close":
        return JSONResponse({"bye": True}, status_code=410, headers={"Connection": "close"})
    return JSONResponse({"ok": True}, status_code=202)


@contextlib.asynccontextmanager
async def serving() -> AsyncIterator[str]:
    app = Starlette(routes=[Route("/hook/{name}", hook, methods=["POST"])])
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off",
                            timeout_keep_alive=1)
    served = QuietServer(config)
    task = asyncio.create_task(served.serve())
    while not served.started:  # noqa: ASYNC110 - uvicorn offers no event for this
        await asyncio.sleep(0.01)
    port = served.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    served.should_exit = True
    await task


@pytest_asyncio.fixture(loop_scope="session")
async def server() -> AsyncIterator[str]:
    async with serving() as url:
        yield url


async def test_posts_body_and_headers_and_returns_the_status(server: str) -> None:
    SEEN.clear()
    async with WebhookPoster() as poster:
        status = await poster.post(f"{server}/hook/a", {"X-Sig": "abc"}, b'{"n": 1}')
    assert status == 202
    assert SEEN[0][:3] == ("/hook/a", b'{"n": 1}', "abc")


async def test_sequential_posts_share_one_kept_alive_connection(server: str) -> None:
    SEEN.clear()
    async with WebhookPoster() as poster:
        for n in range(5):
            assert await poster.post(f"{server}/hook/b", {}, str(n).encode()) == 202
    assert len({client for *_, client in SEEN}) == 1


async def test_concurrent_posts_each_get_their_own_answer(server: str) -> None:
    SEEN.clear()
    async with WebhookPoster() as poster:
        statuses = await asyncio.gather(
            *(poster.post(f"{server}/hook/c", {}, b"close" if n % 3 == 0 else b"x")
              for n in range(30))
        )
    assert statuses == [410 if n % 3 == 0 else 202 for n in range(30)]
    assert len(SEEN) == 30


async def test_a_connection_the_server_closed_while_idle_is_replaced(server: str) -> None:
    SEEN.clear()
    async with WebhookPoster() as poster:
        assert await poster.post(f"{server}/hook/d", {}, b"1") == 202
        await asyncio.sleep(1.5)  # past the server's keep-alive timeout: it hangs up
        assert await poster.post(f"{server}/hook/d", {}, b"2") == 202
    assert [body for _, body, *_ in SEEN] == [b"1", b"2"]
    assert SEEN[0][3] != SEEN[1][3]


async def test_connection_close_from_the_server_is_honoured(server: str) -> None:
    SEEN.clear()
    async with WebhookPoster() as poster:
        assert await poster.post(f"{server}/hook/e", {}, b"close") == 410
        assert await poster.post(f"{server}/hook/e", {}, b"after") == 202
    assert SEEN[0][3] != SEEN[1][3]


async def test_no_answer_within_the_timeout_is_no_answer(server: str) -> None:
    async with WebhookPoster(timeout=0.3) as poster:
        assert await poster.post(f"{server}/hook/f", {}, b"slow") == NO_ANSWER


async def test_a_refused_connection_is_no_answer() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with WebhookPoster() as poster:
        assert await poster.post(f"http://127.0.0.1:{port}/hook", {}, b"x") == NO_ANSWER


async def test_only_http_urls_are_accepted() -> None:
    async with WebhookPoster() as poster:
        with pytest.raises(ValueError, match="not an http"):
            await poster.post("ftp://example.com/x", {}, b"")


def test_on_uvloop_as_the_benchmark_drives_it() -> None:
    async def exchange() -> list[int]:
        async with serving() as url, WebhookPoster() as poster:
            return list(await asyncio.gather(
                *(poster.post(f"{url}/hook/g", {}, b"x") for _ in range(10))
            ))

    # Its own thread: this test's event loop must be uvloop's, not the session's.
    statuses: list[int] = []
    runner = threading.Thread(target=lambda: statuses.extend(uvloop.run(exchange())))
    runner.start()
    runner.join(30)
    assert statuses == [202] * 10
