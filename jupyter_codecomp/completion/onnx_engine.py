"""The in-process engine: an ONNX model on ONNX Runtime GenAI, driven token by token.

It implements `engine.Engine`: token ids and stopping criteria in, candidates out. What it adds to
ONNX Runtime GenAI's generator:
- prefix reuse: the KV cache of the longest common token prefix with the previous prompt is kept
  (`rewind_to`), so one more typed character costs only the new tokens (`kv_cache`);
- token healing: the prompt's last partial token is regenerated, constrained to start with the
  removed text, so a cursor after `np.` or an indentation does not yield stray whitespace;
- n alternatives that branch on the first token's best choices, then continue greedily;
- speculative decoding when a drafter is given: a draft model or prompt lookup proposes tokens
  that the model verifies in one pass, and the text stays the model's greedy text (`speculative`);
- cancellation between tokens, streaming of the first alternative, one generation at a time.
Each call's state lives in a `_Run` passed down, not on the engine.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import Cancelled, ModelNotReady
from .engine import Candidate, GenerationResult, Streamer
from .kv_cache import MIN_PREFILL_TOKENS, KVCache, KVSlots, Slot
from .speculative import (
    MAX_DRAFT,
    PROMPT_LOOKUP,
    Drafter,
    DraftLength,
    ModelDrafter,
    PromptLookupDrafter,
    accept,
    check_same_vocabulary,
)
from .stopping import GenerationState, StoppingCriterion, any_stops
from .vocabulary import Vocabulary, log_softmax_at

log = logging.getLogger(__name__)

# Between two prefill chunks (kv_cache.PREFILL_CHUNK_TOKENS): the server's event loop gets the
# GIL, so it answers other requests, and a superseding keystroke or a completion that pre-empts
# a warm request stops this one there.
GIL_YIELD_S = 0.005


@dataclass
class _Run:
    """One `generate` call: its cache slot, what it was asked, and its timings."""

    slot: Slot
    prompt_ids: list[int]
    criteria: list[StoppingCriterion]
    heal: str
    cancel: threading.Event | None
    started: float = field(default_factory=time.perf_counter)
    timings: dict[str, float] = field(default_factory=dict)

    def check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled()

    def between_chunks(self) -> None:
        time.sleep(GIL_YIELD_S)
        self.check_cancel()


@dataclass
class _Next:
    """A chosen token, the logits it was chosen from, and whether the cache holds it already
    (an accepted draft) or it still has to be fed."""

    token: int
    logits: np.ndarray
    cached: bool = False


class OnnxEngine:
    def __init__(
        self,
        model_path: Path | str,
        *,
        device: str = "auto",
        threads: int = 0,
        context_length: int = 4096,
        cache_slots: int = 4,
        draft: Path | str | None = None,
    ):
        """`draft` turns on speculative decoding: a draft model's folder (same vocabulary), or
        `speculative.PROMPT_LOOKUP`. The model must then be a verifier export."""
        import onnxruntime_genai as og
        from tokenizers import Tokenizer

        # Nothing leaves the machine: GenAI's optional telemetry stays off.
        og.disable_telemetry_events()
        self._og = og
        self.model_path = Path(model_path)
        self.tokenizer = Tokenizer.from_file(str(self.model_path / "tokenizer.json"))
        self.model, self.device, self.providers, self.fallback_reason = self._load(
            self.model_path, device, threads
        )
        self.context_length = context_length
        self.vocab = Vocabulary(self.tokenizer)
        self.drafter = self._drafter(draft, threads)
        self.draft_length = DraftLength()
        models = [self.model]
        if isinstance(self.drafter, ModelDrafter):
            models.append(self.drafter.model)
        self._lock = threading.Lock()
        # Each slot holds context_length positions of every model that reads the prompt.
        self._slots = KVSlots(og, models, context_length, cache_slots)

    # --- loading ------------------------------------------------------------------------------

    def _load(self, path: Path, device: str, threads: int):
        """Try CUDA when asked for or when automatic, and fall back to the CPU with the reason."""
        og = self._og
        reason = None
        if device in ("auto", "cuda"):
            try:
                return og.Model(self._config(path, "cuda", threads)), "cuda", ["cuda", "cpu"], None
            except Exception as exc:  # no GPU, no CUDA libraries, or an EP that fails to start
                reason = str(exc).splitlines()[0][:300]
                level = logging.WARNING if device == "cuda" else logging.INFO
                log.log(level, "CUDA execution provider unavailable, using the CPU: %s", reason)
        try:
            return og.Model(self._config(path, "cpu", threads)), "cpu", ["cpu"], reason
        except Exception as exc:
            raise ModelNotReady(
                f"ONNX Runtime cannot load {path}: {str(exc).splitlines()[0]}",
                fix="rebuild it: jupyter codecomp model build NAME --force",
            ) from None

    def _config(self, path: Path, provider: str, threads: int):
        config = self._og.Config(str(path))
        config.clear_providers()
        if provider != "cpu":
            config.append_provider(provider)
        # GenAI's own default used one thread of two cores here (measured: 873-token prefill
        # 9.3 s against 4.9 s with both), so 0 means every core this process may use.
        threads = threads or len(os.sched_getaffinity(0))
        options = {"intra_op_num_threads": threads, "inter_op_num_threads": 1}
        config.overlay(json.dumps({"model": {"decoder": {"session_options": options}}}))
        return config

    def _drafter(self, draft: Path | str | None, threads: int) -> Drafter | None:
        if draft is None:
            return None
        self._check_verifier()
        if str(draft) == PROMPT_LOOKUP:
            return PromptLookupDrafter()
        path = Path(draft)
        check_same_vocabulary(self.model_path, path)
        # The draft runs on the verifier's device: GenAI keeps both caches on one provider.
        model, *_ = self._load(path, self.device, threads)
        return ModelDrafter(model, path)

    def _check_verifier(self) -> None:
        probe = KVCache(self._og, self.model, 8)
        probe.restart()
        probe.append([0, 1])
        try:
            probe.last_logits(2)
        except Exception:
            raise ModelNotReady(
                f"{self.model_path} returns only the last position's logits, so it cannot verify "
                "drafts",
                fix="build a pairing recipe: jupyter codecomp model build qwen2.5-coder-1.5b-spec",
            ) from None

    # --- generation ---------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def token_id(self, token: str) -> int | None:
        return self.tokenizer.token_to_id(token)

    def generate(
        self,
        prompt_ids: list[int],
        *,
        criteria: list[StoppingCriterion],
        heal: str = "",
        n: int = 1,
        streamer: Streamer | None = None,
        cancel: threading.Event | None = None,
        cache_key: str = "",
    ) -> GenerationResult:
        """Generate up to `n` candidates after `prompt_ids`.

        `heal` is text removed from the end of the prompt: the first tokens must reproduce it,
        and it is not part of the returned text. `cache_key` (a notebook path) picks the KV cache
        whose prefix is reused. Raises `Cancelled` if `cancel` gets set.
        """
        if not prompt_ids:
            raise ValueError("empty prompt")
        with self._lock:
            run = _Run(self._slots.get(cache_key), prompt_ids, criteria, heal, cancel)
            run.check_cancel()  # superseded while it waited its turn
            try:
                return self._generate(run, n, streamer)
            except BaseException as exc:
                if not isinstance(exc, Cancelled):
                    # An interrupt (KeyboardInterrupt in a kernel) may fall between the generator
                    # and our record of it: start afresh next time rather than trust the cache.
                    self._slots.drop(cache_key)
                raise

    def _generate(self, run: _Run, n: int, streamer: Streamer | None) -> GenerationResult:
        kv = run.slot.target
        cached = kv.sync(run.prompt_ids, between_chunks=run.between_chunks)
        if self.drafter is not None:
            self.drafter.prefill(run.prompt_ids, run.slot)
        prefilled = time.perf_counter()
        first_logits = kv.logits()
        run.timings["prefill"] = (prefilled - run.started) * 1000
        candidates = []
        for rank in range(n):
            first = self.vocab.ranked(first_logits, run.heal, rank)
            if first is None:
                break
            if rank:
                kv.rewind(len(run.prompt_ids))
            candidates.append(
                self._decode(run, _Next(first, first_logits), streamer if rank == 0 else None)
            )
        run.timings["decode"] = (time.perf_counter() - prefilled) * 1000
        run.timings["total"] = (time.perf_counter() - run.started) * 1000
        return GenerationResult(candidates, len(run.prompt_ids), cached, run.timings)

    def _decode(self, run: _Run, first: _Next, streamer: Streamer | None) -> Candidate:
        """One candidate: commit tokens one at a time (the stopping criteria see each), taking
        them from a queue that a plain step fills with one and a speculative step with several."""
        kv = run.slot.target
        ids: list[int] = []
        logprobs: list[float] = []
        remaining_heal = run.heal
        finished_by = "cap"
        queue = deque([first])
        while True:
            run.check_cancel()
            chosen = queue.popleft()
            logprobs.append(log_softmax_at(chosen.logits, chosen.token))
            ids.append(chosen.token)
            remaining_heal = self.vocab.consume(remaining_heal, chosen.token)
            text = self._text(ids, run.heal)
            run.timings.setdefault("first_token", (time.perf_counter() - run.started) * 1000)
            if not remaining_heal and any_stops(run.criteria, GenerationState(ids, text)):
                finished_by = "criteria"
                break
            if streamer is not None and not remaining_heal and not text.endswith("\ufffd"):
                streamer(text)
            if not queue:
                if kv.free < 1:
                    break
                queue.extend(self._step(run, kv, chosen.token, remaining_heal))
        mean = sum(logprobs) / len(logprobs)
        return Candidate(text, ids, mean, finished_by, token_logprobs=logprobs)

    def _step(self, run: _Run, kv: KVCache, token: int, heal: str) -> list[_Next]:
        """Feed `token` and choose what follows: one token, or with a drafter the drafts the
        model agrees with and its own next token."""
        drafts: list[int] = []
        if self.drafter is not None and not heal:  # healing constrains the choice: no drafts
            k = min(self.draft_length.k, kv.free - 1, MAX_DRAFT)
            if k > 0:
                drafts = self.drafter.propose(kv.sequence + [token], run.slot, k)
        if not drafts:
            kv.append([token])
            logits = kv.logits()
            return [_Next(self.vocab.ranked(logits, heal, 0), logits)]
        kv.append([token] + drafts)
        rows = kv.last_logits(len(drafts) + 1)
        kept = accept(drafts, rows)
        self.draft_length.record(len(drafts), kept)
        if kept < len(drafts):
            kv.rewind(len(kv.sequence) - (len(drafts) - kept))
        chosen = [_Next(d, rows[i], cached=True) for i, d in enumerate(drafts[:kept])]
        return chosen + [_Next(int(np.argmax(rows[kept])), rows[kept])]

    def _text(self, ids: list[int], heal: str) -> str:
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        return text[len(heal):] if text.startswith(heal) else text

    # --- warm requests and the caches ---------------------------------------------------------

    def prefill(self, prompt_ids: list[int], *, cancel: threading.Event | None = None,
                cache_key: str = "") -> int:
        """Fill the KV cache of `cache_key` with `prompt_ids` and generate nothing (a warm
        request); a draft model's cache too. It stops `MIN_PREFILL_TOKENS` short, so the
        completion that follows feeds at least two rows (see `KVCache.sync`), and goes in chunks
        that check `cancel`: a completion waits for at most one chunk, and what was filled stays.
        Returns the tokens cached."""
        head = prompt_ids[:-MIN_PREFILL_TOKENS]
        with self._lock:
            run = _Run(self._slots.get(cache_key), head, [], "", cancel)
            run.check_cancel()
            if len(head) < MIN_PREFILL_TOKENS:
                return 0
            try:
                for kv in (run.slot.target, run.slot.draft):
                    if kv is not None:
                        kv.sync(head, between_chunks=run.between_chunks)
            except Cancelled:
                raise
            except BaseException:
                self._slots.drop(cache_key)
                raise
            return len(run.slot.target.sequence)

    def reset(self) -> None:
        """Forget every KV cache (tests use it to compare cold and warm runs)."""
        with self._lock:
            self._slots.clear()
