"""HTTP and WebSocket routes (../shared/API.md). They translate HTTP to `Completer` calls and back;
they know nothing of ONNX or prompts. Every route goes through `CodecompMixin.admit` (the
policy), and every malformed input is a 400 naming the field, on HTTP and WebSocket alike."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import threading
from typing import NamedTuple

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import authorized, ws_authenticated
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from tornado import web
from tornado.ioloop import IOLoop
from tornado.websocket import WebSocketClosedError, WebSocketHandler, WebSocketProtocol13

from ..completion.context import Variables
from ..completion.protocol import (
    MAX_BODY_BYTES,
    CompletionReply,
    CompletionRequest,
    RequestError,
    StreamMessage,
)
from ..completion.service import CompletionService
from ..errors import Cancelled, CodecompError, EngineUnavailable, ModelNotReady
from .completer import Busy, Completer
from .policy import Decision, PathError

log = logging.getLogger(__name__)

AUTH_RESOURCE = "codecomp"
RETRY_AFTER_SECONDS = 2  # while the model loads (seconds, measured: 1-10 s per model)
BUSY_RETRY_AFTER_SECONDS = 1
ENGINE_RETRY_AFTER_SECONDS = 5  # the shared engine restarting takes seconds
# The socket reads a message up to this size and answers one over MAX_BODY_BYTES with a JSON
# 413, the socket staying open, as HTTP reads a body before its 413. Over it tornado stops
# reading and closes (1009), with a JSON error first; a client still sending then gets a TCP
# reset, which may discard that error (measured: a 10 MB message lost it with an 8 MB limit).
WS_READ_LIMIT = 16 * MAX_BODY_BYTES


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}

    def to_json(self) -> dict:
        error = {"code": self.code, "message": self.message}
        if self.code == "failed":
            error["permanent"] = True  # no retry helps; the message says what does
        return {"error": error}


def dumps(data: dict) -> str:
    """JSON as RFC 8259 has it: a NaN or infinity is a bug upstream, never sent to a client."""
    return json.dumps(data, allow_nan=False)


def parse_json(body: bytes | str, where: str):
    size = len(body) if isinstance(body, bytes) else len(body.encode("utf-8", "surrogatepass"))
    if size > MAX_BODY_BYTES:
        raise ApiError(413, "too_large", f"{where}: over {MAX_BODY_BYTES} bytes")
    try:
        return json.loads(body or b"null")
    except RecursionError:
        raise ApiError(400, "invalid_json", f"{where}: JSON nested too deeply") from None
    except ValueError:  # UnicodeDecodeError included
        raise ApiError(400, "invalid_json", f"{where}: not valid JSON") from None


class Admitted(NamedTuple):
    decision: Decision
    service: CompletionService | None = None  # None: the policy turned completion off here
    variables: Variables | None = None


class CodecompMixin:
    """Shared steps of every route: parse, the policy, authorize the kernel, readiness."""

    @property
    def completer(self) -> Completer:
        return self.settings["codecomp"]

    def validate(self, data, where: str = "body") -> CompletionRequest:
        try:
            return CompletionRequest.from_json(
                data, max_new_tokens=self.completer.settings.max_new_tokens_limit, where=where)
        except RequestError as exc:
            raise ApiError(400, "invalid_request", str(exc)) from None

    async def decide(self, request: CompletionRequest) -> Decision:
        """The policy's decision; a kernel is read only with the kernels permission."""
        if request.kernel_id and not await ensure_async(
            self.authorizer.is_authorized(self, self.current_user, "execute", "kernels")
        ):
            raise ApiError(403, "forbidden",
                           "kernel_id: reading a kernel needs the kernels permission")
        try:
            return await self.completer.decide(request.path, request.kernel_id)
        except PathError as exc:
            raise ApiError(400, "invalid_request", str(exc)) from None

    async def admit(self, request: CompletionRequest) -> Admitted:
        """The policy's decision; when it allows, the ready service and the kernel's variables
        (the common start of /complete, the stream, /context and /warm)."""
        decision = await self.decide(request)
        if decision.disabled:
            return Admitted(decision)
        service = self.ready_service()
        return Admitted(decision, service, await self.completer.variables(decision))

    def ready_service(self):
        try:
            return self.completer.service()
        except ModelNotReady as exc:
            if self.completer.loader.state == "failed":
                raise _failed(exc) from None
            message = exc.message + (f"; run: {exc.fix}" if exc.fix else "")
            raise ApiError(503, "not_ready", message,
                           {"Retry-After": str(RETRY_AFTER_SECONDS)}) from None
        except CodecompError as exc:
            raise _failed(exc) from None

    async def complete(self, request: CompletionRequest, *, cancel: threading.Event,
                       streamer=None, key=None, still_latest=lambda: True) -> dict:
        # From arrival to reply, no warm prefill starts and a running one stops (warm.py).
        with self.completer.warmer.hold(request.path):
            return await self._complete(request, cancel=cancel, streamer=streamer, key=key,
                                        still_latest=still_latest)

    async def _complete(self, request: CompletionRequest, *, cancel: threading.Event,
                        streamer=None, key=None, still_latest=lambda: True) -> dict:
        """The whole route in one place: policy, readiness, variables, the queue, generation."""
        decision, service, variables = await self.admit(request)
        if service is None:
            return CompletionReply([], self.completer.settings.model, "none",
                                   disabled=decision.disabled).to_json()
        if not still_latest():  # a newer keystroke with this key arrived meanwhile
            raise Cancelled()
        try:
            reply = await self.completer.run(
                lambda: service.complete(request, variables, streamer=streamer, cancel=cancel),
                key=key, cancel=cancel,
            )
        except Busy as exc:
            raise ApiError(503, "busy", exc.message,
                           {"Retry-After": str(BUSY_RETRY_AFTER_SECONDS)}) from None
        except EngineUnavailable as exc:
            raise _engine_unavailable(exc) from None
        return reply.to_json()


