"""Live variables of a notebook's kernel, read through the server's kernel manager.

One silent `user_expressions` request per kernel state, not per keystroke: the result is cached per
kernel and marked stale when the kernel runs something for another client (an `execute_input`, and
the `idle` that ends any foreign execute request) or restarts (its messages carry a new session id,
or the restarter calls back). The request is `execute(code="", silent=True, store_history=False,
user_expressions={...})`: the execution count, history, `_` and `Out` stay as they were, and the
probe keeps its names in fresh dicts (kernel/variables.py).

A busy kernel is asked through a kernel subshell when it supports them (ipykernel >= 7 lists
"kernel subshells" in `supported_features`): one subshell per kernel, created on the control
channel the first time it is needed, answers while the main shell runs a cell. Without subshells a
busy kernel is answered from the cache. Nothing here raises: every failure becomes a status.

Per kernel, one role each: `KernelChannel` (transport, kernel_channel.py), `NamespaceVersion`
(staleness), `Subshell` (negotiation) and `KernelReader` (the read policy). The server's kernel
object is only read, never written: after a subshell read, jupyter_server (which does not know
subshells) may show the kernel idle while its main shell still runs a cell.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..kernel.variables import KERNEL_EXPRESSION, InspectorError, Variable, variables_from_reply
from .kernel_channel import KernelChannel, ReplyTimeout

log = logging.getLogger(__name__)

REPLY_TIMEOUT_SECONDS = 2.0
EXPRESSION_KEY = "codecomp"
STATUSES = ("fresh", "cached", "busy-cache", "busy-empty", "dead", "unknown", "restarting", "error")
# Foreign execute requests tracked at most (a client that never sends its idle cannot grow it).
RUNNING_KEPT = 100


@dataclass
class VariablesResult:
    variables: list[Variable] = field(default_factory=list)
    status: str = "fresh"  # one of STATUSES


class NamespaceVersion:
    """A number that changes whenever the kernel's namespace may have: a cached read made at
    version v is current while the version is still v. Fed every message of the kernel."""

    def __init__(self, on_restart: Callable[[], None]):
        self.count = 0
        self.kernel_session: str | None = None  # the kernel process's session id
        self.running: set[str] = set()  # execute requests of other clients not finished yet
        self._on_restart = on_restart

    def observe(self, msg: dict, own: bool) -> None:
        session = msg.get("header", {}).get("session")
        if session and self.kernel_session is not None and session != self.kernel_session:
            self.restarted()
        self.kernel_session = session or self.kernel_session
        kind = msg.get("msg_type") or msg.get("header", {}).get("msg_type")
        parent = msg.get("parent_header") or {}
        if kind == "execute_input":
            self.count += 1
            if len(self.running) > RUNNING_KEPT:
                self.running.clear()
            self.running.add(parent.get("msg_id"))
        elif kind == "status":
            state = msg.get("content", {}).get("execution_state")
            if state in ("starting", "restarting"):
                self.restarted()
            elif state == "idle" and not own and parent.get("msg_type") == "execute_request":
                self.count += 1  # a cell (or another client's silent execute) ended
                self.running.discard(parent.get("msg_id"))

    def main_shell_idle(self) -> None:
        """Our request on the main shell was answered: everything queued before it has ended."""
        self.running.clear()

    def restarted(self) -> None:
        """A new kernel process: a new namespace, no cell running."""
        self.count += 1
        self.running.clear()
        self._on_restart()


class Subshell:
    """A kernel subshell for reads while the main shell is busy, asked for once per process."""

    def __init__(self, channel: KernelChannel):
        self.channel = channel
        self.supported: bool | None = None  # None: not asked yet
        self.id: str | None = None

    async def get(self, deadline: float) -> str | None:
        """The subshell's id, created on first use; None when the kernel has no subshells.
        Raises ReplyTimeout when the control channel does not answer in time."""
        if self.id is not None or self.supported is False:
            return self.id
        if self.supported is None:
            try:
                info = await self.channel.reply(self.channel.send(
                    "control", "kernel_info_request", {}), deadline - time.monotonic())
            except ReplyTimeout:  # a kernel that does not answer on its control channel
                self.supported = False
                raise
            features = info.get("content", {}).get("supported_features") or []
            self.supported = "kernel subshells" in features
            if not self.supported:
                return None
        reply = await self.channel.reply(self.channel.send(
            "control", "create_subshell_request", {}), deadline - time.monotonic())
        content = reply.get("content", {})
        if content.get("status") == "ok" and content.get("subshell_id"):
            self.id = content["subshell_id"]
        else:
            self.supported = False
        return self.id

    def forget(self) -> None:
        """The kernel restarted: its subshells are gone, and it may be another version."""
        self.id, self.supported = None, None

    async def delete(self) -> None:
        if self.id is not None:
            with contextlib.suppress(Exception, ReplyTimeout):
                await self.channel.reply(self.channel.send(
                    "control", "delete_subshell_request", {"subshell_id": self.id}), 0.5)


class KernelReader:
    """The read policy for one kernel: the cache while the namespace version is unchanged; else
    the main shell when the kernel is idle, a subshell when it is busy, the cache as a last
    resort."""

    def __init__(self, kernel, timeout: float):
        self.kernel = kernel
        self.timeout = timeout
        self.version = NamespaceVersion(on_restart=self._forget_process)
        self.channel = KernelChannel(kernel, self.version.observe)
        self.subshell = Subshell(self.channel)
        self.variables: list[Variable] | None = None
        self._read_at = -1  # the version the cached variables were asked for at
        self.main_pending: asyncio.Future | None = None  # our request queued on the main shell
        self.lock = asyncio.Lock()
        with contextlib.suppress(Exception):
            kernel.add_restart_callback(self.version.restarted, "restart")

    @property
    def stale(self) -> bool:
        return self.variables is None or self._read_at != self.version.count

    def _forget_process(self) -> None:
        self.variables = None
        self.subshell.forget()
        self.main_pending = None  # a request to the old process: its reply never comes

    def _busy(self, state: str | None) -> bool:
        pending = self.main_pending is not None and not self.main_pending.done()
        return state == "busy" or pending or bool(self.version.running)

    def _inspect(self, subshell_id: str | None) -> asyncio.Future:
        content = {
            "code": "",
            "silent": True,
            "store_history": False,
            "user_expressions": {EXPRESSION_KEY: KERNEL_EXPRESSION},
            "allow_stdin": False,
            "stop_on_error": False,
        }
        return self.channel.send("shell", "execute_request", content, subshell_id)

    async def read(self, state: str | None) -> VariablesResult:
        """`state`: the server's view of the kernel (read, never written)."""
        async with self.lock:
            if not self.stale:
                return VariablesResult(self.variables, "cached")
            deadline = time.monotonic() + 2 * self.timeout
            try:
                if not self._busy(state):
                    mark = self.version.count  # anything that runs from now on makes it stale
                    self.main_pending = self._inspect(None)
                    try:
                        reply = await self.channel.reply(self.main_pending, self.timeout, keep=True)
                    except ReplyTimeout:
                        pass  # queued behind a cell: try a subshell, or the cache
                    else:
                        self.version.main_shell_idle()
                        return self._store(reply, mark)
                subshell = await self.subshell.get(deadline)
                if subshell is None:
                    return self._from_cache()
                mark = self.version.count
                reply = await self.channel.reply(
                    self._inspect(subshell), min(self.timeout, deadline - time.monotonic()))
                if reply.get("content", {}).get("status") != "ok":
                    self.subshell.id = None  # e.g. an unknown subshell after a restart
                return self._store(reply, mark)
            except ReplyTimeout:
                return self._from_cache()
            except InspectorError as exc:
                log.warning("codecomp: kernel variables unreadable: %s", exc)
                return VariablesResult(self.variables or [], "error")

    def _store(self, reply: dict, mark: int) -> VariablesResult:
        variables = variables_from_reply(reply.get("content", {}), EXPRESSION_KEY)
        self.variables, self._read_at = variables, mark
        return VariablesResult(variables, "fresh")

    def _from_cache(self) -> VariablesResult:
        if self.variables is None:
            return VariablesResult(status="busy-empty")
        return VariablesResult(self.variables, "busy-cache")

    async def close(self, delete_subshell: bool = False) -> None:
        if delete_subshell:
            await self.subshell.delete()
        with contextlib.suppress(Exception):
            self.kernel.remove_restart_callback(self.version.restarted, "restart")
        await self.channel.close()


