"""Where completion is switched off: server-wide, by path glob (exams), or by notebook metadata."""

from __future__ import annotations

import fnmatch
import time

from jupyter_core.utils import ensure_async

from ..config import CodecompConfig

METADATA_TTL_SECONDS = 2.0


class Policy:
    def __init__(self, settings: CodecompConfig, contents_manager):
        self.settings = settings
        self.contents = contents_manager
        # path -> (checked at, last_modified, enabled): a notebook is read once per change,
        # not once per keystroke.
        self._notebooks: dict[str, tuple[float, object, bool]] = {}

    async def disabled_reason(self, path: str | None) -> str | None:
        if not self.settings.enabled:
            return "server"
        if not path:
            return None
        clean = path.lstrip("/")
        if any(fnmatch.fnmatch(clean, pattern.lstrip("/")) for pattern in self.settings.disabled_paths):
            return "disabled_paths"
        if clean.endswith(".ipynb") and not await self._notebook_enabled(clean):
            return "notebook"
        return None

    async def _notebook_enabled(self, path: str) -> bool:
        now = time.monotonic()
        cached = self._notebooks.get(path)
        if cached and now - cached[0] < METADATA_TTL_SECONDS:
            return cached[2]
        try:
            stat = await ensure_async(self.contents.get(path, content=False))
            if cached and cached[1] == stat.get("last_modified"):
                self._notebooks[path] = (now, cached[1], cached[2])
                return cached[2]
            model = await ensure_async(self.contents.get(path, content=True, type="notebook"))
        except Exception:  # an unsaved or unreadable notebook: only the request decides
            return True
        metadata = (model.get("content") or {}).get("metadata") or {}
        enabled = (metadata.get("codecomp") or {}).get("enabled", True) is not False
        if len(self._notebooks) > 1000:
            self._notebooks.clear()
        self._notebooks[path] = (now, model.get("last_modified"), enabled)
        return enabled
