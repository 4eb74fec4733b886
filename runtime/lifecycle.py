"""Run a service's main coroutine until SIGTERM/SIGINT, then let it drain.

The main coroutine receives a `stop` event; it stops taking new work when the event
is set, finishes what is in flight, commits, and returns. A second signal while
draining exits at once (an operator who presses Ctrl-C twice means it).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Main = Callable[[asyncio.Event], Awaitable[None]]


def run(main: Main) -> None:
    asyncio.run(_supervise(main))


async def _supervise(main: Main) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("second signal while draining; exiting now")
            os._exit(128 + signum)
        log.info("signal received; draining", extra={"signal": signal.Signals(signum).name})
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    await main(stop)
