"""Placeholder: replaced by the module's owner."""

import click

COMMANDS: list[click.Command] = []
