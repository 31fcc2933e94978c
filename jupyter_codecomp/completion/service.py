"""The completion pipeline: request -> context -> prompt -> engine -> post-processing -> reply.

`CompletionService` is what the server handlers, the `%complete` magic, the CLI, the evaluation
and the benchmarks call. It knows nothing of HTTP or kernels: live variables arrive as an already
formatted block. `ServiceLoader` loads it in the background and reports loading/ready/failed.
"""

from __future__ import annotations

import logging
import math
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from functools import partial

from ..errors import CodecompError, ModelNotReady
from ..models.pairing import draft_source
from ..models.recipes import PromptFormat
from ..models.store import PROMPT_FILES, ModelDir, ModelStore, rebuild_command, verify_checksums
from .context import Variables, cells_below_shown
from .engine import Candidate, Engine, GenerationResult
from .postprocess import (
    PRODUCT_RULES,
    Trimmed,
    Trimmer,
    confidence,
    kept_logprobs,
    resolve_mode,
)
from .postprocess.rules import Rules
from .prompt import Prompt, PromptBuilder, PromptLayout
from .protocol import Completion, CompletionReply, CompletionRequest, ContextInfo, Timings
from .settings import ServiceSettings
from .stopping import MaxNewTokens, StopTokens, TextComplete

log = logging.getLogger(__name__)

# Alternatives asked for when the first is cut to nothing. Measured on the 46 tasks of the
# standard eval run whose first was cut (mostly a cell marker or a fence): 3 left 8 of them
# empty, 5 left 2, with the same exact matches (RESULTS.md).
FALLBACK_ALTERNATIVES = 5


