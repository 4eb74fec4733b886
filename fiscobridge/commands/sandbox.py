"""`fiscobridge sandbox ...` — the local stand-ins for the outside world."""

from __future__ import annotations

import click

from fiscobridge.commands import sandbox_certs, sandbox_cis, sandbox_zoho


@click.group("sandbox")
def sandbox() -> None:
    """Local stand-ins for the tax authority and Zoho Books (tests, demos, benchmarks)."""


for _module in (sandbox_certs, sandbox_cis, sandbox_zoho):
    for _command in _module.COMMANDS:
        sandbox.add_command(_command)
