"""Placeholder: replaced by the module's owner."""

import click


@click.group("rebuild-state")
def rebuild_state() -> None:
    """Not built yet."""
