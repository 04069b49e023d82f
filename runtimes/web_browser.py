"""Headless Chromium (Debian's `chromium`, driven by Playwright's Python package — no browser download) for
the page's parity and bench modes, and for the browser tests.

    with headless_browser() as browser:
        result = run_page_mode(browser, "http://127.0.0.1:8000/?mode=bench&threads=2", timeout_s=300)
"""
from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

CHROMIUM_CANDIDATES: tuple[str, ...] = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
# No sandbox (root in CI/containers); no GPU on this VM; nothing reaches out to Google's services (the
# machine's network is closed and every refused connection costs start-up time).
CHROMIUM_ARGS: tuple[str, ...] = ("--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                                  "--disable-background-networking", "--disable-component-update", "--disable-sync")
FINAL_STATES = ("done", "refused", "error", "ready")


class BrowserUnavailable(RuntimeError):
    """No Chromium executable or no Playwright package; the message names the install step."""


def chromium_path() -> str:
    """$EDGECLICK_CHROMIUM, else Debian's chromium.

    Raises:
        BrowserUnavailable: none found.
    """
    env = os.environ.get("EDGECLICK_CHROMIUM")
    for candidate in ((env,) if env else ()) + CHROMIUM_CANDIDATES:
        if candidate and Path(candidate).is_file():
            return candidate
    found = shutil.which("chromium")
    if found:
        return found
    raise BrowserUnavailable("no Chromium found: install Debian's package (`apt-get install -y chromium`) or set EDGECLICK_CHROMIUM")


def browser_missing() -> str:
    """Why the browser cannot run here ("" when it can): for skip reasons."""
    try:
        chromium_path()
        import playwright.sync_api  # noqa: F401
    except (BrowserUnavailable, ImportError) as exc:
        return str(exc)
    return ""


@contextmanager
def headless_browser(extra_args: tuple[str, ...] = ()) -> Iterator[Any]:
    """A Playwright Browser over headless Chromium with a fresh profile; closed on exit."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        raise BrowserUnavailable("the playwright package is missing: pip install -e '.[test]' (it drives Debian's chromium)") from exc
    executable = chromium_path()
    with sync_playwright() as p:
        # Playwright gives each launch a new, empty user-data directory.
        browser = p.chromium.launch(executable_path=executable, headless=True, args=list(CHROMIUM_ARGS + extra_args))
        try:
            yield browser
        finally:
            browser.close()


def wait_for_state(page: Any, timeout_s: float, states: tuple[str, ...] = FINAL_STATES) -> str:
    """Wait until the page's body[data-state] is one of `states`; returns it."""
    selector = ",".join(f'body[data-state="{s}"]' for s in states)
    page.wait_for_selector(selector, state="attached", timeout=timeout_s * 1000)
    return str(page.evaluate("window.edgeclick.state"))


def run_page_mode(browser: Any, url: str, timeout_s: float = 600) -> dict[str, Any]:
    """Open `url` (a ?mode=parity or ?mode=bench page) in a fresh context and return its result JSON.

    Raises:
        RuntimeError: the page refused or failed (its visible message is in the error).
    """
    context = browser.new_context()
    try:
        page = context.new_page()
        console: list[str] = []
        page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
        page.goto(url)
        state = wait_for_state(page, timeout_s, ("done", "refused", "error"))
        if state != "done":
            message = page.evaluate("window.edgeclick.message")
            raise RuntimeError(f"the page ended in state {state!r}: {message}" + (f"\nconsole: {console[-5:]}" if console else ""))
        return dict(page.evaluate("window.edgeclick.result"))
    finally:
        context.close()
