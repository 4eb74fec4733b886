"""Placeholder: replaced by the module's owner."""

import click


@click.group("secrets")
def secrets() -> None:
    """Not built yet."""
