"""The Client Portal in a real browser: Debian's chromium driven by Playwright.

The portal runs as in tests/integration (uvicorn on a free port, the real store, broker
and Zoho sandbox; see test_portal_helpers.py), with a mail catcher (aiosmtpd) as its SMTP
server. Chromium is the system's (`.ci/apt-packages.txt`), launched through
`executable_path`: nothing is downloaded at run time. Each page a test visits can be
checked with the vendored axe-core (`assets/axe-core/`) and walked with the keyboard.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import uvicorn
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from fiscobridge.mailcatcher import MailCatcher
from runtime.ops import QuietServer
from tests.integration.test_portal_helpers import (  # noqa: F401 - fixtures
    USER_PASSWORD,
    MakePortal,
    PortalUnderTest,
    make_portal_fixture,
    producer_fixture,
)

CHROMIUM = os.environ.get("FISCOBRIDGE_CHROMIUM", "/usr/bin/chromium")
ASSETS = Path(__file__).parent / "assets"
AXE_FILE = ASSETS / "axe-core" / "axe.min.js"
AXE_SHA256 = "29348999450cdf2849a8e70b7912fc2da85a849da39c0d0d5394f51d4a9ed95c"
# Where `fiscobridge portal screenshots` wants the pictures; unset: not taken.
SCREENSHOTS = os.environ.get("FISCOBRIDGE_SCREENSHOTS_DIR")
# Impacts that fail a page: axe's "serious" and "critical".
FAILING_IMPACTS = ("serious", "critical")


def _axe_source() -> str:
    data = AXE_FILE.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    assert digest == AXE_SHA256, f"{AXE_FILE} is not the pinned axe-core ({digest})"
    return data.decode("utf-8")


@pytest.fixture(scope="session")
def axe_source() -> str:
    return _axe_source()


@pytest_asyncio.fixture(name="chromium", scope="session", loop_scope="session")
async def chromium_fixture() -> AsyncIterator[Browser]:
    if not os.path.exists(CHROMIUM):  # noqa: ASYNC240 - once per session
        pytest.fail(f"{CHROMIUM} is missing: scripts/setup.sh installs Debian's chromium")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            # Containers (CI runs as root) have no user namespaces for chromium's sandbox.
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        yield browser
        await browser.close()


@dataclass
class Mailbox:
    url: str
    catcher: MailCatcher

    @property
    def smtp_url(self) -> str:
        return f"smtp://127.0.0.1:{self.catcher.smtp_port}"

    async def wait_for(self, to: str, *, after: int = 0, timeout: float = 10) -> Any:
        """The newest mail to `to` with an id above `after`."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for mail in reversed(self.catcher.mails):
                if to in mail.to and mail.id > after:
                    return mail
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"no mail to {to} within {timeout}s")
            await asyncio.sleep(0.05)

    def last_id(self) -> int:
        return self.catcher.mails[-1].id if self.catcher.mails else 0


@pytest_asyncio.fixture(name="mailbox", scope="session", loop_scope="session")
async def mailbox_fixture() -> AsyncIterator[Mailbox]:
    catcher = MailCatcher()
    await catcher.start_smtp()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    server = QuietServer(uvicorn.Config(catcher.app(), log_level="warning",
                                        access_log=False, lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        assert not task.done(), task.result()
        await asyncio.sleep(0.01)
    yield Mailbox(f"http://127.0.0.1:{sock.getsockname()[1]}", catcher)
    server.should_exit = True
    await task
    await catcher.close()


@pytest_asyncio.fixture(name="portal", loop_scope="session")
async def portal_fixture(make_portal: MakePortal, mailbox: Mailbox) -> PortalUnderTest:
    return await make_portal(smtp_url=mailbox.smtp_url)


NewContext = Callable[..., Awaitable[BrowserContext]]


@pytest_asyncio.fixture(name="new_context", loop_scope="session")
async def new_context_fixture(chromium: Browser) -> AsyncIterator[NewContext]:
    """`await new_context()`: a fresh browser profile (cookies of its own)."""
    made: list[BrowserContext] = []

    async def make(**options: Any) -> BrowserContext:
        context = await chromium.new_context(viewport={"width": 1200, "height": 900},
                                             **options)
        context.set_default_timeout(15_000)
        made.append(context)
        return context

    yield make
    for context in made:
        await context.close()


@pytest_asyncio.fixture(name="page", loop_scope="session")
async def page_fixture(new_context: NewContext) -> Page:
    return await (await new_context()).new_page()


async def axe_check(page: Page, axe_source: str) -> None:
    """No serious or critical axe-core violation on the page as it is now."""
    if not await page.evaluate("() => typeof window.axe !== 'undefined'"):
        # evaluate() runs through the DevTools protocol: the portal's CSP (no inline
        # scripts) stays in force for the page itself.
        await page.evaluate(axe_source)
    result = await page.evaluate(
        "async () => await axe.run(document, {resultTypes: ['violations']})")
    bad = [v for v in result["violations"] if v.get("impact") in FAILING_IMPACTS]
    assert not bad, f"{page.url}: " + "; ".join(
        f"{v['id']} ({v['impact']}): {v['help']} at "
        + ", ".join(str(n["target"]) for n in v["nodes"][:5]) for v in bad)


_INTERACTIVE = """() => Array.from(document.querySelectorAll(
    'a[href], button, input:not([type=hidden]), select, textarea, summary'))
  .filter(e => !e.disabled && e.offsetParent !== null
    && !e.closest('details:not([open]) > :not(summary)'))
  .map(e => e.outerHTML.slice(0, 120))"""


async def keyboard_walk(page: Page) -> None:
    """Tab reaches every visible, enabled control of the page, each once per round."""
    wanted = await page.evaluate(_INTERACTIVE)
    await page.evaluate("() => { document.activeElement && document.activeElement.blur(); }")
    reached: list[str] = []
    # A date input takes a Tab per field (day, month, year): room for those.
    for _ in range(4 * len(wanted) + 10):
        await page.keyboard.press("Tab")
        focused = await page.evaluate(
            "() => document.activeElement && document.activeElement !== document.body"
            " ? document.activeElement.outerHTML.slice(0, 120) : null")
        if focused is None or (reached and focused == reached[0]):
            break
        reached.append(focused)
    missing = [html for html in wanted if html not in reached]
    assert not missing, f"{page.url}: not reachable with Tab: {missing}"


async def screenshot(page: Page, name: str) -> None:
    if SCREENSHOTS:
        target = Path(SCREENSHOTS)
        await asyncio.to_thread(target.mkdir, parents=True, exist_ok=True)
        await page.screenshot(path=str(target / f"{name}.png"), full_page=True)


@dataclass
class Visit:
    """Opens the portal's pages and checks each one it is asked to (axe, keyboard)."""

    portal: PortalUnderTest
    axe_source: str

    async def check(self, page: Page, *, keyboard: bool = True) -> None:
        await axe_check(page, self.axe_source)
        if keyboard:
            await keyboard_walk(page)


@pytest.fixture(name="visit")
def visit_fixture(portal: PortalUnderTest, axe_source: str) -> Visit:
    return Visit(portal, axe_source)


__all__ = ["USER_PASSWORD", "Mailbox", "Visit", "axe_check", "keyboard_walk", "screenshot"]
