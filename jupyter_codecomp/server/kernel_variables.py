"""Live variables of a notebook's kernel, read through the server's kernel manager.

One silent `user_expressions` request per kernel state, not per keystroke: the result is cached per
kernel and marked stale when the kernel runs something for another client (an `execute_input`, and
the `idle` that ends any non-silent or foreign execute request) or restarts (its messages carry a
new session id, or the restarter calls back). The request is `execute(code="", silent=True,
store_history=False, user_expressions={...})`: the execution count, history, `_` and `Out` stay as
they were, and the evaluated expression keeps its names in a fresh dict.

A busy kernel is asked through a kernel subshell when it supports them (ipykernel >= 7 lists
"kernel subshells" in `supported_features`): one subshell per kernel, created on the control
channel the first time it is needed, answers while the main shell runs a cell. Without subshells a
busy kernel is answered from the cache. Nothing here raises: every failure becomes a status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

from jupyter_client.session import Session

from ..kernel.variables import KERNEL_EXPRESSION, InspectorError, Variable, variables_from_reply

log = logging.getLogger(__name__)

REPLY_TIMEOUT_SECONDS = 2.0
EXPRESSION_KEY = "codecomp"
STATUSES = ("fresh", "cached", "busy-cache", "busy-empty", "dead", "unknown", "restarting", "error")


@dataclass
class VariablesResult:
    variables: list[Variable] = field(default_factory=list)
    status: str = "fresh"  # one of STATUSES
    detail: str = ""


class _Timeout(Exception):
    pass


class _Connection:
    """One client per kernel: shell, control and iopub channels, a reader per channel."""

    def __init__(self, kernel, timeout: float):
        self.kernel = kernel
        self.timeout = timeout
        # A session of our own: `kernel.client()` clones the manager's, session id included, and
        # the kernel routes shell replies by that id, so two clients sharing it steal each other's
        # replies.
        session = Session(config=kernel.session.config, key=kernel.session.key,
                          signature_scheme=kernel.session.signature_scheme, username="codecomp")
        self.client = kernel.client(session=session)
        self.client.start_channels(shell=True, iopub=True, stdin=False, hb=False, control=True)
        self.variables: list[Variable] | None = None
        self._changes = 0  # bumped by every event that may change the namespace
        self._read_at = -1  # the value of _changes when the cached variables were asked for
        self.kernel_session: str | None = None  # the kernel process's session id
        self.subshell_id: str | None = None
        self.subshells: bool | None = None  # None: not asked yet
        self.main_pending: asyncio.Future | None = None
        self.running: set[str] = set()  # execute requests of other clients not finished yet
        self._own: set[str] = set()  # our request ids (their status messages are ours)
        self._waiting: dict[str, asyncio.Future] = {}
        self.lock = asyncio.Lock()
        self._tasks = [
            asyncio.ensure_future(self._read(self.client.get_shell_msg)),
            asyncio.ensure_future(self._read(self.client.get_control_msg)),
            asyncio.ensure_future(self._watch()),
        ]
        self._on_restart = self.reset
        with contextlib.suppress(Exception):
            kernel.add_restart_callback(self._on_restart, "restart")

    # --- state ---------------------------------------------------------------------------

    @property
    def stale(self) -> bool:
        return self.variables is None or self._read_at != self._changes

    @stale.setter
    def stale(self, value: bool) -> None:
        if value:
            self._changes += 1
        else:
            self._read_at = self._changes

    def reset(self) -> None:
        """The kernel restarted: its namespace and subshells are gone."""
        self.variables = None
        self.stale = True
        self.subshell_id = None
        self.subshells = None
        self.running.clear()
        self.main_pending = None  # a request to the old process: its reply never comes

    def _note_session(self, msg: dict) -> None:
        session = msg.get("header", {}).get("session")
        if not session:
            return
        if self.kernel_session is not None and session != self.kernel_session:
            self.reset()
        self.kernel_session = session

    # --- channels ------------------------------------------------------------------------

    async def _read(self, get) -> None:
        """Hand each reply to whoever waits for it; drop the rest."""
        while True:
            try:
                msg = await get()
            except asyncio.CancelledError:
                raise
            except Exception:  # a closed or confused channel
                await asyncio.sleep(0.2)
                continue
            future = self._waiting.pop(msg.get("parent_header", {}).get("msg_id"), None)
            if future is not None and not future.done():
                self._note_session(msg)
                future.set_result(msg)

    async def _watch(self) -> None:
        """Mark the cache stale when another client runs something, or the kernel restarts."""
        while True:
            try:
                msg = await self.client.get_iopub_msg()
            except asyncio.CancelledError:
                raise
            except Exception:
                await asyncio.sleep(0.2)
                continue
            try:
                self._on_iopub(msg)
            except Exception:  # pragma: no cover - a malformed message
                log.debug("codecomp: odd iopub message", exc_info=True)

    def _on_iopub(self, msg: dict) -> None:
        self._note_session(msg)
        kind = msg.get("msg_type") or msg.get("header", {}).get("msg_type")
        parent = msg.get("parent_header") or {}
        parent_id = parent.get("msg_id")
        if kind == "execute_input":
            self.stale = True
            if len(self.running) > 100:
                self.running.clear()
            self.running.add(parent_id)
        elif kind == "status":
            state = msg.get("content", {}).get("execution_state")
            if state in ("starting", "restarting"):
                self.reset()
            elif state == "idle" and parent_id in self._own:
                self._own.discard(parent_id)
                if parent.get("subshell_id") and self.running:
                    # The server's kernel manager takes this idle for the kernel's state; the main
                    # shell is still running a cell.
                    asyncio.get_running_loop().call_later(0.2, self._restore_busy)
            elif state == "idle" and parent.get("msg_type") == "execute_request":
                self.stale = True  # a cell (or another client's silent execute) ended
                self.running.discard(parent_id)

    def _restore_busy(self) -> None:
        if self.running and getattr(self.kernel, "execution_state", None) == "idle":
            with contextlib.suppress(Exception):
                self.kernel.execution_state = "busy"

    def _send(self, channel, msg_type: str, content: dict, subshell_id: str | None = None):
        msg = self.client.session.msg(msg_type, content)
        if subshell_id is not None:
            msg["header"]["subshell_id"] = subshell_id
        msg_id = msg["header"]["msg_id"]
        future = asyncio.get_running_loop().create_future()
        self._waiting[msg_id] = future
        if len(self._own) > 64:
            self._own.clear()
        self._own.add(msg_id)
        channel.send(msg)
        return future

    async def _await(self, future: asyncio.Future, timeout: float, keep: bool = False) -> dict:
        try:
            return await asyncio.wait_for(asyncio.shield(future), max(timeout, 0.01))
        except asyncio.TimeoutError:
            if not keep:
                future.cancel()
                for key, value in list(self._waiting.items()):
                    if value is future:
                        del self._waiting[key]
            raise _Timeout() from None

    # --- requests ------------------------------------------------------------------------

    def _inspect_request(self, subshell_id: str | None) -> asyncio.Future:
        content = {
            "code": "",
            "silent": True,
            "store_history": False,
            "user_expressions": {EXPRESSION_KEY: KERNEL_EXPRESSION},
            "allow_stdin": False,
            "stop_on_error": False,
        }
        return self._send(self.client.shell_channel, "execute_request", content, subshell_id)

    async def _subshell(self, deadline: float) -> str | None:
        if self.subshell_id is not None or self.subshells is False:
            return self.subshell_id
        control = self.client.control_channel
        if self.subshells is None:
            try:
                info = await self._await(
                    self._send(control, "kernel_info_request", {}), deadline - time.monotonic())
            except _Timeout:  # a kernel that does not answer on its control channel
                self.subshells = False
                raise
            features = info.get("content", {}).get("supported_features") or []
            self.subshells = "kernel subshells" in features
            if not self.subshells:
                return None
        reply = await self._await(
            self._send(control, "create_subshell_request", {}), deadline - time.monotonic())
        content = reply.get("content", {})
        if content.get("status") == "ok" and content.get("subshell_id"):
            self.subshell_id = content["subshell_id"]
        else:
            self.subshells = False
        return self.subshell_id

    def _busy(self, state) -> bool:
        pending = self.main_pending is not None and not self.main_pending.done()
        return state == "busy" or pending or bool(self.running)

    async def get(self, state) -> VariablesResult:
        async with self.lock:
            if not self.stale:
                return VariablesResult(self.variables, "cached")
            deadline = time.monotonic() + 2 * self.timeout
            try:
                if not self._busy(state):
                    mark = self._changes  # anything that runs from now on makes the answer stale
                    future = self._inspect_request(None)
                    self.main_pending = future
                    try:
                        reply = await self._await(future, self.timeout, keep=True)
                    except _Timeout:
                        pass  # queued behind a cell: try a subshell, or the cache
                    else:
                        self.running.clear()  # the main shell has finished all before ours
                        return self._store(reply, mark)
                subshell = await self._subshell(deadline)
                if subshell is None:
                    return self._from_cache()
                mark = self._changes
                reply = await self._await(
                    self._inspect_request(subshell), min(self.timeout, deadline - time.monotonic()))
                if reply.get("content", {}).get("status") != "ok":
                    self.subshell_id = None  # e.g. an unknown subshell after a restart
                return self._store(reply, mark)
            except _Timeout:
                return self._from_cache()
            except InspectorError as exc:
                log.warning("codecomp: kernel variables unreadable: %s", exc)
                return VariablesResult(self.variables or [], "error", str(exc))

    def _store(self, reply: dict, mark: int) -> VariablesResult:
        variables = variables_from_reply(reply.get("content", {}), EXPRESSION_KEY)
        self.variables = variables
        self._read_at = mark
        return VariablesResult(variables, "fresh")

    def _from_cache(self) -> VariablesResult:
        if self.variables is None:
            return VariablesResult(status="busy-empty")
        return VariablesResult(self.variables, "busy-cache")

    # --- end -----------------------------------------------------------------------------

    async def close(self, delete_subshell: bool = False) -> None:
        if delete_subshell and self.subshell_id is not None:
            with contextlib.suppress(Exception, _Timeout):
                future = self._send(self.client.control_channel, "delete_subshell_request",
                                    {"subshell_id": self.subshell_id})
                await self._await(future, 0.5)
        with contextlib.suppress(Exception):
            self.kernel.remove_restart_callback(self._on_restart, "restart")
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        for future in self._waiting.values():
            future.cancel()
        self._waiting.clear()
        with contextlib.suppress(Exception):
            self.client.stop_channels()


class KernelVariables:
    """The variables of the server's kernels, one connection and cache per live kernel."""

    def __init__(self, kernel_manager, timeout: float = REPLY_TIMEOUT_SECONDS):
        self.kernel_manager = kernel_manager
        self.timeout = timeout
        self._connections: dict[str, _Connection] = {}

    async def get(self, kernel_id: str) -> VariablesResult:
        try:
            return await self._get(kernel_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a broken channel must not break completion
            log.warning("codecomp: kernel variables failed: %s", exc, exc_info=True)
            await self._drop(kernel_id)
            return VariablesResult(status="error", detail=f"{type(exc).__name__}: {exc}")

    async def _get(self, kernel_id: str) -> VariablesResult:
        await self._forget_gone_kernels()
        try:
            known = kernel_id in self.kernel_manager
            kernel = self.kernel_manager.get_kernel(kernel_id) if known else None
        except Exception as exc:  # KeyError, or jupyter_server's HTTPError(404)
            if not isinstance(exc, KeyError) and getattr(exc, "status_code", None) != 404:
                raise
            kernel = None
        if kernel is None:
            await self._drop(kernel_id)
            return VariablesResult(status="unknown")
        state = getattr(kernel, "execution_state", None)
        if state == "dead":
            await self._drop(kernel_id)
            return VariablesResult(status="dead")
        connection = self._connections.get(kernel_id)
        if state in ("restarting", "autorestarting") or getattr(kernel, "shutting_down", False):
            if connection is not None:
                connection.reset()
            return VariablesResult(status="restarting")
        if not await kernel.is_alive():
            await self._drop(kernel_id)
            return VariablesResult(status="dead")
        connection = self._connections.get(kernel_id)  # again: another call may have made one
        if connection is not None and connection.kernel is not kernel:
            await self._drop(kernel_id)
            connection = None
        if connection is None:
            connection = self._connections[kernel_id] = _Connection(kernel, self.timeout)
        result = await connection.get(state)
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
        for kernel_id in [k for k in self._connections if k not in alive]:
            await self._drop(kernel_id)

    async def _drop(self, kernel_id: str) -> None:
        connection = self._connections.pop(kernel_id, None)
        if connection is not None:
            await connection.close()

    async def close(self) -> None:
        connections = list(self._connections.values())
        self._connections.clear()
        await asyncio.gather(
            *(c.close(delete_subshell=True) for c in connections), return_exceptions=True)
