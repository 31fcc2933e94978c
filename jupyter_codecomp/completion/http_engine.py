"""A shared engine over HTTP: any OpenAI-compatible `/completions` server (vLLM, llama.cpp's).

It implements `engine.Engine`, so the service builds the same prompt, from the same tokenizer, as
it does for the in-process engine, and sends its token ids (both engines accept a list of token
ids as `prompt`; vLLM rejects the OpenAI `suffix` parameter, so the FIM tokens are in the ids).
- Tokenizing: the engine's `/tokenize` encodes (both engines have one, with the model's own
  tokenizer: llama.cpp's gave the ids of ours on all 5,431 corpus cells) and a `TokenTable`
  decodes, so a student's server does not hold the tokenizer's 45 MB (`EngineTokenizer`);
  `engine_tokenize = False` loads it here instead, for an engine without `/tokenize`.
- Streaming: `stream: true`, server-sent events read with httpx-sse; the product's stopping
  criteria run on every token (the ids come back in `logprobs`), and the stream is closed as
  soon as one stops it, or the request is cancelled or superseded: both engines abort a request
  whose client disconnects, so its slot is free for the next keystroke.
- Token healing and `n` alternatives: a first request with `max_tokens: 1` returns the first
  token's top-k ids; the alternatives continue greedily from the best ones that reproduce the
  held-back text (what the in-process engine does by masking logits). The engine's prompt cache
  makes the second request cost one token of prefill.
- Cache and isolation: `cached_tokens` is what the engine says it reused; `cache_salt` (vLLM)
  keeps one student's cached prefixes out of reach of another's timing probes.
- Faults: connect and read timeouts; every failure becomes `EngineUnavailable` (HTTP 503) with
  the cause and its fix, and `health` says so for /codecomp/status until a request or a probe
  succeeds again.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import secrets
import threading
import time
from contextlib import aclosing, suppress
from dataclasses import dataclass

import httpx
from httpx_sse import SSEError, aconnect_sse
from tokenizers import Tokenizer

from ..errors import Cancelled, EngineUnavailable
from ..models.store import ModelDir
from .engine import Candidate, GenerationResult, Streamer, continues_heal
from .openai_reply import ErrorReply, ReplyChunk, UnreadableReply, error_message, parse_chunk
from .settings import ServiceSettings
from .stopping import GenerationState, MaxNewTokens, StoppingCriterion, any_stops
from .token_table import EngineTokenizer, TokenTable

log = logging.getLogger(__name__)

# Top first tokens asked for when healing: the held-back text's own token is nearly always among
# them; 20 is vLLM's default cap on logprobs.
HEAL_CANDIDATES = 20
START_FIX = "start the engine (jupyter codecomp serve NAME), or correct c.CodecompConfig.engine_url"


@dataclass
class EngineHealth:
    """What /codecomp/status reports of the engine: the last request's or probe's outcome."""

    state: str = "unknown"  # unknown, ready, unreachable, error
    error: str | None = None
    fix: str | None = None
    checked: float = 0.0  # time.monotonic() of the last outcome

    def to_json(self, url: str) -> dict:
        return {"url": url, "state": self.state, "error": self.error, "fix": self.fix}


class HttpEngine:
    device = "remote"
    fallback_reason = None

    def __init__(self, url: str, tokenizer: Tokenizer | TokenTable, *, api_key: str = "",
                 model: str = "", cache_salt: str = "",
                 connect_timeout: float = ServiceSettings.engine_connect_timeout,
                 read_timeout: float = ServiceSettings.engine_read_timeout):
        """`tokenizer`: the model's own, or its `TokenTable` to have the engine tokenize."""
        self.url = url.rstrip("/")
        # /tokenize is at the server's root on both engines, beside /v1.
        self.root = self.url.removesuffix("/v1")
        self.providers = [self.url]
        self.local_tokenizer = tokenizer if isinstance(tokenizer, Tokenizer) else None
        self.tokenizer = self.local_tokenizer or EngineTokenizer(tokenizer, self._tokenize_here)
        self.model = model
        self.cache_salt = cache_salt
        self._llama_cpp: bool | None = None  # which engine: read from /models when needed
        self.context_length: int | None = None  # per request, from /models
        self.read_timeout = read_timeout
        self.health = EngineHealth()
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        timeout = httpx.Timeout(read_timeout, connect=connect_timeout)
        # The service calls generate() from a worker thread; the HTTP work runs on this engine's
        # own event loop, where cancelling a task closes its connection at once (even while the
        # engine is still prefilling and sends nothing).
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="codecomp-http-engine")
        self._thread.start()
        # Only an https:// engine needs the certificate store (1.5 MB a server, measured); every
        # request goes to this URL's host, and redirects are not followed.
        self._client = self._run(_make_client(headers, timeout, self.url.startswith("https://")))

    @classmethod
    def for_model(cls, model: ModelDir, settings: ServiceSettings) -> HttpEngine:
        """The engine at `settings.engine_url`, with the tokenizer of the built `model` (its
        folder needs only codecomp.json and tokenizer.json: no weights in this process); with
        `engine_tokenize`, only its `TokenTable` when it has one."""
        path = model.path / "tokenizer.json"
        table = TokenTable.read(path) if settings.engine_tokenize else None
        tokenizer = table or Tokenizer.from_file(str(path))
        # The heap that reading it freed, given back to the system: glibc keeps it otherwise,
        # and a student's server is mostly this (Qwen's tokenizer: RSS 181 -> 127 MB; its
        # table: 5.4 -> 1.3 MB, measured).
        with suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        return cls(
            settings.engine_url,
            tokenizer,
            api_key=settings.engine_api_key,
            model=settings.engine_model,
            # One salt per server process, i.e. per student on a hub: unguessable, so nobody
            # can ask vLLM for another student's cached prefixes and time the answer.
            cache_salt=secrets.token_urlsafe(16),
            connect_timeout=settings.engine_connect_timeout,
            read_timeout=settings.engine_read_timeout,
        )

    def _run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    # --- the Engine protocol ------------------------------------------------------------------

    def generate(self, prompt_ids: list[int], *, criteria: list[StoppingCriterion],
                 heal: str = "", n: int = 1, streamer: Streamer | None = None,
                 cancel: threading.Event | None = None, cache_key: str = "") -> GenerationResult:
        if not prompt_ids:
            raise ValueError("empty prompt")
        if cancel is not None and cancel.is_set():
            raise Cancelled()
        request = _Generation(self, prompt_ids, criteria, heal, n, streamer)
        return self._run(_until_cancelled(request.run(), cancel))

    def reset(self) -> None:
        """The prompt cache is the engine's: nothing to forget here."""

    # --- health -------------------------------------------------------------------------------

    def probe(self, wait: bool = True) -> EngineHealth:
        """GET {url}/models: reachable, and does it take our key? `wait=False` only schedules it."""
        future = asyncio.run_coroutine_threadsafe(self._probe(), self._loop)
        if wait:
            with suppress(Exception):
                future.result()
        return self.health

    def status(self, max_age: float = 5.0) -> dict:
        """The engine's state for /codecomp/status; a failed engine is probed again, in the
        background, so the status recovers by itself when the engine is back."""
        if self.health.state != "ready" and time.monotonic() - self.health.checked > max_age:
            self.probe(wait=False)
        return self.health.to_json(self.url)

    async def _probe(self) -> None:
        """Reachable, and does it take our key (and tokenize, when it is to)?"""
        try:
            await self._read_models()
            if self.local_tokenizer is None:
                await self.tokenize("")
            self._ok()
        except EngineUnavailable as exc:
            self._failed(exc)

    async def _read_models(self) -> None:
        """GET {url}/models: which engine it is (their /tokenize bodies differ, and vLLM logs a
        warning for every field it does not know) and the tokens it holds per request (llama.cpp:
        a slot's `n_ctx`; vLLM: `max_model_len`), which the prompt is fitted into."""
        try:
            response = await self._client.get(f"{self.url}/models")
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None
        if response.status_code >= 400:
            raise self._http_error(response)
        try:
            model = response.json()["data"][0]
        except (ValueError, LookupError, TypeError):
            model = {}
        model = model if isinstance(model, dict) else {}
        self._llama_cpp = model.get("owned_by") == "llamacpp"
        meta = model.get("meta") if isinstance(model.get("meta"), dict) else {}
        context = meta.get("n_ctx") if self._llama_cpp else model.get("max_model_len")
        self.context_length = context if isinstance(context, int) and context > 0 else None

    def close(self) -> None:
        with suppress(Exception):
            self._run(self._client.aclose())
        self._loop.call_soon_threadsafe(self._loop.stop)

    # --- one HTTP request ---------------------------------------------------------------------

    def body(self, prompt_ids: list[int], max_tokens: int, **extra) -> dict:
        body = {
            "prompt": prompt_ids, "max_tokens": max_tokens, "temperature": 0.0,
            "logprobs": 1, "return_tokens_as_token_ids": True,  # vLLM: ids, not token texts
            "cache_prompt": True, "timings_per_token": True,  # llama.cpp: cache_n every chunk
            **extra,
        }
        if self.model:
            body["model"] = self.model
        if self.cache_salt:
            body["cache_salt"] = self.cache_salt
        return body

    async def post(self, body: dict) -> ReplyChunk:
        response = await self._send(f"{self.url}/completions", body)
        try:
            chunk = parse_chunk(response.text)
        except ErrorReply as exc:
            raise self._failed(self._engine_error(exc.message)) from None
        except UnreadableReply as exc:
            raise self._failed(self._garbage(exc)) from None
        self._ok()
        return chunk

    async def tokenize(self, text: str) -> list[int]:
        """`text`'s token ids, without special tokens added (a FIM marker in the text is one)."""
        if self.local_tokenizer is not None:
            return self.local_tokenizer.encode(text, add_special_tokens=False).ids
        if self._llama_cpp is None:
            try:
                await self._read_models()
            except EngineUnavailable as exc:
                raise self._failed(exc) from None
        if self._llama_cpp:
            body = {"content": text, "add_special": False}
        else:
            body = {"prompt": text, "add_special_tokens": False}
            if self.model:
                body["model"] = self.model
        response = await self._send(f"{self.root}/tokenize", body)
        try:
            ids = response.json()["tokens"]
            if not all(isinstance(i, int) for i in ids):
                raise TypeError("tokens are not ids")
        except (ValueError, KeyError, TypeError) as exc:
            raise self._failed(self._garbage(exc)) from None
        return ids

    def _tokenize_here(self, text: str) -> list[int]:
        """`tokenize` for the service's threads (the prompt builder); never on this engine's
        own loop, which it would block for good."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("tokenize on the engine's loop: await tokenize() there")
        return self._run(self.tokenize(text))

    async def _send(self, url: str, body: dict) -> httpx.Response:
        try:
            response = await self._client.post(url, json=body)
        except httpx.HTTPError as exc:
            raise self._failed(self._transport_error(exc)) from None
        if response.status_code >= 400:
            raise self._failed(self._http_error(response))
        return response

    async def stream(self, body: dict):
        """The reply's chunks as they arrive; leaving the loop early closes the connection."""
        try:
            async with aconnect_sse(self._client, "POST", f"{self.url}/completions",
                                    json={**body, "stream": True, "stream_options": {
                                        "include_usage": True, "continuous_usage_stats": True,
                                    }}) as source:
                if source.response.status_code >= 400:
                    await source.response.aread()
                    raise self._http_error(source.response)
                self._ok()
                async for event in source.aiter_sse():
                    if event.data.strip() == "[DONE]":
                        return
                    if event.data.strip():
                        yield parse_chunk(event.data)
        except httpx.HTTPError as exc:
            raise self._failed(self._transport_error(exc)) from None
        except ErrorReply as exc:
            raise self._failed(self._engine_error(exc.message)) from None
        except (UnreadableReply, SSEError) as exc:
            raise self._failed(self._garbage(exc)) from None
        except EngineUnavailable as exc:
            raise self._failed(exc) from None

    # --- failures -----------------------------------------------------------------------------

    def _ok(self) -> None:
        self.health = EngineHealth("ready", checked=time.monotonic())

    def _failed(self, exc: EngineUnavailable) -> EngineUnavailable:
        state = "unreachable" if exc.unreachable else "error"
        if self.health.state != state or self.health.error != exc.message:
            log.warning("codecomp: completion engine %s: %s", state, exc.message)
        self.health = EngineHealth(state, exc.message, exc.fix, time.monotonic())
        return exc

    def _transport_error(self, exc: httpx.HTTPError) -> EngineUnavailable:
        where = f"the completion engine at {self.url}"
        if isinstance(exc, httpx.ConnectTimeout):
            return EngineUnavailable(f"{where} did not accept a connection in time",
                                     fix=START_FIX, unreachable=True)
        if isinstance(exc, httpx.ConnectError):
            return EngineUnavailable(f"{where} is not reachable ({exc})", fix=START_FIX,
                                     unreachable=True)
        if isinstance(exc, httpx.TimeoutException):
            return EngineUnavailable(
                f"{where} sent nothing for {self.read_timeout:g} s",
                fix="the engine is overloaded or stuck: check it, or raise "
                    "c.CodecompConfig.engine_read_timeout")
        return EngineUnavailable(f"{where} broke off its reply ({exc.__class__.__name__})",
                                 fix="check the engine's log; it may have been stopped",
                                 unreachable=True)

    def _http_error(self, response: httpx.Response) -> EngineUnavailable:
        code = response.status_code
        where = f"the completion engine at {self.url}"
        if code in (401, 403):
            return EngineUnavailable(
                f"{where} refused the API key (HTTP {code})",
                fix="set c.CodecompConfig.engine_api_key or CODECOMP_ENGINE_API_KEY to the key "
                    "the engine was started with")
        if code == 404 and response.request.url.path.endswith("/tokenize"):
            return EngineUnavailable(
                f"{where} has no /tokenize (HTTP 404)",
                fix="set c.CodecompConfig.engine_tokenize = False: this server then tokenizes "
                    "(with about 45 MB more memory)")
        if code == 404:
            return EngineUnavailable(
                f"{where} has no {response.request.url.path} (HTTP 404)",
                fix="engine_url is the OpenAI base URL, e.g. http://host:8000/v1")
        if code == 503:  # llama.cpp while it loads its model; vLLM while it starts
            return EngineUnavailable(f"{where} is not ready yet ({_error_text(response)})",
                                     fix="wait: it answers once its model is loaded",
                                     unreachable=True)
        return self._engine_error(_error_text(response), f"HTTP {code}")

    def _engine_error(self, message: str, code: str = "") -> EngineUnavailable:
        where = f"the completion engine at {self.url}"
        if "context size has been exceeded" in message.lower():
            # llama.cpp's unified KV cache had no room for the requests decoded at once
            return EngineUnavailable(
                f"{where} had no room left for this request ({message})",
                fix="its KV cache is shared by the students typing at once: start jupyter "
                    "codecomp serve with more --kv-tokens (or fewer --parallel)")
        return EngineUnavailable(f"{where} answered {code or 'with an error'}: {message}",
                                 fix="check the engine's log and engine_model")

    def _garbage(self, exc: Exception) -> EngineUnavailable:
        return EngineUnavailable(
            f"the completion engine at {self.url} sent an unreadable reply: {exc}",
            fix="engine_url must point at an OpenAI-compatible completions server (/v1)")