class CompletionService:
    """The pipeline over one engine and the prompt format of the model it serves."""

    def __init__(self, engine: Engine, fmt: PromptFormat, name: str,
                 settings: ServiceSettings = ServiceSettings(), *,
                 layout: PromptLayout | None = None, rules: Rules = PRODUCT_RULES):
        self.engine = engine
        self.name = name
        self.settings = settings
        self.fmt = fmt
        self.rules = rules
        tokenizer = engine.tokenizer
        self.layout = layout or PromptLayout(budget_above=settings.context_tokens)
        self.prompts = PromptBuilder.for_tokenizer(tokenizer, fmt, layout=self.layout)
        self.stop_ids = frozenset(
            i for i in (tokenizer.token_to_id(t) for t in fmt.stop_tokens) if i is not None
        )
        self.latencies_ms: deque[float] = deque(maxlen=200)

    def variant(self, layout: PromptLayout, rules: Rules) -> CompletionService:
        """The same engine (and KV caches) under another prompt layout and trimmer rules: the
        evaluation's variants, the naive baseline among them."""
        return CompletionService(self.engine, self.fmt, self.name, self.settings,
                                 layout=layout, rules=rules)

    @classmethod
    def load(cls, model: ModelDir, settings: ServiceSettings) -> CompletionService:
        """The service on the in-process ONNX Runtime engine for a built model, or on the shared
        engine at `settings.engine_url` (then only the model's tokenizer is read)."""
        if settings.engine_url:
            from .http_engine import HttpEngine

            engine = HttpEngine.for_model(model, settings)
            engine.probe()  # /codecomp/status says at once whether the engine answers
            return cls(engine, model.manifest.prompt, model.manifest.display_name, settings)
        from .onnx_engine import OnnxEngine

        engine = OnnxEngine(
            model.path,
            device=settings.device,
            threads=settings.threads,
            context_length=settings.context_length,
            cache_slots=settings.kv_cache_slots,
            # A pairing decodes speculatively; its drafter can be turned off (a setting).
            draft=draft_source(model) if settings.speculative else None,
        )
        return cls(engine, model.manifest.prompt, model.manifest.display_name, settings)

    def prompt(self, request: CompletionRequest, variables: Variables = Variables()) -> Prompt:
        """The prompt, with room left for the completion where the engine's context is known."""
        context = self.engine.context_length
        return self.prompts.build(
            request.prefix, request.suffix, request.cells,
            cells_below_shown(request, self.layout.below), variables.block,
            max_tokens=context - self.cap(request) if context else None,
        )

    def cap(self, request: CompletionRequest) -> int:
        """The most tokens the completion of `request` may have."""
        mode = resolve_mode(request.prefix, request.suffix, request.mode)
        default = (self.settings.max_new_tokens if mode == "line"
                   else self.settings.block_max_new_tokens)
        return min(request.max_new_tokens or default, self.settings.max_new_tokens_limit)

    def complete(
        self,
        request: CompletionRequest,
        variables: Variables = Variables(),
        *,
        streamer: Callable[[str], None] | None = None,
        cancel: threading.Event | None = None,
        trace: list[dict] | None = None,
    ) -> CompletionReply:
        """`trace`, when given, receives for each completion its kept token log-probabilities
        (the evaluation compares confidence statistics on them), the raw text and why the first
        alternative was cut, when it was cut to nothing."""
        started = time.perf_counter()
        prompt = self.prompt(request, variables)
        if not prompt.ids:  # nothing to go on (an empty cell, and no FIM format to frame it)
            return CompletionReply([], self.name, self.engine.device)
        mode = resolve_mode(request.prefix, request.suffix, request.mode)
        trimmer = Trimmer(request.prefix, request.suffix, mode, self.rules)
        cap = self.cap(request)
        generate = partial(
            self.engine.generate, prompt.ids, heal=prompt.heal, cancel=cancel,
            criteria=[MaxNewTokens(cap), StopTokens(self.stop_ids),
                      TextComplete(trimmer.is_complete)],
            cache_key=request.path or "",
        )
        context_ms = (time.perf_counter() - started) * 1000
        result = generate(n=request.n, streamer=(lambda text: streamer(trimmer.shown(text)))
                          if streamer else None)
        trimmed = [trimmer.trim(c.text) for c in result.candidates]
        emptied = (trimmed[0].cut_by or "cap") if trimmed and not trimmed[0].text else ""
        if self.rules is PRODUCT_RULES and request.n == 1 and emptied:
            trimmed = self._next_usable(generate, result, trimmer)
        completions = self._completions(result.candidates, trimmed, prompt.heal, emptied, trace)
        total = (time.perf_counter() - started) * 1000
        self.latencies_ms.append(total)
        t = result.timings_ms
        return CompletionReply(
            completions=completions,
            model=self.name,
            device=self.engine.device,
            context=ContextInfo(
                prompt_tokens=result.prompt_tokens,
                cached_tokens=result.cached_tokens,
                cells=prompt.cells_used,
                variables=variables.count,
                kernel=variables.kernel,
            ),
            timings_ms=Timings(
                context=round(context_ms, 1),
                prefill=round(t.get("prefill", 0.0), 1),
                decode=round(t.get("decode", 0.0), 1),
                total=round(total, 1),
                first_token=round(context_ms + t.get("first_token", 0.0), 1),
            ),
        )

    @staticmethod
    def _next_usable(generate, result: GenerationResult, trimmer: Trimmer) -> list[Trimmed]:
        """The first alternative was cut to nothing (a line the suffix already has, a comment,
        scaffolding): the first usable of the next ones is the suggestion. The prompt is in the
        KV cache, so this costs only their decoding. `result` takes the chosen candidate."""
        retry = generate(n=FALLBACK_ALTERNATIVES)
        result.timings_ms["decode"] = (result.timings_ms.get("decode", 0.0)
                                       + retry.timings_ms.get("decode", 0.0))
        trimmed = [trimmer.trim(c.text) for c in retry.candidates]
        best = next((k for k, trim in enumerate(trimmed) if trim.text), 0)
        result.candidates = retry.candidates[best:best + 1]
        return trimmed[best:best + 1]

    def _completions(self, candidates: list[Candidate], trimmed: list[Trimmed], heal: str,
                     emptied: str, trace: list[dict] | None) -> list[Completion]:
        completions: list[Completion] = []
        for candidate, trim in zip(candidates, trimmed):
            text = trim.text
            # A NaN score means broken weights (the checksums catch most): never sent as JSON.
            if math.isfinite(candidate.score) and all(
                    c.text != text for c in completions) and (text or not completions):
                logprobs = kept_logprobs(candidate.text, text, candidate.token_ids,
                                         candidate.token_logprobs, self._decode, heal)
                completions.append(Completion(text, round(candidate.score, 4),
                                              confidence(logprobs)))
                if trace is not None:
                    trace.append({"logprobs": logprobs, "raw": candidate.text,
                                  "first_emptied_by": emptied})
        return completions

    def warm(self, request: CompletionRequest, variables: Variables = Variables(), *,
             cancel: threading.Event | None = None) -> int:
        """Prefill the prompt of `request` into the engine's KV cache and generate nothing, so
        that the first keystroke at this place finds it ready (issue 17). Returns the prompt
        tokens now cached. Raises `Cancelled` once `cancel` is set; what was filled stays."""
        prompt = self.prompt(request, variables)
        if not prompt.ids:
            return 0
        prefill = getattr(self.engine, "prefill", None)
        if prefill is not None:
            return prefill(prompt.ids, cancel=cancel, cache_key=request.path or "")
        # An engine without a prefill-only path (a shared server): one token costs the same.
        result = self.engine.generate(prompt.ids, criteria=[MaxNewTokens(1)], heal=prompt.heal,
                                      cancel=cancel, cache_key=request.path or "")
        return result.prompt_tokens

    def _decode(self, ids) -> str:
        return self.engine.tokenizer.decode(list(ids), skip_special_tokens=True)

    def context_report(self, request: CompletionRequest,
                       variables: Variables = Variables()) -> dict:
        """What the model would see for `request`: for teaching transparency and debugging."""
        prompt = self.prompt(request, variables)
        return {
            "model": self.name,
            "mode": resolve_mode(request.prefix, request.suffix, request.mode),
            "prompt_tokens": len(prompt.ids),
            "heal": prompt.heal,
            "cells_used": prompt.cells_used,
            "cells_dropped": prompt.dropped_cells,
            "variables": variables.count,
            "kernel": variables.kernel,
            "parts": [
                {"kind": p.kind, "index": p.index, "tokens": p.tokens, "text": p.text}
                for p in prompt.parts
            ],
            "prompt_text": self.engine.tokenizer.decode(prompt.ids, skip_special_tokens=False),
        }

    def latency_summary(self) -> dict:
        values = list(self.latencies_ms)
        return {
            "last": values[-1] if values else None,
            "p50": round(statistics.median(values), 1) if values else None,
            "count": len(values),
        }


