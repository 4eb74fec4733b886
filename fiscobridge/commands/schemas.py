"""`fiscobridge schemas export|check` — the checked-in JSON Schema files."""

from __future__ import annotations

import click

from schemas import export as exporter


@click.group("schemas")
def schemas() -> None:
    """JSON Schema files of the event contracts."""


@schemas.command("export")
def export_cmd() -> None:
    """Regenerate schemas/json/ from the models."""
    for name in exporter.write():
        click.echo(f"wrote schemas/json/{name}")


@schemas.command("check")
def check_cmd() -> None:
    """Fail when schemas/json/ is out of date."""
    stale = exporter.stale()
    if stale:
        raise click.ClickException(
            f"stale JSON Schema files: {', '.join(stale)}; run `fiscobridge schemas export`"
        )
    click.echo("schemas/json is up to date")