def _engine_unavailable(exc: EngineUnavailable) -> ApiError:
    """The shared engine (engine_url) is down or failing: retry, it recovers by itself."""
    message = exc.message + (f"; {exc.fix}" if exc.fix else "")
    return ApiError(503, "engine_unavailable", message,
                    {"Retry-After": str(ENGINE_RETRY_AFTER_SECONDS)})


def _failed(exc: CodecompError) -> ApiError:
    message = (f"{exc.message}; this lasts until the server restarts"
               + (f"; fix: {exc.fix}" if exc.fix else ""))
    return ApiError(503, "failed", message)  # no Retry-After: retrying cannot help


class CodecompAPIHandler(CodecompMixin, APIHandler):
    auth_resource = AUTH_RESOURCE
    _quiet = False  # a busy 503 is load, not a fault: logged at debug level, no header dump

    def send_error_json(self, error: ApiError) -> None:
        self.set_status(error.status)
        for name, value in error.headers.items():
            self.set_header(name, value)
        self._quiet = error.code == "busy"
        self.finish(dumps(error.to_json()))

    def write_error(self, status_code, **kwargs):
        # Never a traceback: unexpected failures are logged and answered with a short message.
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = exc.log_message if isinstance(exc, web.HTTPError) and exc.log_message else None
        self.set_header("Content-Type", "application/json")
        error = {"code": str(status_code), "message": message or self._reason}
        self.finish(dumps({"error": error}))

    def _log(self):
        if self._quiet:
            log.debug("codecomp: busy: %s %s", self.request.method, self.request.uri)
        else:
            super()._log()

    async def body_request(self) -> CompletionRequest:
        return self.validate(parse_json(self.request.body, "body"))


