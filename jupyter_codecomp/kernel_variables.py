"""Live variables of a notebook's kernel, read through the server's kernel manager.

One silent `user_expressions` request per kernel state, not per keystroke: the result is cached
and marked stale when the kernel runs something (an `execute_input` or a restart on its iopub
channel). A busy kernel is answered from the cache. Nothing here raises: every failure becomes a
status the completion reply carries ("unknown", "dead", "restarting", "busy-cache", ...).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from .inspector import KERNEL_EXPRESSION, InspectorError, Variable, variables_from_reply

log = logging.getLogger(__name__)

REPLY_TIMEOUT_SECONDS = 2.0


@dataclass
class VariablesResult:
    variables: list[Variable] = field(default_factory=list)
    status: str = "fresh"  # fresh, cached, busy-cache, busy-empty, dead, unknown, restarting, error
    detail: str = ""


@dataclass
class _KernelEntry:
    client: object
    watcher: asyncio.Task | None = None
    variables: list[Variable] | None = None
    stale: bool = True
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class KernelVariables:
    def __init__(self, kernel_manager):
        self.kernel_manager = kernel_manager
        self._entries: dict[str, _KernelEntry] = {}

    async def get(self, kernel_id: str) -> VariablesResult:
        self._forget_gone_kernels()
        if kernel_id not in self.kernel_manager:
            return VariablesResult(status="unknown")
        kernel = self.kernel_manager.get_kernel(kernel_id)
        state = getattr(kernel, "execution_state", "unknown")
        if state == "dead":
            self._drop(kernel_id)
            return VariablesResult(status="dead")
        if state in ("restarting", "starting", "autorestarting"):
            return VariablesResult(status="restarting")
        entry = self._entries.get(kernel_id)
        if entry is None:
            entry = self._entries[kernel_id] = self._connect(kernel_id, kernel)
        if not entry.stale and entry.variables is not None:
            return VariablesResult(entry.variables, "cached")
        if state == "busy":
            return self._from_cache(entry)
        async with entry.lock:
            if not entry.stale and entry.variables is not None:
                return VariablesResult(entry.variables, "cached")
            return await self._refresh(entry)

    async def _refresh(self, entry: _KernelEntry) -> VariablesResult:
        client = entry.client
        # Cleared before asking, so an execution that starts meanwhile marks it stale again.
        entry.stale = False
        msg_id = client.execute("", silent=True, store_history=False,
                                user_expressions={"codecomp": KERNEL_EXPRESSION})
        try:
            reply = await asyncio.wait_for(self._reply(client, msg_id), REPLY_TIMEOUT_SECONDS)
            entry.variables = variables_from_reply(reply["content"])
            return VariablesResult(entry.variables, "fresh")
        except asyncio.TimeoutError:
            entry.stale = True  # the kernel got busy: ask again next time
            return self._from_cache(entry)
        except InspectorError as exc:
            log.warning("codecomp: kernel variables unreadable: %s", exc)
            return VariablesResult(entry.variables or [], "error", str(exc))
        except Exception as exc:  # a broken channel must not break completion
            entry.stale = True
            return VariablesResult(entry.variables or [], "error", str(exc))

    @staticmethod
    async def _reply(client, msg_id: str) -> dict:
        while True:
            msg = await client.get_shell_msg()
            if msg["parent_header"].get("msg_id") == msg_id:
                return msg

    @staticmethod
    def _from_cache(entry: _KernelEntry) -> VariablesResult:
        if entry.variables is None:
            return VariablesResult(status="busy-empty")
        return VariablesResult(entry.variables, "busy-cache")

    def _connect(self, kernel_id: str, kernel) -> _KernelEntry:
        client = kernel.client()
        client.start_channels()
        entry = _KernelEntry(client)
        entry.watcher = asyncio.ensure_future(self._watch(entry))
        return entry

    @staticmethod
    async def _watch(entry: _KernelEntry) -> None:
        """Mark the cache stale when anything runs in the kernel, or it restarts."""
        while True:
            try:
                msg = await entry.client.get_iopub_msg()
            except asyncio.CancelledError:
                raise
            except Exception:
                await asyncio.sleep(0.5)
                continue
            kind = msg["msg_type"]
            if kind == "execute_input" or (
                kind == "status" and msg["content"].get("execution_state") == "starting"
            ):
                entry.stale = True

    def _forget_gone_kernels(self) -> None:
        alive = set(self.kernel_manager.list_kernel_ids())
        for kernel_id in [k for k in self._entries if k not in alive]:
            self._drop(kernel_id)

    def _drop(self, kernel_id: str) -> None:
        entry = self._entries.pop(kernel_id, None)
        if entry is not None:
            if entry.watcher is not None:
                entry.watcher.cancel()
            try:
                entry.client.stop_channels()
            except Exception:
                pass

    async def close(self) -> None:
        for kernel_id in list(self._entries):
            self._drop(kernel_id)
