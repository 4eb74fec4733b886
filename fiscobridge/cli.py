"""`fiscobridge` — the one command for operators and developers.

Each command lives in its own module under `fiscobridge.commands`; this file only
assembles them, importing lazily so `fiscobridge --help` stays fast.
"""

from __future__ import annotations

import importlib

import click

# (module under fiscobridge.commands, attribute) — each attribute is a click command or group.
COMMANDS: tuple[tuple[str, str], ...] = (
    ("kafka", "kafka"),
    ("kafka", "topics"),
    ("sandbox", "sandbox"),
    ("cert", "cert"),
    ("integrations", "integrations"),
    ("accounts", "accounts"),
    ("secrets", "secrets"),
    ("state", "rebuild_state"),
    ("schemas", "schemas"),
    ("db", "db"),
    ("run", "run"),
    ("dev", "dev"),
    ("portal", "portal"),
    ("demo", "demo"),
    ("preview", "preview"),
    ("replay", "replay"),
    ("dlq", "dlq"),
    ("invoices", "invoices"),
)


class LazyGroup(click.Group):
    def _load(self) -> None:
        if getattr(self, "_loaded", False):
            return
        self._loaded = True
        for module_name, attr in COMMANDS:
            module = importlib.import_module(f"fiscobridge.commands.{module_name}")
            self.add_command(getattr(module, attr))

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        self._load()
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup)
@click.pass_context
def cli(ctx: click.Context) -> None:
    """FiscoBridge: invoice fiscalization bridge."""
    if ctx.invoked_subcommand not in (None, "dev"):
        # A running `fiscobridge dev` is found through <home>/dev.json when no variable
        # names a broker (fiscobridge/devfile.py); dev itself decides for itself.
        from fiscobridge import devfile

        devfile.apply_to_environment()


def main() -> None:
    cli()