class _Generation:
    """One generate() call: the first tokens (for healing and alternatives), then one greedy
    stream per alternative, with the product's stopping criteria on every token."""

    def __init__(self, engine: HttpEngine, prompt_ids, criteria, heal, n, streamer):
        self.engine, self.prompt_ids, self.criteria = engine, list(prompt_ids), criteria
        self.heal, self.n, self.streamer = heal, n, streamer
        self.cap = min((c.limit for c in criteria if isinstance(c, MaxNewTokens)), default=256)
        self.started = time.perf_counter()
        self.timings: dict[str, float] = {}
        self.cached: int | None = None
        self.counted: int | None = None  # the prompt tokens the engine says it received

    def _ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000

    async def run(self) -> GenerationResult:
        starts = [[]] if not self.heal and self.n == 1 else await self._first_tokens()
        candidates = []
        for rank, start in enumerate(starts[: self.n]):
            candidates.append(await self._continue(start, self.streamer if rank == 0 else None))
        self.timings["decode"] = self._ms() - self.timings.get("prefill", 0.0)
        self.timings["total"] = self._ms()
        prompt_tokens = self.counted if self.counted is not None else len(self.prompt_ids)
        return GenerationResult(candidates, prompt_tokens, self.cached or 0, self.timings)

    async def _first_tokens(self) -> list[list[tuple[int, float]]]:
        """The alternatives' first tokens, best first, each reproducing the held-back text (a
        token that covers only part of it is followed by the rest's own tokens)."""
        top = HEAL_CANDIDATES if self.heal else self.n
        reply = await self.engine.post(self.engine.body(self.prompt_ids, 1, logprobs=top))
        self.timings["prefill"] = self._ms()
        self.cached, self.counted = reply.cached_tokens, reply.prompt_tokens
        ranked = reply.top_first or reply.tokens
        starts = []
        for token, logprob in ranked:
            text = self.engine.tokenizer.decode([token], skip_special_tokens=False)
            if continues_heal(text, self.heal):
                starts.append([(token, logprob)])
            elif text and self.heal.startswith(text):
                rest = await self.engine.tokenize(self.heal[len(text):])
                starts.append([(token, logprob)] + [(i, 0.0) for i in rest])
        if not starts:  # no top token fits: go on from the held-back text's own tokens
            starts = [[(i, 0.0) for i in await self.engine.tokenize(self.heal)]]
        return starts

    async def _continue(self, start: list[tuple[int, float]], streamer) -> Candidate:
        ids = [i for i, _ in start]
        logprobs = [lp for _, lp in start]
        text, done = self._state(ids)
        if not done and len(ids) < self.cap:
            body = self.engine.body(self.prompt_ids + ids, self.cap - len(ids))
            async with aclosing(self.engine.stream(body)) as chunks:
                text, done = await self._read(chunks, ids, logprobs, streamer, text)
            # leaving the block closed the stream: the engine stops generating for us
        score = sum(logprobs) / len(logprobs) if logprobs else 0.0
        return Candidate(text, ids, score, "criteria" if done else "cap", logprobs)

    async def _read(self, chunks, ids, logprobs, streamer, text) -> tuple[str, bool]:
        """Extend `ids` and `logprobs` from the stream until a criterion stops it, or it ends."""
        async for chunk in chunks:
            if self.cached is None and chunk.cached_tokens is not None:
                self.cached = chunk.cached_tokens
            if not chunk.tokens and not chunk.text:
                continue
            self.timings.setdefault("prefill", self._ms())
            tokens = chunk.tokens or [(i, 0.0) for i in await self.engine.tokenize(chunk.text)]
            ids += [i for i, _ in tokens]
            logprobs += [lp for _, lp in tokens]
            text, done = self._state(ids)
            self.timings.setdefault("first_token", self._ms())
            if done:
                return text, True
            if streamer is not None and self._healed(ids) and not text.endswith("\ufffd"):
                streamer(text)
        return text, False

    def _state(self, ids: list[int]) -> tuple[str, bool]:
        full = self.engine.tokenizer.decode(ids, skip_special_tokens=True)
        text = full[len(self.heal):] if full.startswith(self.heal) else full
        done = self._healed(ids) and any_stops(self.criteria, GenerationState(ids, text))
        return text, done

    def _healed(self, ids: list[int]) -> bool:
        return len(self.engine.tokenizer.decode(ids, skip_special_tokens=True)) >= len(self.heal)


async def _make_client(headers: dict, timeout: httpx.Timeout, tls: bool) -> httpx.AsyncClient:
    return httpx.AsyncClient(headers=headers, timeout=timeout, trust_env=False, verify=tls)


async def _until_cancelled(work, cancel: threading.Event | None):
    """Run `work`; if `cancel` gets set first, cancel it (which closes its stream) and raise."""
    task = asyncio.ensure_future(work)
    if cancel is None:
        return await task
    while not task.done():
        await asyncio.wait({task}, timeout=0.01)
        if cancel.is_set() and not task.done():
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
            raise Cancelled()
    return task.result()


def _error_text(response: httpx.Response) -> str:
    try:
        message = error_message(response.json())
    except ValueError:
        message = None
    return str(message or response.text or response.reason_phrase)[:200]