class CompleteHandler(CodecompAPIHandler):
    _cancel: threading.Event | None = None

    @web.authenticated
    @authorized
    async def post(self):
        self._cancel = threading.Event()
        try:
            request = await self.body_request()
            self.finish(dumps(await self.complete(request, cancel=self._cancel)))
        except ApiError as error:
            self.send_error_json(error)
        except Cancelled:  # the client went away (or the server stops): nobody to answer
            if not self.request.connection.stream or not self.request.connection.stream.closed():
                self.send_error_json(ApiError(503, "cancelled", "the server is stopping"))

    def on_connection_close(self):
        # The client is gone: its work leaves the queue, or stops at the engine's next token.
        if self._cancel is not None:
            self.completer.cancel(self._cancel)
        super().on_connection_close()


class ContextHandler(CodecompAPIHandler):
    """What the model would see; with policy off, only why (never the prompt or variables)."""

    @web.authenticated
    @authorized
    async def post(self):
        try:
            request = await self.body_request()
            decision, service, variables = await self.admit(request)
            if service is None:
                self.finish(dumps({"disabled": decision.disabled, "path": decision.path,
                                   "prompt_tokens": 0, "parts": [], "prompt_text": "",
                                   "variables": 0, "variables_block": ""}))
                return
            try:  # in a thread: with a shared engine, tokenizing is a request to it
                report = await IOLoop.current().run_in_executor(
                    None, service.context_report, request, variables)
            except EngineUnavailable as exc:
                raise _engine_unavailable(exc) from None
            report.update(disabled=None, path=decision.path, variables_block=variables.block)
            self.finish(dumps(report))
        except ApiError as error:
            self.send_error_json(error)


class WarmHandler(CodecompAPIHandler):
    """Prefill a prompt before the first keystroke (issue 17, warm.py); the reply says what became
    of it (`done`, `replaced`, `preempted`, `disabled`), and the frontend does not wait for it."""

    @web.authenticated
    @authorized
    async def post(self):
        try:
            request = await self.body_request()
            decision, service, variables = await self.admit(request)
            if service is None:
                self.finish(dumps({"state": "disabled", "disabled": decision.disabled,
                                   "cached_tokens": 0}))
                return
            self.finish(dumps(await self.completer.warmer.submit(service, request, variables)))
        except ApiError as error:
            self.send_error_json(error)


class StatusHandler(CodecompAPIHandler):
    """The server's state; with `?path=`, the policy's decision for that file."""

    @web.authenticated
    @authorized
    async def get(self):
        status = self.completer.status()
        path = self.get_query_argument("path", None)
        if path is not None:
            try:
                decision = await self.completer.decide(path)
            except PathError as exc:
                self.send_error_json(ApiError(400, "invalid_request", str(exc)))
                return
            status["policy"] = {"path": decision.path, "disabled": decision.disabled}
        self.finish(dumps(status))


class _Protocol(WebSocketProtocol13):
    """Tornado closes a socket whose message is over the read limit (1009) without a word; this
    sends the client a JSON error first."""

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        if code == 1009 and not self.server_terminated and not self.stream.closed():
            error = ApiError(413, "too_large", f"message: over {MAX_BODY_BYTES} bytes")
            try:
                self.write_message(dumps({"id": None, "done": True, **error.to_json()}))
            except Exception:  # noqa: BLE001 (closing anyway)
                pass
        super().close(code, reason)


