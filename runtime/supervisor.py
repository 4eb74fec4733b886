"""Run several processes as one: restart the ones that crash, stop all on request.

Used by `fiscobridge dev`; in production a real supervisor (systemd, Kubernetes)
does this job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("fiscobridge.supervisor")


@dataclass
class Child:
    name: str
    argv: Sequence[str]
    env: dict[str, str] = field(default_factory=dict)
    log_path: Path | None = None
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0

    async def start(self) -> None:
        # A log file opens in microseconds; the child inherits the descriptor.
        out = open(self.log_path, "ab") if self.log_path else None  # noqa: ASYNC230
        self.process = await asyncio.create_subprocess_exec(
            *self.argv,
            env={**os.environ, **self.env},
            stdout=out or sys.stdout,
            stderr=asyncio.subprocess.STDOUT,
            # Ctrl-C reaches the supervisor only; it stops the children in order.
            start_new_session=True,
        )
        if out:
            out.close()


class Supervisor:
    def __init__(self, children: Sequence[Child], max_backoff: float = 30.0) -> None:
        self.children = list(children)
        self.max_backoff = max_backoff
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        for child in self.children:
            await child.start()
            log.info("started", extra={"child": child.name, "pid": child.process.pid})  # type: ignore[union-attr]
        watchers = [asyncio.create_task(self._watch(c)) for c in self.children]
        await self._stopping.wait()
        await self._stop_all()
        for w in watchers:
            w.cancel()

    def stop(self) -> None:
        self._stopping.set()

    async def _watch(self, child: Child) -> None:
        backoff = 1.0
        while not self._stopping.is_set():
            assert child.process is not None
            started = time.monotonic()
            code = await child.process.wait()
            if self._stopping.is_set():
                return
            child.restarts += 1
            print(
                f"[dev] {child.name} exited with code {code}; restarting in {backoff:.0f}s "
                f"(restart #{child.restarts})",
                file=sys.stderr,
                flush=True,
            )
            if time.monotonic() - started > 60:
                backoff = 1.0  # it ran fine for a while: this is a new problem
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), backoff)
            if self._stopping.is_set():
                return
            backoff = min(backoff * 2, self.max_backoff)
            await child.start()

    async def _stop_all(self, grace: float = 20.0) -> None:
        # Reverse start order: producers of work stop before the services they feed.
        for child in reversed(self.children):
            if child.process and child.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.process.send_signal(signal.SIGTERM)
        for child in reversed(self.children):
            if child.process is None:
                continue
            try:
                await asyncio.wait_for(child.process.wait(), grace)
            except TimeoutError:
                log.warning("did not stop in time; killing", extra={"child": child.name})
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.process.pid, signal.SIGKILL)
                await child.process.wait()