class ServiceLoader:
    """Loads the service once, in a background thread; reports its state meanwhile."""

    def __init__(self, settings: ServiceSettings):
        self.settings = settings
        self.state = "idle"  # idle -> loading -> ready | failed
        self.error: CodecompError | None = None
        self.service: CompletionService | None = None
        self.load_seconds: float | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @classmethod
    def serving(cls, service: CompletionService, settings: ServiceSettings) -> ServiceLoader:
        """A loader that already holds `service` (an engine built elsewhere, or a fake)."""
        loader = cls(settings)
        loader.service, loader.state = service, "ready"
        return loader

    def start(self) -> None:
        with self._lock:
            if self._thread is None and self.service is None:
                self.state = "loading"
                self._thread = threading.Thread(target=self._load, name="codecomp-load",
                                                daemon=True)
                self._thread.start()

    def wait(self, timeout: float | None = None) -> CompletionService:
        """Start if needed, wait, and return the service or raise why it is not there."""
        self.start()
        if self._thread is not None:
            self._thread.join(timeout)
        return self.get()

    def get(self) -> CompletionService:
        if self.service is not None:
            return self.service
        if self.state == "failed" and self.error is not None:
            raise self.error
        raise ModelNotReady("the model is loading")

    def _load(self) -> None:
        started = time.perf_counter()
        try:
            store = ModelStore(self.settings.cache_dir)
            only = PROMPT_FILES if self.settings.engine_url else None
            model = store.resolve(self.settings.model, device=_device_hint(self.settings.device),
                                  only=only)
            verify_checksums(model, only)
            self.service = CompletionService.load(model, self.settings)
            self.state = "ready"
            self.load_seconds = round(time.perf_counter() - started, 2)
            log.info("codecomp: %s ready on %s in %.1f s", self.service.name,
                     self.service.engine.device, self.load_seconds)
        except CodecompError as exc:
            self.error, self.state = exc, "failed"
            log.error("codecomp: the model is not available: %s", exc)
        except Exception as exc:  # an unexpected failure must not take the server down
            # A file the runtime cannot read (a garbage tokenizer.json): rebuilding fixes it.
            self.error = CodecompError(f"loading failed: {exc}",
                                       fix=rebuild_command(self.settings.model))
            self.state = "failed"
            log.exception("codecomp: loading the model failed")

    def status(self) -> dict:
        service = self.service
        engine = _engine_status(service)
        state, error = self.state, self.error
        if engine and engine["state"] in ("unreachable", "error") and state == "ready":
            # A state of its own: the model is fine, the shared engine is not (it recovers by
            # itself: each request and each status poll tries it again).
            state, error = "engine_unavailable", CodecompError(engine["error"], engine["fix"])
        return {
            "state": state,
            "engine": engine,
            "model": service.name if service else self.settings.model,
            "device": service.engine.device if service else None,
            "providers": service.engine.providers if service else [],
            "fallback_reason": service.engine.fallback_reason if service else None,
            "load_seconds": self.load_seconds,
            "error": error.message if error else None,
            "fix": error.fix if error else None,
            "latency_ms": service.latency_summary() if service else {"last": None, "p50": None},
            "min_confidence": self.settings.min_confidence,
        }


def _engine_status(service: CompletionService | None) -> dict | None:
    """The shared engine's URL and state; None for an in-process engine."""
    status = getattr(service.engine, "status", None) if service else None
    return status() if callable(status) else None


def _device_hint(device: str) -> str:
    return "cuda" if device == "cuda" else "cpu"
