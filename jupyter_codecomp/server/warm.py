"""Prefill ahead (issue 17): warm requests fill a notebook's KV cache before the first keystroke.

The frontend asks to warm a cell's prompt when a notebook opens, a cell runs, or the cursor enters
a cell. A warm request generates nothing and has the lowest priority:
- it runs only while no completion is waiting or running (`hold` marks one from its arrival to
  its reply), so a loaded server is never starved;
- any completion pre-empts it: the prefill stops at its next chunk (what it filled stays in the
  cache), and a warm of another notebook goes back in the queue;
- a newer warm for the same notebook replaces the older one, waiting or running.
Warm jobs run in the completer's idle lane (the engine's thread, when no completion waits); a
completion that arrives meanwhile waits at most one prefill chunk (`OnnxEngine.prefill`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..completion.context import Variables
from ..completion.protocol import CompletionRequest
from ..completion.service import CompletionService
from ..errors import Cancelled

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)


@dataclass
class _WarmJob:
    service: CompletionService
    request: CompletionRequest
    variables: Variables
    done: asyncio.Future
    cancel: threading.Event = field(default_factory=threading.Event)
    outcome: str = "preempted"  # what a cancelled run reports: "preempted" or "replaced"

    @property
    def key(self) -> str:
        return self.request.path or ""


class WarmQueue:
    """The newest warm request per notebook, run on the completer's one worker when idle."""

    def __init__(self, executor: Executor | None = None):
        # The completer's idle lane: the engine's thread, only when no completion waits.
        self._executor = executor or ThreadPoolExecutor(1, thread_name_prefix="codecomp-warm")
        self._own_executor = executor is None
        self._waiting: dict[str, _WarmJob] = {}  # notebook path -> newest warm, oldest first
        self._running: _WarmJob | None = None
        self._holds = 0  # completions between arrival and reply

    def submit(self, service: CompletionService, request: CompletionRequest,
               variables: Variables) -> asyncio.Future:
        """Queue a warm; the future gives `{"state": "done" | "replaced" | "preempted" |
        "failed", "cached_tokens": n}`."""
        job = _WarmJob(service, request, variables, asyncio.get_running_loop().create_future())
        older = self._waiting.pop(job.key, None)
        if older is not None:
            _resolve(older, {"state": "replaced", "cached_tokens": 0})
        if self._running is not None and self._running.key == job.key:
            self._running.outcome = "replaced"
            self._running.cancel.set()
        self._waiting[job.key] = job
        self._start_next()
        return job.done

    @contextmanager
    def hold(self, path: str | None) -> Iterator[None]:
        """Around a completion: no warm starts meanwhile, and the running one stops."""
        self._holds += 1
        running = self._running
        if running is not None and not running.cancel.is_set():
            running.cancel.set()
            if running.key != (path or "") and running.key not in self._waiting:
                # Another notebook's warm resumes afterwards, from where it stopped.
                again = _WarmJob(running.service, running.request, running.variables,
                                 running.done)
                self._waiting[running.key] = again
                running.outcome = "requeued"
        try:
            yield
        finally:
            self._holds -= 1
            self._start_next()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def close(self) -> None:
        for job in self._waiting.values():
            job.cancel.set()
        if self._running is not None:
            self._running.cancel.set()
        if self._own_executor:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def _start_next(self) -> None:
        if self._running is not None or self._holds or not self._waiting:
            return
        key = next(iter(self._waiting))
        self._running = self._waiting.pop(key)
        asyncio.ensure_future(self._run(self._running))

    async def _run(self, job: _WarmJob) -> None:
        loop = asyncio.get_running_loop()
        result: dict = {"state": "failed", "cached_tokens": 0}
        try:
            cached = await loop.run_in_executor(
                self._executor,
                lambda: job.service.warm(job.request, job.variables, cancel=job.cancel),
            )
            result = {"state": "done", "cached_tokens": cached}
        except Cancelled:
            result = {"state": job.outcome, "cached_tokens": 0}
        except Exception:  # a failed warm costs a cold first keystroke, never the server
            log.exception("codecomp: warming a prompt failed")
        finally:
            if self._running is job:
                self._running = None
            if result["state"] != "requeued":
                _resolve(job, result)
            self._start_next()


def _resolve(job: _WarmJob, result: dict) -> None:
    if not job.done.done():
        job.done.set_result(result)

