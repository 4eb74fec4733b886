"""Placeholder: replaced by the module's owner."""

import click


@click.group("cert")
def cert() -> None:
    """Not built yet."""
