"""The event loop every service process runs on.

uvloop runs the same asyncio programs on libuv, at a fraction of the CPU per callback
and per socket operation; on two cores the pipeline's throughput is bound by CPU, so
this is what every long-running process uses. Called before any loop exists.
"""

from __future__ import annotations

import asyncio

import uvloop


def use_uvloop() -> None:
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
