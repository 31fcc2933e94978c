"""Save a screenshot of ghost text to docs/screenshot.png (used by the README).

With JUPYTER_CODECOMP_SCREENSHOT_MODEL set (a model name such as `qwen2.5-coder-0.5b`, or a
built model's folder) a server on that model takes it and writes docs/screenshot.png. Otherwise
the session's test model takes it, into docs/screenshot.png only when that file does not exist
yet (a plain test run never replaces the committed picture), else into a temporary folder.

    JUPYTER_CODECOMP_SCREENSHOT_MODEL=qwen2.5-coder-0.5b pytest tests/browser/test_screenshot.py
"""

from __future__ import annotations

import os
from pathlib import Path

from labdriver import save_ghost_screenshot, start_lab

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "screenshot.png"


def test_screenshot_of_ghost_text(browser, request, tmp_path_factory):
    model = os.environ.get("JUPYTER_CODECOMP_SCREENSHOT_MODEL")
    if model:
        out = SCREENSHOT
        server = start_lab(tmp_path_factory.mktemp("screenshot"), model)
        try:
            server.wait_ready(timeout=600)
            ghost = save_ghost_screenshot(server, browser, out)
        finally:
            server.stop()
    else:
        shot = tmp_path_factory.mktemp("shot") / "screenshot.png"
        out = shot if SCREENSHOT.exists() else SCREENSHOT
        ghost = save_ghost_screenshot(request.getfixturevalue("lab_server"), browser, out)
    assert ghost.strip()
    assert out.stat().st_size > 10_000
