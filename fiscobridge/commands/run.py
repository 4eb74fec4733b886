"""`fiscobridge run <service>` — one pipeline service in the foreground.

Each service drains on SIGTERM: it stops taking work, finishes what is in flight,
commits, and exits 0.
"""

from __future__ import annotations

import importlib

import click

from runtime import lifecycle
from runtime.eventloop import use_uvloop
from runtime.heap import freeze_live_objects
from runtime.logging import configure

# name -> module with `async def main(stop: asyncio.Event)`; the fiscalizer is a faust
# worker and brings its own loop and signal handling (`def run()`).
SERVICES = {
    "ingest": "services.ingest.service",
    "fiscalizer": "services.fiscalizer.service",
    "reporter": "services.reporter.service",
    "portal": "services.portal.service",
    "poller": "services.poller.service",
    "writeback": "services.writeback.service",
}


@click.command("run")
@click.argument("service", type=click.Choice(sorted(SERVICES)))
@click.option("--log-level", default="INFO", show_default=True)
def run(service: str, log_level: str) -> None:
    """Run one service until SIGTERM/SIGINT."""
    configure(service, log_level)
    use_uvloop()
    module = importlib.import_module(SERVICES[service])
    freeze_live_objects()
    if hasattr(module, "run"):
        module.run()
    else:
        lifecycle.run(module.main)
