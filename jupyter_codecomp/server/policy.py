"""The instructor's policy: which requests may be completed, and whose kernel they may read.

The server decides, never the client. One check (`Policy.decide`) serves every route: /complete,
/context, the WebSocket stream, and /status?path=. It fails closed:

- `enabled = False` turns everything off (reason "server").
- `path` is normalised against the contents root: surrounding spaces, a `#fragment` or `?query`,
  `./`, `a/../`, a trailing `/`, backslashes and the notebook's absolute path all name the same
  file. A path that leaves the root is a 400, not a decision.
- While the policy restricts anything (`disabled_paths` is set, or the server has seen a
  notebook with the metadata switch off since it started), a request must name a file that
  exists under the root ("no_path", "not_found"): the server cannot tell which notebook a
  request without one comes from. A server with no policy at all answers such requests.
- `disabled_paths` globs are matched case-insensitively (a case-insensitive disk opens
  `Exams/` too) against the path, its folders (a pattern naming a folder covers what is in
  it), its URL-decoded spelling and its real path behind symlinks ("disabled_paths").
- A notebook whose metadata says `"codecomp": {"enabled": false}` is off ("notebook"); one whose
  metadata cannot be read is off too ("unreadable").
- A `kernel_id` is read only when no session ties that kernel to a notebook that is off, and
  the kernel's sessions include this notebook (a kernel without a session: only while nothing
  is restricted). Otherwise the completion goes on without variables and the reply says why
  (`context.kernel`: "no_session", "other_notebook", "disabled_notebook"), as for a dead kernel:
  a refusal would protect nothing more (no variable is read either way) and would break
  completion while JupyterLab moves a session after a rename.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import time
from dataclasses import dataclass
from urllib.parse import unquote

from jupyter_core.utils import ensure_async

from ..config import CodecompConfig

METADATA_TTL_SECONDS = 2.0  # a notebook is re-read at most this often (once per change)
MAX_CACHED_NOTEBOOKS = 1000


class PathError(ValueError):
    """A `path` the server refuses to interpret (the handlers answer 400 naming `path`)."""


@dataclass(frozen=True)
class Decision:
    path: str | None  # the file under the contents root, normalised; None when none resolves
    disabled: str | None = None  # why no completion; None: complete
    kernel_id: str | None = None  # the kernel whose variables may be read
    kernel: str | None = None  # why the named kernel is not read (reported as context.kernel)


class Policy:
    def __init__(self, settings: CodecompConfig, contents_manager, session_manager=None):
        self.settings = settings
        self.contents = contents_manager
        self.sessions = session_manager
        root = getattr(contents_manager, "root_dir", None)
        self.root = os.path.realpath(root) if root else None
        # The root as configured and as resolved: a client may send either absolute spelling.
        self._roots = sorted({r.rstrip("/") for r in (root, self.root) if r}, key=len, reverse=True)
        # path -> (checked at, last_modified, reason or None)
        self._files: dict[str, tuple[float, object, str | None]] = {}
        self.switch_seen = False  # a notebook with the metadata switch off was read

    @property
    def restricting(self) -> bool:
        return bool(self.settings.disabled_paths) or self.switch_seen

    async def decide(self, path: str | None, kernel_id: str | None = None) -> Decision:
        rel = self.normalise(path)  # first: a bad path is a 400 whatever the settings
        if not self.settings.enabled:
            return Decision(rel, "server")
        reason = "no_path" if rel is None else await self._file_reason(rel)
        if reason in ("no_path", "not_found") and not self.restricting:
            reason = None
        if reason:
            return Decision(rel, reason)
        if not kernel_id:
            return Decision(rel)
        kernel = await self._kernel_reason(rel, kernel_id)
        return Decision(rel, None, None if kernel else kernel_id, kernel)

    def normalise(self, path: str | None) -> str | None:
        """The path relative to the contents root, in one spelling; None when there is none."""
        if path is None:
            return None
        if "\x00" in path:
            raise PathError("path: contains a NUL character")
        text = path.strip().split("#", 1)[0].split("?", 1)[0].strip().replace("\\", "/")
        for root in self._roots:
            if text == root or text.startswith(root + "/"):
                text = text[len(root):]
                break
        # A leading "/" is the Jupyter API's root, not the disk's (contents paths are relative).
        text = posixpath.normpath(text.lstrip("/")) if text.strip("/") else ""
        if text == ".." or text.startswith("../"):
            raise PathError("path: leaves the server's root folder")
        return None if text in ("", ".") else text

    def path_disabled(self, rel: str) -> bool:
        spellings = {rel, posixpath.normpath(unquote(rel)).lstrip("/")}
        real = self._real_relative(rel)
        if real:
            spellings.add(real)
        for spelling in spellings:
            parts = spelling.lower().split("/")
            names = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
            for pattern in self.settings.disabled_paths:
                pattern = pattern.strip().strip("/").lower()
                if pattern and any(fnmatch.fnmatchcase(name, pattern) for name in names):
                    return True
        return False

    def _real_relative(self, rel: str) -> str | None:
        if not self.root:
            return None
        try:
            real = os.path.realpath(os.path.join(self.root, rel))
        except (OSError, ValueError):  # a name the disk refuses: no real path to check
            return None
        if real == self.root or not real.startswith(self.root.rstrip("/") + "/"):
            return None
        return os.path.relpath(real, self.root).replace(os.sep, "/")

    async def _file_reason(self, rel: str) -> str | None:
        if self.path_disabled(rel):
            return "disabled_paths"
        now = time.monotonic()
        cached = self._files.get(rel)
        if cached and now - cached[0] < METADATA_TTL_SECONDS:
            return cached[2]
        try:
            stat = await ensure_async(self.contents.get(rel, content=False))
        except Exception:  # noqa: BLE001 (404, permission, a name the disk refuses: no file)
            return "not_found"
        if stat.get("type") == "directory":
            return "not_found"
        if cached and cached[1] == stat.get("last_modified"):
            self._remember(rel, now, cached[1], cached[2])
            return cached[2]
        reason = None
        if stat.get("type") == "notebook":
            reason = await self._notebook_reason(rel)
        self._remember(rel, now, stat.get("last_modified"), reason)
        return reason

    async def _notebook_reason(self, rel: str) -> str | None:
        try:
            model = await ensure_async(self.contents.get(rel, content=True, type="notebook"))
            metadata = model["content"]["metadata"]
            switch = metadata.get("codecomp", {})
            enabled = switch.get("enabled", True) if isinstance(switch, dict) else False
        except Exception:  # noqa: BLE001 (an unreadable notebook is off: the policy fails closed)
            return "unreadable"
        if enabled is not True:
            self.switch_seen = True
            return "notebook"
        return None

    def _remember(self, rel: str, now: float, modified: object, reason: str | None) -> None:
        if len(self._files) > MAX_CACHED_NOTEBOOKS:
            self._files.clear()
        self._files[rel] = (now, modified, reason)

    async def _kernel_reason(self, rel: str | None, kernel_id: str) -> str | None:
        try:
            sessions = await ensure_async(self.sessions.list_sessions()) if self.sessions else []
        except Exception:  # noqa: BLE001 (no session list: no proof whose kernel it is)
            sessions = []
        paths = set()
        for session in sessions:
            if (session.get("kernel") or {}).get("id") != kernel_id:
                continue
            try:
                paths.add(self.normalise(session.get("path")))
            except PathError:
                return "other_notebook"
        paths.discard(None)
        for path in sorted(paths):
            if await self._file_reason(path) not in (None, "not_found"):
                return "disabled_notebook"  # an exam's kernel, whichever notebook asks
        if not paths:
            return "no_session" if self.restricting else None
        return None if rel in paths else "other_notebook"
