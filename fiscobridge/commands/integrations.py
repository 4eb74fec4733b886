"""Placeholder: replaced by the module's owner."""

import click


@click.group("integrations")
def integrations() -> None:
    """Not built yet."""
