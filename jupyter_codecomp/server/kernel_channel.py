"""The transport to one kernel: our own client on its shell, control and iopub channels.

Requests go out with a future for their reply; a reader per channel hands each reply to the future
that waits for it, and shows every message (iopub and replies alike) to one observer, which tracks
what the kernel is doing. Nothing here knows what the requests mean.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from jupyter_client.session import Session

log = logging.getLogger(__name__)

# Our request ids remembered for the observer; older ones are long answered.
OWN_REQUESTS_KEPT = 64


class ReplyTimeout(Exception):
    """No reply within the time given."""


class KernelChannel:
    def __init__(self, kernel, observer: Callable[[dict, bool], None]):
        self.kernel = kernel
        self._observer = observer
        # A session of our own: `kernel.client()` clones the manager's, session id included, and
        # the kernel routes shell replies by that id, so two clients sharing it steal each other's
        # replies.
        session = Session(config=kernel.session.config, key=kernel.session.key,
                          signature_scheme=kernel.session.signature_scheme, username="codecomp")
        self.client = kernel.client(session=session)
        self.client.start_channels(shell=True, iopub=True, stdin=False, hb=False, control=True)
        self._waiting: dict[str, asyncio.Future] = {}
        self._own: list[str] = []
        self._tasks = [
            asyncio.ensure_future(self._read(self.client.get_shell_msg, replies=True)),
            asyncio.ensure_future(self._read(self.client.get_control_msg, replies=True)),
            asyncio.ensure_future(self._read(self.client.get_iopub_msg, replies=False)),
        ]

    def is_own(self, msg_id: str | None) -> bool:
        """Whether a message id is one of our recent requests (their status messages are ours)."""
        return msg_id in self._own

    def send(self, channel: str, msg_type: str, content: dict,
             subshell_id: str | None = None) -> asyncio.Future:
        """Send on "shell" or "control"; the future gets the reply message."""
        msg = self.client.session.msg(msg_type, content)
        if subshell_id is not None:
            msg["header"]["subshell_id"] = subshell_id
        msg_id = msg["header"]["msg_id"]
        future = asyncio.get_running_loop().create_future()
        self._waiting[msg_id] = future
        self._own = [*self._own[-OWN_REQUESTS_KEPT:], msg_id]
        target = self.client.shell_channel if channel == "shell" else self.client.control_channel
        target.send(msg)
        return future

    async def reply(self, future: asyncio.Future, timeout: float, keep: bool = False) -> dict:
        """The reply, or ReplyTimeout. With `keep`, a late reply still completes the future (the
        caller may look at it later); without, the request is forgotten."""
        try:
            return await asyncio.wait_for(asyncio.shield(future), max(timeout, 0.01))
        except asyncio.TimeoutError:
            if not keep:
                future.cancel()
                for key, value in list(self._waiting.items()):
                    if value is future:
                        del self._waiting[key]
            raise ReplyTimeout() from None

    async def _read(self, get, replies: bool) -> None:
        while True:
            try:
                msg = await get()
            except asyncio.CancelledError:
                raise
            except Exception:  # a closed or confused channel
                await asyncio.sleep(0.2)
                continue
            try:
                self._observer(msg, self.is_own(msg.get("parent_header", {}).get("msg_id")))
            except Exception:  # pragma: no cover - a malformed message
                log.debug("codecomp: odd kernel message", exc_info=True)
            if not replies:
                continue
            future = self._waiting.pop(msg.get("parent_header", {}).get("msg_id"), None)
            if future is not None and not future.done():
                future.set_result(msg)

    async def close(self) -> None:
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
