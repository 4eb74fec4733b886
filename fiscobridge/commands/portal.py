"""`fiscobridge portal` — the Client Portal's developer tools.

    fiscobridge portal screenshots [--out docs/screenshots]
    fiscobridge portal mail-catcher [--smtp-port 8025] [--http-port 8026]

`screenshots` runs the browser tests (tests/browser: Debian's chromium, the real store,
broker and Zoho sandbox) with FISCOBRIDGE_SCREENSHOTS_DIR set, so each main page they
walk through is written there as PNG; it needs a source checkout and
`scripts/setup.sh` (chromium, the test broker's jars).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[2]


@click.group("portal")
def portal() -> None:
    """The Client Portal's developer tools: screenshots, the local mail catcher."""


@portal.command("screenshots")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              default=ROOT / "docs" / "screenshots", show_default="docs/screenshots")
def screenshots(out: Path) -> None:
    """Walk the portal in Chromium and write its main pages as PNG files to OUT."""
    tests = ROOT / "tests" / "browser"
    if not tests.is_dir():
        raise click.ClickException(f"{tests} is missing: screenshots need a source checkout")
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):
        old.unlink()  # a page that is no longer shot does not linger
    env = {**os.environ, "FISCOBRIDGE_SCREENSHOTS_DIR": str(out)}
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests)]
    result = subprocess.run(argv, cwd=ROOT, env=env, check=False)
    if result.returncode != 0:
        raise click.ClickException(f"the browser tests failed (exit {result.returncode})")
    written = sorted(p.name for p in out.glob("*.png"))
    click.echo(f"{len(written)} screenshots in {out}: {', '.join(written)}")


@portal.command("mail-catcher")
@click.option("--smtp-port", default=8025, show_default=True)
@click.option("--http-port", default=8026, show_default=True)
def mail_catcher(smtp_port: int, http_port: int) -> None:
    """A local SMTP server that keeps mail in memory and shows it on a web page."""
    import asyncio

    from fiscobridge.mailcatcher import serve

    asyncio.run(serve(smtp_port, http_port))
