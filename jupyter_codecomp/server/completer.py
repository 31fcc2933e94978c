"""What the handlers call: the policy, kernel variables, and the queue in front of the engine,
which runs on a worker thread so that the server's event loop never waits for the model."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Any

from .. import __version__
from ..completion.context import Variables
from ..completion.protocol import MAX_ALTERNATIVES, MAX_NEW_TOKENS
from ..completion.service import CompletionService, ServiceLoader
from ..config import CodecompConfig
from ..errors import Cancelled, CodecompError
from ..kernel.variables import format_variables
from .kernel_variables import KernelVariables
from .policy import Decision, Policy
from .warm import WarmQueue

# Distinct keys (typists) that may wait for the engine; one more is answered `busy`. Each key
# holds at most one waiting request, so this bounds memory and every request's wait: a request
# starts after at most MAX_WAITING_KEYS - 1 others (round robin over the keys).
MAX_WAITING_KEYS = 32


class Busy(CodecompError):
    def __init__(self):
        super().__init__(f"more than {MAX_WAITING_KEYS} typists are waiting for the model",
                         fix="retry shortly")


@dataclass(eq=False)
class Job:
    key: object  # supersession scope: a WebSocket's (socket, key), or a job of its own
    work: Callable[[], Any]
    cancel: threading.Event
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    started_at_submit: int = 0  # the queue's start count when this job's key joined the line
    jobs_ahead: int | None = None  # jobs started between then and this one's start

    def settle(self, result: Any = None, error: BaseException | None = None) -> None:
        """Resolve the awaiting coroutine from any thread (once; it may be gone already)."""

        def _set() -> None:
            if self.future.done():
                return
            if error is not None:
                self.future.set_exception(error)
            else:
                self.future.set_result(result)

        self.loop.call_soon_threadsafe(_set)


class EngineQueue:
    """One worker thread runs jobs one at a time, in the order their keys joined the line.

    - At most one job waits per key: a newer one takes the waiting one's place in line at once
      (the older is answered `Cancelled`), so a typist keeps their turn and their last keystroke
      is the one run. A newer job also cancels the running job with its key (within one token).
    - `Busy` only when a new key would make more than `max_waiting_keys` keys wait; a refused
      job changes nothing (the older job with its key goes on).
    - A cancelled waiting job leaves the line at once (`cancel`), a running one stops at the
      engine's next token.

    Low-priority work (a prefill-only "warm" job): `idle_executor` is a standard `Executor`
    whose work runs on the same thread, only when no job waits, outside the busy count. Its
    caller keeps one item per notebook and cancels a running one when a completion arrives
    (its own cancel flag); a fuller lane would give `Job` a `lane` and keep a second
    OrderedDict with the same one-per-key replacement, taken by `_next` when `_waiting` is empty.
    """

    def __init__(self, max_waiting_keys: int = MAX_WAITING_KEYS):
        self.max_waiting_keys = max_waiting_keys
        self._lock = threading.Condition()
        self._waiting: OrderedDict[object, Job] = OrderedDict()
        self._running: Job | None = None
        self._started = 0
        self._closed = False
        self._idle: deque[tuple[Future, Callable[[], Any]]] = deque()
        self.idle_executor: Executor = _IdleLane(self)
        self.max_jobs_ahead = 0  # the most jobs any job saw start before it (status, tests)
        self._thread = threading.Thread(target=self._work, name="codecomp-engine", daemon=True)
        self._thread.start()

    def submit(self, key: object, work: Callable[[], Any], cancel: threading.Event) -> Job:
        loop = asyncio.get_running_loop()
        job = Job(key, work, cancel, loop, loop.create_future())
        with self._lock:
            if self._closed:
                raise Cancelled()
            older = self._waiting.get(key)
            if older is None and len(self._waiting) >= self.max_waiting_keys:
                raise Busy()
            if older is not None:
                job.started_at_submit = older.started_at_submit  # it keeps the older's turn
                older.settle(error=Cancelled())
            else:
                job.started_at_submit = self._started
            self._waiting[key] = job  # an existing key keeps its place in the OrderedDict
            if self._running is not None and self._running.key == key:
                self._running.cancel.set()
            self._lock.notify()
        return job

    def cancel(self, cancel: threading.Event) -> None:
        """Cancel the job with this flag: out of the line now if it waits; else at a token."""
        cancel.set()
        with self._lock:
            for key, job in self._waiting.items():
                if job.cancel is cancel:
                    del self._waiting[key]
                    job.settle(error=Cancelled())
                    return

    def state(self) -> dict:
        with self._lock:
            return {"waiting": len(self._waiting), "running": self._running is not None,
                    "max_waiting_keys": self.max_waiting_keys,
                    "max_jobs_ahead": self.max_jobs_ahead}

    @property
    def pending(self) -> int:
        return len(self._waiting) + (self._running is not None)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for job in self._waiting.values():
                job.cancel.set()
                job.settle(error=Cancelled())
            self._waiting.clear()
            for future, _ in self._idle:
                future.cancel()
            self._idle.clear()
            if self._running is not None:
                self._running.cancel.set()
            self._lock.notify_all()

    def submit_idle(self, work: Callable[[], Any]) -> Future:
        future: Future = Future()
        with self._lock:
            if self._closed:
                future.cancel()
                return future
            self._idle.append((future, work))
            self._lock.notify()
        return future

    def _next(self) -> Job | None:
        with self._lock:
            while not self._waiting and not self._closed:
                if self._idle:
                    future, work = self._idle.popleft()
                    self._lock.release()  # idle work runs unlocked, like a job
                    try:
                        _run_idle(future, work)
                    finally:
                        self._lock.acquire()
                    continue
                self._lock.wait()
            if self._closed:
                return None
            _, job = self._waiting.popitem(last=False)
            job.jobs_ahead = self._started - job.started_at_submit
            self.max_jobs_ahead = max(self.max_jobs_ahead, job.jobs_ahead)
            self._started += 1
            self._running = job
            return job

    def _work(self) -> None:
        while (job := self._next()) is not None:
            try:
                if job.cancel.is_set():
                    raise Cancelled()
                job.settle(job.work())
            except BaseException as exc:  # noqa: BLE001 (every failure goes back to its caller)
                job.settle(error=exc)
            finally:
                with self._lock:
                    self._running = None


class _IdleLane(Executor):
    def __init__(self, queue: EngineQueue):
        self._queue = queue

    def submit(self, fn, /, *args, **kwargs) -> Future:
        return self._queue.submit_idle(lambda: fn(*args, **kwargs))


def _run_idle(future: Future, work: Callable[[], Any]) -> None:
    if not future.set_running_or_notify_cancel():
        return
    try:
        future.set_result(work())
    except BaseException as exc:  # noqa: BLE001 (it goes back to the caller)
        future.set_exception(exc)


class Completer:
    _anonymous = itertools.count()

    def __init__(self, settings: CodecompConfig, serverapp, loader: ServiceLoader | None = None):
        self.settings = settings
        self.loader = loader or ServiceLoader(settings.service_settings())
        self.policy = Policy(settings, serverapp.contents_manager,
                             getattr(serverapp, "session_manager", None))
        self.kernel_variables = KernelVariables(serverapp.kernel_manager)
        self.queue = EngineQueue()
        # Prefill ahead, on the engine's thread when no completion waits (issue 17, warm.py).
        self.warmer = WarmQueue(self.queue.idle_executor)

    def service(self) -> CompletionService:
        return self.loader.get()

    async def decide(self, path: str | None, kernel_id: str | None = None) -> Decision:
        return await self.policy.decide(path, kernel_id)

    async def variables(self, decision: Decision) -> Variables:
        if not self.settings.kernel_variables:
            return Variables()
        if not decision.kernel_id:
            return Variables(kernel=decision.kernel)
        result = await self.kernel_variables.get(decision.kernel_id)
        return Variables(format_variables(result.variables), len(result.variables), result.status)

    async def run(self, work: Callable[[], Any], *, key: object = None,
                  cancel: threading.Event) -> Any:
        """`work()` on the engine's thread, after the keys ahead in line. Raises `Busy` or
        `Cancelled` (superseded by a newer job with `key`, or `cancel(cancel)`)."""
        job = self.queue.submit(key if key is not None else ("job", next(self._anonymous)),
                                work, cancel)
        try:
            return await job.future
        except asyncio.CancelledError:  # the awaiting task is gone: so is the work
            self.queue.cancel(cancel)
            raise

    def cancel(self, cancel: threading.Event) -> None:
        self.queue.cancel(cancel)

    @property
    def idle_executor(self) -> Executor:
        """Runs work on the engine's thread when no completion waits (warm-up prefills)."""
        return self.queue.idle_executor

    @property
    def pending(self) -> int:
        return self.queue.pending

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
            "queue": self.queue.state(),
            "limits": self.limits(),
        }

    def limits(self) -> dict:
        """What a client may ask for: the frontend reads them here and keeps no copies."""
        service = self.settings.service_settings()
        return {
            "max_new_tokens": min(MAX_NEW_TOKENS, service.max_new_tokens_limit),
            "default_max_new_tokens": {"line": service.max_new_tokens,
                                       "block": service.block_max_new_tokens},
            "alternatives": MAX_ALTERNATIVES,
        }

    async def close(self) -> None:
        self.queue.close()
        self.warmer.close()
        await self.kernel_variables.close()
