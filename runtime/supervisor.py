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
        try:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv,
                env={**os.environ, **self.env},
                stdout=out or sys.stdout,
                stderr=asyncio.subprocess.STDOUT,
                # Ctrl-C reaches the supervisor only; it stops the children in order.
                start_new_session=True,
            )
        finally:
            if out:
                out.close()


def describe_exit(code: int) -> str:
    """How a child ended, as the restart message says it: `crashed (killed by SIGKILL)`."""
    if code == 0:
        return "exited (code 0)"
    if code > 0:
        return f"crashed (exit code {code})"
    try:
        return f"crashed (killed by {signal.Signals(-code).name})"
    except ValueError:
        return f"crashed (killed by signal {-code})"


class Supervisor:
    """Starts `children` in order, restarts any that exits (after `initial_backoff`
    seconds, doubling per quick crash up to `max_backoff`; back to `initial_backoff` once
    a child ran `reset_after` seconds), and on `stop()` stops them in reverse order:
    SIGTERM to each one's process group, SIGKILL after `grace` seconds."""

    def __init__(
        self,
        children: Sequence[Child],
        max_backoff: float = 30.0,
        *,
        initial_backoff: float = 1.0,
        reset_after: float = 60.0,
        grace: float = 20.0,
    ) -> None:
        self.children = list(children)
        self.max_backoff = max_backoff
        self.initial_backoff = initial_backoff
        self.reset_after = reset_after
        self.grace = grace
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        watchers: list[asyncio.Task[None]] = []
        try:
            for child in self.children:
                await child.start()
                assert child.process is not None
                log.info("started", extra={"child": child.name, "pid": child.process.pid})
                watchers.append(asyncio.create_task(self._watch(child)))
            await self._stopping.wait()
        finally:
            # No restart may race the shutdown: a start cut short kills what it spawned.
            for w in watchers:
                w.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)
            await self._stop_all()

    def stop(self) -> None:
        self._stopping.set()

    @staticmethod
    def _say(message: str, child: Child) -> None:
        # Printed for the operator watching `fiscobridge dev`; info-level in the log so an
        # unconfigured logging module does not print it a second time.
        print(f"[dev] {child.name} {message}", file=sys.stderr, flush=True)
        log.info(message, extra={"child": child.name})

    async def _watch(self, child: Child) -> None:
        backoff = self.initial_backoff
        started = time.monotonic()
        while not self._stopping.is_set():
            assert child.process is not None
            code = await child.process.wait()
            self._kill_group(child)  # anything it left behind
            if self._stopping.is_set():
                return
            if time.monotonic() - started >= self.reset_after:
                backoff = self.initial_backoff  # it ran fine for a while: a new problem
            child.restarts += 1
            self._say(f"{describe_exit(code)}; restarting in {backoff:g}s "
                      f"(restart #{child.restarts})", child)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), backoff)
            if self._stopping.is_set():
                return
            backoff = min(backoff * 2, self.max_backoff)
            while True:
                try:
                    await child.start()
                    break
                except OSError as e:
                    self._say(f"could not be restarted ({e}); trying again in {backoff:g}s",
                              child)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), backoff)
                if self._stopping.is_set():
                    return
                backoff = min(backoff * 2, self.max_backoff)
            started = time.monotonic()
            assert child.process is not None
            self._say(f"restarted as pid {child.process.pid} (restart #{child.restarts})", child)

    @staticmethod
    def _kill_group(child: Child) -> None:
        # The child leads a session of its own; its group outlives it only in leftovers.
        if child.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.process.pid, signal.SIGKILL)

    async def _stop_all(self) -> None:
        # Reverse start order, one at a time: producers of work drain before the services
        # they feed, and the sandboxes outlive every service that talks to them.
        for child in reversed(self.children):
            process = child.process
            if process is None:
                continue
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGTERM)
                try:
                    await asyncio.wait_for(process.wait(), self.grace)
                except TimeoutError:
                    self._say(f"did not stop within {self.grace:g}s; killing", child)
                    self._kill_group(child)
                    await process.wait()
            self._kill_group(child)
