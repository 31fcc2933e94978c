"""What the handlers call: policy, kernel variables, supersession, and the service run on a
worker thread so that the server's event loop never waits for the model."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

from .. import __version__
from ..completion.context import Variables
from ..completion.protocol import CompletionRequest
from ..completion.service import CompletionService, ServiceLoader
from ..config import CodecompConfig
from ..errors import CodecompError
from ..kernel.inspector import format_variables
from .kernel_variables import KernelVariables
from .policy import Policy

# Requests waiting for the engine beyond this get 503: memory stays bounded under load.
MAX_PENDING = 32


class Completer:
    def __init__(self, settings: CodecompConfig, serverapp):
        self.settings = settings
        self.loader = ServiceLoader(settings.service_settings())
        self.policy = Policy(settings, serverapp.contents_manager)
        self.kernel_variables = KernelVariables(serverapp.kernel_manager)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="codecomp")
        self._running: dict[str, threading.Event] = {}
        self.pending = 0

    def service(self) -> CompletionService:
        return self.loader.get()

    async def variables(self, request: CompletionRequest) -> Variables:
        if not request.kernel_id or not self.settings.kernel_variables:
            return Variables()
        result = await self.kernel_variables.get(request.kernel_id)
        return Variables(format_variables(result.variables), len(result.variables), result.status)

    def supersede(self, key: str | None, cancel: threading.Event | None = None) -> threading.Event:
        """Register a new request's cancel flag; an older request with the same key is cancelled."""
        cancel = cancel or threading.Event()
        if key:
            older = self._running.pop(key, None)
            if older is not None:
                older.set()
            self._running[key] = cancel
        return cancel

    def finished(self, key: str | None, cancel: threading.Event) -> None:
        if key and self._running.get(key) is cancel:
            del self._running[key]

    async def run(self, fn, *args, **kwargs):
        if self.pending >= MAX_PENDING:
            raise Busy()
        self.pending += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))
        finally:
            self.pending -= 1

    def status(self) -> dict:
        state = self.loader.status()
        if not self.settings.enabled:
            state["state"] = "disabled"
        return {
            **state,
            "enabled": self.settings.enabled,
            "disabled_paths": list(self.settings.disabled_paths),
            "version": __version__,
            "pending": self.pending,
        }

    async def close(self) -> None:
        for cancel in self._running.values():
            cancel.set()
        await self.kernel_variables.close()
        self._executor.shutdown(wait=False, cancel_futures=True)


class Busy(CodecompError):
    def __init__(self):
        super().__init__("too many completion requests are waiting", fix="retry shortly")
