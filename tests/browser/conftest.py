"""Headless Debian Chromium driven by Playwright against a real `t2v serve`, with htmx served locally.

Every page records console errors and uncaught exceptions; a test that leaves any behind fails.
Screenshots go to test-artifacts/ (git-ignored), to be looked at, not only diffed.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from scripts.harness.server import REPO, Server
from webapp.pages.htmx import HTMX_LOCAL_PATH

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = REPO / "test-artifacts"



@dataclass
class Console:
    """What the page said on its console, and what it threw."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@pytest.fixture(scope="session")
def browser() -> Iterator:
    """One Chromium for the session (never a downloaded build)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `bash scripts/install-test-deps.sh` (or `make test-deps`)")
    if not HTMX_LOCAL_PATH.is_file():
        subprocess.run([sys.executable, str(REPO / "scripts" / "fetch_htmx.py")], check=True)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def open_page(browser) -> Iterator[Callable[..., tuple]]:
    """Open a page (desktop size unless told) that records console errors; checked at the end."""
    opened: list[tuple] = []

    def make(*, width: int = 1280, height: int = 900, **kw):
        context = browser.new_context(viewport={"width": width, "height": height}, **kw)
        page = context.new_page()
        page.set_default_timeout(15_000)
        console = Console()
        page.on("console", lambda m: (console.errors if m.type == "error" else console.warnings).append(
            f"{m.type}: {m.text} @ {m.location.get('url', '')}") if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: console.errors.append(f"uncaught: {e}"))
        opened.append((context, page, console))
        return page, console

    yield make
    problems = [e for _, _, c in opened for e in c.errors]
    for context, _, _ in opened:
        context.close()
    assert not problems, "console errors:\n" + "\n".join(problems)


@pytest.fixture
def shot() -> Callable:
    """Save a full-page screenshot as test-artifacts/<name>.png."""
    ARTIFACTS.mkdir(exist_ok=True)

    def save(page, name: str, *, full_page: bool = True) -> Path:
        path = ARTIFACTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=full_page)
        return path

    return save


@pytest.fixture
def web(server_factory: Callable[..., Server]) -> Server:
    """`t2v serve` with the local runner and the tiny model, htmx from the local copy."""
    return server_factory(env={"T2V_HTMX_SOURCE": "local"})


@pytest.fixture
def idle_web(server_factory: Callable[..., Server]) -> Server:
    """`t2v serve` with no runner (cluster backend, no controller): videos stay queued, so states are stable."""
    return server_factory(env={"T2V_HTMX_SOURCE": "local", "T2V_BACKEND": "kubernetes",
                               "T2V_AUTH_REQUIRED": "false"})
