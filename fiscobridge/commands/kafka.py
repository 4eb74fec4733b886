"""Placeholder: replaced by the module's owner."""

import click


@click.group("kafka")
def kafka() -> None:
    """Not built yet."""


@click.group("topics")
def topics() -> None:
    """Not built yet."""