class KernelVariables:
    """The variables of the server's kernels, one reader and cache per live kernel."""

    def __init__(self, kernel_manager, timeout: float = REPLY_TIMEOUT_SECONDS):
        self.kernel_manager = kernel_manager
        self.timeout = timeout
        self._readers: dict[str, KernelReader] = {}

    async def get(self, kernel_id: str) -> VariablesResult:
        try:
            return await self._get(kernel_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a broken channel must not break completion
            log.warning("codecomp: kernel variables failed: %s", exc, exc_info=True)
            await self._drop(kernel_id)
            return VariablesResult(status="error")

    def _kernel(self, kernel_id: str):
        try:
            known = kernel_id in self.kernel_manager
            return self.kernel_manager.get_kernel(kernel_id) if known else None
        except Exception as exc:  # KeyError, or jupyter_server's HTTPError(404)
            if not isinstance(exc, KeyError) and getattr(exc, "status_code", None) != 404:
                raise
            return None

    async def _get(self, kernel_id: str) -> VariablesResult:
        await self._forget_gone_kernels()
        kernel = self._kernel(kernel_id)
        if kernel is None:
            await self._drop(kernel_id)
            return VariablesResult(status="unknown")
        state = getattr(kernel, "execution_state", None)
        if state == "dead":
            await self._drop(kernel_id)
            return VariablesResult(status="dead")
        reader = self._readers.get(kernel_id)
        if state in ("restarting", "autorestarting") or getattr(kernel, "shutting_down", False):
            if reader is not None:
                reader.version.restarted()
            return VariablesResult(status="restarting")
        if not await kernel.is_alive():
            await self._drop(kernel_id)
            return VariablesResult(status="dead")
        reader = self._readers.get(kernel_id)  # again: another call may have made one
        if reader is not None and reader.kernel is not kernel:
            await self._drop(kernel_id)
            reader = None
        if reader is None:
            reader = self._readers[kernel_id] = KernelReader(kernel, self.timeout)
        result = await reader.read(state)
        if state == "starting" and result.status.startswith("busy"):
            # The server marks a kernel "starting" until it has seen a status message: one that
            # answers is ready, one that does not is still starting.
            result.status = "restarting"
        return result

    async def _forget_gone_kernels(self) -> None:
        try:
            alive = set(self.kernel_manager.list_kernel_ids())
        except Exception:  # pragma: no cover
            return
        for kernel_id in [k for k in self._readers if k not in alive]:
            await self._drop(kernel_id)

    async def _drop(self, kernel_id: str) -> None:
        reader = self._readers.pop(kernel_id, None)
        if reader is not None:
            await reader.close()

    async def close(self) -> None:
        readers = list(self._readers.values())
        self._readers.clear()
        await asyncio.gather(
            *(r.close(delete_subshell=True) for r in readers), return_exceptions=True)
