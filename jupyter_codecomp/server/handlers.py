"""HTTP and WebSocket routes (../shared/API.md). They translate HTTP to `Completer` calls and back;
they know nothing of ONNX or prompts."""

from __future__ import annotations

import asyncio
import json
import logging
import threading

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import authorized, ws_authenticated
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from tornado import web
from tornado.ioloop import IOLoop
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from ..errors import Cancelled, CodecompError, ModelNotReady
from .completer import Busy, Completer
from ..completion.protocol import MAX_BODY_BYTES, CompletionReply, CompletionRequest, RequestError

log = logging.getLogger(__name__)

AUTH_RESOURCE = "codecomp"
RETRY_AFTER_SECONDS = 2


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}

    def to_json(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}


class CodecompMixin:
    """Shared steps of every route: parse, authorize the kernel, check policy and readiness."""

    @property
    def completer(self) -> Completer:
        return self.settings["codecomp"]

    def parse(self, body: bytes | str) -> CompletionRequest:
        if len(body) > MAX_BODY_BYTES:
            raise ApiError(413, "too_large", f"request body over {MAX_BODY_BYTES} bytes")
        try:
            data = json.loads(body or b"null")
        except ValueError:
            raise ApiError(400, "invalid_json", "body: not valid JSON") from None
        return self.validate(data)

    @staticmethod
    def validate(data) -> CompletionRequest:
        try:
            return CompletionRequest.from_json(data)
        except RequestError as exc:
            raise ApiError(400, "invalid_request", str(exc)) from None

    async def authorize_kernel(self, request: CompletionRequest) -> None:
        if request.kernel_id and not await ensure_async(
            self.authorizer.is_authorized(self, self.current_user, "execute", "kernels")
        ):
            raise ApiError(403, "forbidden", "kernel_id: reading a kernel needs the kernels permission")

    def ready_service(self):
        try:
            return self.completer.service()
        except ModelNotReady as exc:
            message = exc.message + (f"; run: {exc.fix}" if exc.fix else "")
            raise ApiError(503, "not_ready", message, {"Retry-After": str(RETRY_AFTER_SECONDS)}) from None
        except CodecompError as exc:
            message = exc.message + (f"; {exc.fix}" if exc.fix else "")
            raise ApiError(503, "failed", message, {"Retry-After": "30"}) from None

    async def complete(self, request: CompletionRequest, *, streamer=None, key=None,
                       cancel: threading.Event | None = None) -> dict:
        """The whole route in one place: policy, readiness, variables, generation."""
        await self.authorize_kernel(request)
        reason = await self.completer.policy.disabled_reason(request.path)
        if reason:
            return CompletionReply([], self.completer.settings.model, "none", disabled=reason).to_json()
        service = self.ready_service()
        variables = await self.completer.variables(request)
        cancel = self.completer.supersede(key, cancel)
        try:
            reply = await self.completer.run(
                service.complete, request, variables, streamer=streamer, cancel=cancel
            )
        except Busy as exc:
            raise ApiError(503, "busy", exc.message, {"Retry-After": "1"}) from None
        finally:
            self.completer.finished(key, cancel)
        return reply.to_json()


class CodecompAPIHandler(CodecompMixin, APIHandler):
    auth_resource = AUTH_RESOURCE

    def send_error_json(self, error: ApiError) -> None:
        self.set_status(error.status)
        for name, value in error.headers.items():
            self.set_header(name, value)
        self.finish(json.dumps(error.to_json()))

    def write_error(self, status_code, **kwargs):
        # Never a traceback: unexpected failures are logged and answered with a short message.
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = exc.log_message if isinstance(exc, web.HTTPError) and exc.log_message else None
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": {"code": str(status_code),
                                          "message": message or self._reason}}))


class CompleteHandler(CodecompAPIHandler):
    @web.authenticated
    @authorized
    async def post(self):
        try:
            request = self.parse(self.request.body)
            self.finish(json.dumps(await self.complete(request)))
        except ApiError as error:
            self.send_error_json(error)


class ContextHandler(CodecompAPIHandler):
    @web.authenticated
    @authorized
    async def post(self):
        try:
            request = self.parse(self.request.body)
            await self.authorize_kernel(request)
            service = self.ready_service()
            variables = await self.completer.variables(request)
            report = service.context_report(request, variables)
            report["variables_block"] = variables.block
            self.finish(json.dumps(report))
        except ApiError as error:
            self.send_error_json(error)


class StatusHandler(CodecompAPIHandler):
    @web.authenticated
    @authorized
    async def get(self):
        self.finish(json.dumps(self.completer.status()))


class StreamHandler(CodecompMixin, WebSocketMixin, WebSocketHandler, JupyterHandler):
    """`{"id", "request", "key"?}` in; `{"id", "text", "done"}` messages out; `{"cancel": id}`.

    A new request with the key of a running one (the frontend sends "path#cell") supersedes it.
    """

    auth_resource = AUTH_RESOURCE

    def set_default_headers(self):
        """WebSocket replies carry no JSON API headers."""

    @ws_authenticated
    async def get(self, *args, **kwargs):
        if not await ensure_async(
            self.authorizer.is_authorized(self, self.current_user, "execute", AUTH_RESOURCE)
        ):
            raise web.HTTPError(403)
        await super().get(*args, **kwargs)

    def open(self, *args, **kwargs):
        super().open(*args, **kwargs)
        self._loop = IOLoop.current()
        self._cancels: dict[str, threading.Event] = {}  # running request id -> its cancel flag
        self._tasks: set[asyncio.Task] = set()

    def on_message(self, message):
        task = asyncio.ensure_future(self._handle(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def on_close(self):
        for cancel in self._cancels.values():
            cancel.set()

    async def _handle(self, message) -> None:
        try:
            data = json.loads(message)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            self._send(None, {"done": True, **ApiError(400, "invalid_json", "message: expected a JSON object").to_json()})
            return
        if "cancel" in data:
            cancel = self._cancels.get(str(data["cancel"]))
            if cancel is not None:
                cancel.set()
            return
        request_id = str(data.get("id") or "")
        cancel = self._cancels[request_id] = threading.Event()
        last = [None]

        def stream(text: str) -> None:  # called on the engine's thread
            if text != last[0]:
                last[0] = text
                self._loop.add_callback(self._send, request_id, {"text": text, "done": False})

        try:
            if not request_id:
                raise ApiError(400, "invalid_request", "id: is required")
            request = self.validate(data.get("request"))
            reply = await self.complete(request, streamer=stream, key=data.get("key"), cancel=cancel)
            first = reply["completions"][0]["text"] if reply["completions"] else ""
            self._send(request_id, {"text": first, "done": True, "reply": reply})
        except Cancelled:
            self._send(request_id, {"done": True, "cancelled": True})
        except ApiError as error:
            self._send(request_id, {"done": True, **error.to_json()})
        except Exception:
            log.exception("codecomp: streaming completion failed")
            error = ApiError(500, "internal", "completion failed; see the server log")
            self._send(request_id, {"done": True, **error.to_json()})
        finally:
            if self._cancels.get(request_id) is cancel:
                del self._cancels[request_id]

    def _send(self, request_id: str | None, payload: dict) -> None:
        try:
            self.write_message(json.dumps({"id": request_id, **payload}))
        except WebSocketClosedError:
            pass


handlers = [
    (r"/codecomp/complete", CompleteHandler),
    (r"/codecomp/context", ContextHandler),
    (r"/codecomp/status", StatusHandler),
    (r"/codecomp/stream", StreamHandler),
]
