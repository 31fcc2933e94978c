"""Fixtures of the browser tests: one real `jupyter lab` (codecomp server extension, the
SmolLM2 test model) per session, Debian's Chromium through Playwright, a fresh page per test."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from labdriver import LabPage, chromium_available, launch_browser, start_lab

PLUGIN = "jupyter-codecomp:plugin"


def pytest_collection_modifyitems(items):
    """Mark the browser tests, and run them after the others (they are the slowest)."""
    here = Path(__file__).parent
    ours = [item for item in items if here in Path(str(item.fspath)).parents]
    for item in ours:
        item.add_marker(pytest.mark.browser)
    if ours:
        others = [item for item in items if item not in ours]
        items[:] = others + ours


# Playwright's sync API runs its own event loop: pytest-jupyter's autouse loop fixtures (for
# in-process servers, unused here) would try to close it. These tests start `jupyter lab` as a
# subprocess instead.
@pytest.fixture
def jp_asyncio_loop():
    yield None


@pytest.fixture
def jp_server_cleanup():
    yield


@pytest.fixture(scope="session")
def lab_server(test_model, tmp_path_factory):
    if not chromium_available():
        pytest.skip("Debian's Chromium is missing: apt-get install -y chromium (or make chromium)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # The 135M test model is rarely confident (df.he -> ad(10): 0.22): its ghost text shows at any
    # confidence here; the threshold itself is tested on the scripted engine (test_typing.py).
    server = start_lab(tmp_path_factory.mktemp("lab"), str(test_model.path),
                       args=("--CodecompConfig.min_confidence=0",))
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser():
    """Module-scoped: Playwright's loop is gone before other test modules run."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_browser(playwright)
        yield browser
        browser.close()


class Console:
    """The page's console messages and the frames sent on the codecomp WebSocket."""

    def __init__(self, page):
        self.messages: list[tuple[str, str]] = []
        self.sent: list[dict] = []
        page.on("console", lambda message: self.messages.append((message.type, message.text)))
        page.on("pageerror", lambda error: self.messages.append(("pageerror", str(error))))
        page.on("websocket", self._on_socket)

    def _on_socket(self, socket):
        if "codecomp/stream" in socket.url:
            socket.on("framesent", self._on_frame)

    def _on_frame(self, payload):
        try:
            self.sent.append(json.loads(payload))
        except (TypeError, ValueError):
            pass

    def requests(self) -> list[dict]:
        return [frame for frame in self.sent if "request" in frame]

    def problems(self) -> list[str]:
        """Errors and warnings that come from this extension (not JupyterLab's note that a
        plugin was slow to activate: a loaded machine, not a fault)."""
        return [
            f"{kind}: {text}" for kind, text in self.messages
            if kind in ("error", "warning", "pageerror") and re.search(r"codecomp", text, re.I)
            and not re.search(r"took [\d.]+ ?ms to activate", text)
        ]


@pytest.fixture
def page(browser, lab_server):
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    page = context.new_page()
    page.set_default_timeout(30000)
    yield page
    context.close()


@pytest.fixture
def console(page) -> Console:
    return Console(page)


@pytest.fixture
def lab(page, lab_server) -> LabPage:
    yield LabPage(page, lab_server)
    page.context.close()
    lab_server.shutdown_kernels()  # two cores: no idle kernels piling up between tests


@pytest.fixture
def user_settings(lab_server):
    """Set a plugin's user settings (this extension's by default) for one test; pages opened
    afterwards read them."""
    touched = set()

    def apply(plugin=PLUGIN, **values):
        touched.add(plugin)
        lab_server.put_settings(plugin, values)

    yield apply
    for plugin in touched:
        lab_server.put_settings(plugin, {})