class StreamHandler(CodecompMixin, WebSocketMixin, WebSocketHandler, JupyterHandler):
    """`{"id", "request", "key"?}` in; `{"id", "text", "done"}` messages out; `{"cancel": id}`.

    Every request message gets exactly one `done` message (a reply, `cancelled`, or an error).
    A new request with the key of a waiting or running one (the frontend sends "path#cell")
    replaces it; keys are this socket's own, so one page never cancels another's work.
    """

    auth_resource = AUTH_RESOURCE
    _sockets = itertools.count()

    def set_default_headers(self):
        """WebSocket replies carry no JSON API headers."""

    @property
    def max_message_size(self) -> int:
        return WS_READ_LIMIT

    def get_websocket_protocol(self):
        protocol = super().get_websocket_protocol()
        if isinstance(protocol, WebSocketProtocol13):
            protocol.__class__ = _Protocol
        return protocol

    @ws_authenticated
    async def get(self, *args, **kwargs):
        if not await ensure_async(
            self.authorizer.is_authorized(self, self.current_user, "execute", AUTH_RESOURCE)
        ):
            raise web.HTTPError(403)
        await super().get(*args, **kwargs)

    def open(self, *args, **kwargs):
        super().open(*args, **kwargs)
        # Streamed text goes out in small frames: with Nagle's algorithm each waited for the
        # client's delayed ACK (measured: 51 ms per request on the scripted engine, 2-7 without).
        self.set_nodelay(True)
        self._loop = IOLoop.current()
        self._socket = next(self._sockets)
        self._cancels: dict[str, threading.Event] = {}  # request id (as JSON) -> cancel flag
        self._latest: dict[str, int] = {}  # key -> arrival number of its newest request
        self._arrivals = itertools.count()
        self._tasks: set[asyncio.Task] = set()

    def on_message(self, message):
        task = asyncio.ensure_future(self._handle(message, next(self._arrivals)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def on_close(self):
        for cancel in list(self._cancels.values()):
            self.completer.cancel(cancel)

    async def _handle(self, raw, arrival: int) -> None:
        request_id = None
        try:
            message = StreamMessage.from_json(parse_json(raw, "message"))
            if message.cancel is not None:
                cancel = self._cancels.get(json.dumps(message.cancel))
                if cancel is not None:
                    self.completer.cancel(cancel)
                return
            request_id = message.id
            await self._request(message, arrival)
        except ApiError as error:
            self._send(request_id, {"done": True, **error.to_json()})
        except RequestError as exc:
            error = ApiError(400, "invalid_request", str(exc))
            self._send(request_id, {"done": True, **error.to_json()})
        except Exception:
            log.exception("codecomp: streaming completion failed")
            error = ApiError(500, "internal", "completion failed; see the server log")
            self._send(request_id, {"done": True, **error.to_json()})

    async def _request(self, message: StreamMessage, arrival: int) -> None:
        request_id, id_key = message.id, json.dumps(message.id)
        cancel = self._cancels[id_key] = threading.Event()
        if message.key is not None:
            self._latest[message.key] = arrival
        last = [None]

        def stream(text: str) -> None:  # called on the engine's thread
            if text != last[0]:
                last[0] = text
                self._loop.add_callback(self._send, request_id, {"text": text, "done": False})

        try:
            request = self.validate(message.request, where="request")
            reply = await self.complete(
                request, streamer=stream, cancel=cancel,
                key=None if message.key is None else (self._socket, message.key),
                still_latest=lambda: message.key is None
                or self._latest.get(message.key) == arrival,
            )
            first = reply["completions"][0]["text"] if reply["completions"] else ""
            self._send(request_id, {"text": first, "done": True, "reply": reply})
        except Cancelled:
            self._send(request_id, {"done": True, "cancelled": True})
        finally:
            if self._cancels.get(id_key) is cancel:
                del self._cancels[id_key]
            if message.key is not None and self._latest.get(message.key) == arrival:
                del self._latest[message.key]

    def _send(self, request_id, payload: dict) -> None:
        try:
            self.write_message(dumps({"id": request_id, **payload}))
        except WebSocketClosedError:
            pass


handlers = [
    (r"/codecomp/complete", CompleteHandler),
    (r"/codecomp/context", ContextHandler),
    (r"/codecomp/status", StatusHandler),
    (r"/codecomp/warm", WarmHandler),
    (r"/codecomp/stream", StreamHandler),
]
