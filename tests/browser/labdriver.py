"""Drive a real JupyterLab with Debian's Chromium (never a downloaded browser).

Shared by the browser tests (tests/browser/) and benchmarks/browser_latency.py: start a
`jupyter lab` subprocess with the codecomp server extension, open notebooks, type, read the
ghost text and the Tab list.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Selectors of JupyterLab's and this extension's DOM.
# Ghost text, not the invisible spacers JupyterLab leaves for a moment where it was.
GHOST = ".jp-GhostText:not(.jp-GhostText-letterSpacer):not(.jp-GhostText-lineSpacer)"
STATUS = ".jp-codecomp-Status"
TOGGLE_BUTTON = ".jp-codecomp-ToggleButton"
COMPLETER_ITEM = ".jp-Completer .jp-Completer-item"


def chromium_available() -> bool:
    return Path(CHROMIUM).exists()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LabServer:
    """A `jupyter lab` subprocess serving `root_dir`, with the codecomp extension."""

    root_dir: Path
    model: str
    extra_args: list[str] = field(default_factory=list)
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    port: int = field(default_factory=free_port)
    log_path: Path | None = None
    process: subprocess.Popen | None = None
    env: dict[str, str] = field(default_factory=dict)
    extensions: dict[str, bool] = field(default_factory=lambda: {"jupyter_codecomp": True})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120) -> LabServer:
        env = dict(os.environ, HF_HUB_OFFLINE="1", **self.env)
        jupyter = shutil.which("jupyter", path=str(Path(sys.executable).parent)) or "jupyter"
        command = [
            jupyter, "lab", "--allow-root", "--no-browser",
            f"--ServerApp.token={self.token}",
            f"--port={self.port}", "--ServerApp.port_retries=0",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.root_dir={self.root_dir}",
            f"--ServerApp.jpserver_extensions={self.extensions!r}",
            f"--CodecompConfig.model={self.model}",
            # Lets tests reach `window.jupyterapp` (commands, shell), as galata does.
            "--LabApp.expose_app_in_browser=True",
            # No "build recommended" or news pop-ups over the page.
            "--LabApp.news_url=None",
            *self.extra_args,
        ]
        self.log_path = self.log_path or self.root_dir.parent / f"jupyter-lab-{self.port}.log"
        log = open(self.log_path, "w")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"jupyter lab exited; log:\n{self.log()}")
            try:
                self.api("GET", "api/status")
                return self
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"jupyter lab did not start in {timeout} s; log:\n{self.log()}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:] if self.log_path else ""

    def api(self, method: str, route: str, body: dict | None = None, timeout: float = 30):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"{self.url}/{route}", data=data, method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            text = response.read()
        return json.loads(text) if text else {}

    def status(self) -> dict:
        return self.api("GET", "codecomp/status")

    def wait_ready(self, timeout: float = 300) -> dict:
        deadline = time.monotonic() + timeout
        status: dict = {}
        while time.monotonic() < deadline:
            try:
                status = self.status()
            except urllib.error.HTTPError:
                status = {}
            if status.get("state") == "ready":
                return status
            if status.get("state") == "failed":
                raise RuntimeError(f"model failed to load: {status}")
            time.sleep(0.5)
        raise RuntimeError(f"model not ready after {timeout} s: {status}")

    def write_notebook(self, path: str, cells: list[str | tuple[str, str]],
                       metadata: dict | None = None) -> str:
        """Save a notebook: cells are code sources or (cell_type, source) pairs."""
        nb_cells = []
        for cell in cells:
            cell_type, source = ("code", cell) if isinstance(cell, str) else cell
            entry = {"cell_type": cell_type, "metadata": {}, "source": source,
                     "id": uuid.uuid4().hex[:8]}
            if cell_type == "code":
                entry.update(outputs=[], execution_count=None)
            nb_cells.append(entry)
        content = {
            "cells": nb_cells,
            "metadata": {
                "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                "language_info": {"name": "python"},
                **(metadata or {}),
            },
            "nbformat": 4,
            "nbformat_minor": 5,
        }
        self.api("PUT", f"api/contents/{path}",
                 {"type": "notebook", "format": "json", "content": content})
        return path

    def write_file(self, path: str, text: str) -> str:
        self.api("PUT", f"api/contents/{path}", {"type": "file", "format": "text", "content": text})
        return path

    def put_settings(self, plugin: str, values: dict) -> None:
        """User settings of a frontend plugin (read by pages opened afterwards)."""
        self.api("PUT", f"lab/api/settings/{plugin}", {"raw": json.dumps(values)})

    def shutdown_kernels(self) -> None:
        for session in self.api("GET", "api/sessions"):
            try:
                self.api("DELETE", f"api/sessions/{session['id']}")
            except urllib.error.HTTPError:
                pass

    def read_notebook(self, path: str) -> dict:
        return self.api("GET", f"api/contents/{path}?content=1")["content"]


def write_user_settings(settings_dir: Path) -> None:
    """No news pop-up over the page."""
    path = settings_dir / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"fetchNews": "false"}))


def start_lab(tmp: Path, model: str, scripted: bool = False,
              env: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> LabServer:
    """A started `jupyter lab` in `tmp` (root, user settings and workspaces of its own).
    `scripted`: the model is the scripted engine of scripted_model.py (exact ghost text)."""
    root = tmp / "root"
    root.mkdir(parents=True, exist_ok=True)
    settings_dir = tmp / "user-settings"
    write_user_settings(settings_dir)
    server = LabServer(
        root_dir=root,
        model=model,
        extra_args=[
            f"--LabApp.user_settings_dir={settings_dir}",
            f"--LabApp.workspaces_dir={tmp / 'workspaces'}",
            "--CodecompConfig.device=cpu",
            *args,
        ],
        log_path=tmp / "jupyter-lab.log",
        env={**(env or {}),
             **({"PYTHONPATH": _with_here(os.environ.get("PYTHONPATH"))} if scripted else {})},
        extensions={"jupyter_codecomp": True, **({"scripted_model": True} if scripted else {})},
    )
    return server.start()


def _with_here(path: str | None) -> str:
    here = str(Path(__file__).resolve().parent)
    return here + (os.pathsep + path if path else "")


def launch_browser(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


class LabPage:
    """A JupyterLab page showing one document."""

    def __init__(self, page, server: LabServer):
        self.page = page
        self.server = server

    # --- opening ---------------------------------------------------------------------------

    def open(self, path: str, timeout: float = 90) -> LabPage:
        workspace = uuid.uuid4().hex[:8]
        self.page.goto(
            f"{self.server.url}/lab/workspaces/{workspace}/tree/{path}?reset&token={self.server.token}",
            timeout=timeout * 1000,
        )
        self.page.wait_for_function(
            "() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
            " && window.jupyterapp.shell.currentWidget.context"
            f" && window.jupyterapp.shell.currentWidget.context.path === {json.dumps(path)}",
            timeout=timeout * 1000,
        )
        self.page.wait_for_selector(STATUS, state="attached", timeout=timeout * 1000)
        return self

    def wait_kernel_idle(self, timeout: float = 90) -> None:
        self.page.wait_for_function(
            "() => { const w = window.jupyterapp.shell.currentWidget;"
            " const k = w && w.sessionContext && w.sessionContext.session"
            " && w.sessionContext.session.kernel;"
            " return !!k && k.status === 'idle'; }",
            timeout=timeout * 1000,
        )

    def wait_status(self, state: str, timeout: float = 60) -> None:
        self.page.wait_for_selector(f'{STATUS}[data-state="{state}"]', timeout=timeout * 1000)

    def status_state(self) -> str | None:
        return self.page.get_attribute(STATUS, "data-state")

    def status_text(self) -> str:
        return self.page.inner_text(STATUS)

    # --- cells -----------------------------------------------------------------------------

    def cell_editor(self, index: int):
        return self.page.locator(".jp-Notebook .jp-Cell").nth(index).locator(".cm-content")

    def focus_cell(self, index: int, at_end: bool = True) -> None:
        """Edit a cell with the cursor at the end of its text."""
        self.cell_editor(index).click()
        if at_end:
            self.page.keyboard.press("Control+End")

    def cell_source(self, index: int) -> str:
        return self.page.evaluate(
            "(i) => window.jupyterapp.shell.currentWidget.content.widgets[i]"
            ".model.sharedModel.getSource()",
            index,
        )

    def editor_source(self) -> str:
        """The text of the editor of a file (not a notebook)."""
        return self.page.evaluate(
            "() => window.jupyterapp.shell.currentWidget.content.model.sharedModel.getSource()"
        )

    def cursor_offset(self) -> int:
        return self.page.evaluate(
            "() => { const w = window.jupyterapp.shell.currentWidget;"
            " const e = w.content.activeCell ? w.content.activeCell.editor : w.content.editor;"
            " return e.getOffsetAt(e.getCursorPosition()); }"
        )

    def run_cell(self) -> None:
        self.page.keyboard.press("Shift+Enter")

    def notebook_metadata(self) -> dict:
        return self.page.evaluate(
            "() => window.jupyterapp.shell.currentWidget.model.getMetadata('codecomp') || {}"
        )

    # --- completions -----------------------------------------------------------------------

    def ghost_text(self) -> str:
        return self.page.evaluate(
            f"() => {{ const g = document.querySelector('{GHOST}');"
            " if (!g) return '';"
            " const c = g.cloneNode(true);"
            " c.querySelectorAll('.jp-GhostText-streamingIndicator').forEach(n => n.remove());"
            " return c.textContent; }"
        )

    def wait_ghost_text(self, timeout: float = 30) -> str:
        """Wait until ghost text shows and has stopped streaming; return it."""
        self.page.wait_for_function(
            f"() => {{ const g = document.querySelector('{GHOST}');"
            " return !!g && g.textContent.trim().length > 0"
            " && !g.querySelector('.jp-GhostText-streamingIndicator'); }",
            timeout=timeout * 1000,
        )
        return self.ghost_text()

    def completer_items(self) -> list[dict]:
        return self.page.evaluate(
            f"() => Array.from(document.querySelectorAll('{COMPLETER_ITEM}')).map(li => ({{"
            " label: (li.querySelector('.jp-Completer-match') || li).textContent,"
            " type: (li.querySelector('.jp-Completer-typeExtended')"
            " || {textContent: ''}).textContent,"
            " value: li.getAttribute('data-value') }))"
        )

    def execute(self, command: str, args: dict | None = None):
        return self.page.evaluate(
            "([c, a]) => window.jupyterapp.commands.execute(c, a)", [command, args or {}]
        )


# --- the README's screenshot -------------------------------------------------------------------

SCREENSHOT_CELLS: list[str | tuple[str, str]] = [
    ("markdown", "# Monthly revenue\nLoad the sales export, clean it, and plot revenue per month."),
    "import pandas as pd\nimport matplotlib.pyplot as plt",
    "df = pd.read_csv('sales.csv', parse_dates=['date'])\n"
    "df['month'] = df['date'].dt.to_period('M')\ndf.head()",
    "",
]
SCREENSHOT_TYPED = "monthly = df.groupby("


def save_ghost_screenshot(server: LabServer, browser, out: Path, timeout: float = 120) -> str:
    """Open a small analysis notebook, type the start of a line, wait for the ghost text to
    finish streaming and save a screenshot of it to `out`; return the ghost text."""
    path = server.write_notebook(f"screenshot-{uuid.uuid4().hex[:6]}.ipynb", SCREENSHOT_CELLS)
    context = browser.new_context(viewport={"width": 1100, "height": 560}, device_scale_factor=1)
    try:
        lab = LabPage(context.new_page(), server).open(path)
        lab.wait_status("ready", timeout=timeout)
        lab.execute("application:toggle-left-area")
        lab.focus_cell(len(SCREENSHOT_CELLS) - 1)
        lab.page.keyboard.type(SCREENSHOT_TYPED, delay=60)
        ghost = lab.wait_ghost_text(timeout)
        lab.page.mouse.move(0, 0)
        out.parent.mkdir(parents=True, exist_ok=True)
        lab.page.screenshot(path=str(out))
        return ghost
    finally:
        context.close()
        server.shutdown_kernels()
