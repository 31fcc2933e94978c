"""The in-process engine: an ONNX model on ONNX Runtime GenAI, driven token by token.

It implements `engine.Engine`: token ids and stopping criteria in, candidates out. What it adds to ONNX Runtime GenAI's generator:
- prefix reuse: the KV cache of the longest common token prefix with the previous prompt is kept
  (`rewind_to`), so one more typed character costs only the new tokens;
- token healing: the prompt's last partial token is regenerated, constrained to start with the
  removed text, so a cursor after `np.` or an indentation does not yield stray whitespace;
- n alternatives that branch on the first token's best choices, then continue greedily;
- cancellation between tokens, streaming of the first alternative, one generation at a time.
"""

from __future__ import annotations

import bisect
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ..errors import Cancelled, ModelNotReady
from .engine import Candidate, GenerationResult, Streamer
from .stopping import GenerationState, StoppingCriterion, any_stops

log = logging.getLogger(__name__)

MIN_PREFILL_TOKENS = 2
# A warm prefill goes in chunks of this many tokens and checks for a completion between them:
# about 0.3 s each on two CPU cores (a completion waits at most that long behind a warm).
PREFILL_CHUNK_TOKENS = 64


class OnnxEngine:
    def __init__(
        self,
        model_path: Path | str,
        *,
        device: str = "auto",
        threads: int = 0,
        context_length: int = 4096,
        cache_slots: int = 4,
    ):
        import onnxruntime_genai as og
        from tokenizers import Tokenizer

        # Nothing leaves the machine: GenAI's optional telemetry stays off.
        og.disable_telemetry_events()
        self._og = og
        self.model_path = Path(model_path)
        self.tokenizer = Tokenizer.from_file(str(self.model_path / "tokenizer.json"))
        self.model, self.device, self.providers, self.fallback_reason = self._load(
            device, threads
        )
        self.context_length = context_length
        self.vocab = _Vocabulary(self.tokenizer)
        self.cache_slots = max(1, cache_slots)
        self._lock = threading.Lock()
        # One KV cache per notebook (least recently used first): students in one server do not
        # evict each other's prompt prefix. Each holds context_length positions.
        self._slots: OrderedDict[str, _KVCache] = OrderedDict()
        self._kv: _KVCache | None = None  # the slot of the generation under way

    # --- loading ------------------------------------------------------------------------------

    def _load(self, device: str, threads: int):
        """Try CUDA when asked for or when automatic, and fall back to the CPU with the reason."""
        og = self._og
        reason = None
        if device in ("auto", "cuda"):
            try:
                return og.Model(self._config("cuda", threads)), "cuda", ["cuda", "cpu"], None
            except Exception as exc:  # no GPU, no CUDA libraries, or an EP that fails to start
                reason = str(exc).splitlines()[0][:300]
                level = logging.WARNING if device == "cuda" else logging.INFO
                log.log(level, "CUDA execution provider unavailable, using the CPU: %s", reason)
        try:
            return og.Model(self._config("cpu", threads)), "cpu", ["cpu"], reason
        except Exception as exc:
            raise ModelNotReady(
                f"ONNX Runtime cannot load {self.model_path}: {str(exc).splitlines()[0]}",
                fix="rebuild it: jupyter codecomp model build NAME --force",
            ) from None

    def _config(self, provider: str, threads: int):
        config = self._og.Config(str(self.model_path))
        config.clear_providers()
        if provider != "cpu":
            config.append_provider(provider)
        # GenAI's own default used one thread of two cores here (measured: 873-token prefill
        # 9.3 s against 4.9 s with both), so 0 means every core this process may use.
        threads = threads or len(os.sched_getaffinity(0))
        options = {"intra_op_num_threads": threads, "inter_op_num_threads": 1}
        config.overlay(json.dumps({"model": {"decoder": {"session_options": options}}}))
        return config

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
            if cancel is not None and cancel.is_set():  # superseded while it waited its turn
                raise Cancelled()
            self._kv = self._slot(cache_key)
            try:
                return self._generate(prompt_ids, criteria, heal, n, streamer, cancel)
            except BaseException as exc:
                if not isinstance(exc, Cancelled):
                    # An interrupt (KeyboardInterrupt in a kernel) may fall between the generator
                    # and our record of it: start afresh next time rather than trust the cache.
                    self._slots.pop(cache_key, None)
                raise

    def _generate(self, prompt_ids, criteria, heal, n, streamer, cancel) -> GenerationResult:
        started = time.perf_counter()
        cached = self._prefill(prompt_ids)
        prefilled = time.perf_counter()
        first_logits = self._logits()
        timings = {"prefill": (prefilled - started) * 1000}
        candidates = []
        for rank in range(n):
            first = self.vocab.ranked(first_logits, heal, rank)
            if first is None:
                break
            if rank:
                self._kv.rewind(len(prompt_ids))
            candidate = self._decode(
                first, first_logits, heal, criteria,
                streamer if rank == 0 else None, cancel, timings, started,
            )
            candidates.append(candidate)
        timings["decode"] = (time.perf_counter() - prefilled) * 1000
        timings["total"] = (time.perf_counter() - started) * 1000
        return GenerationResult(candidates, len(prompt_ids), cached, timings)

    def _decode(self, first, first_logits, heal, criteria, streamer, cancel, timings, started):
        token, logits = first, first_logits
        ids: list[int] = []
        logprobs: list[float] = []
        remaining_heal = heal
        finished_by = "cap"
        while True:
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            logprobs.append(_log_softmax_at(logits, token))
            ids.append(token)
            self._kv.append([token])
            remaining_heal = self.vocab.consume(remaining_heal, token)
            text = self._text(ids, heal)
            if "first_token" not in timings:
                timings["first_token"] = (time.perf_counter() - started) * 1000
            state = GenerationState(ids, text)
            if not remaining_heal and any_stops(criteria, state):
                finished_by = "criteria"
                break
            if len(self._kv.sequence) >= self.context_length:
                break
            if streamer is not None and not remaining_heal and not text.endswith("\ufffd"):
                streamer(text)
            logits = self._logits()
            token = self.vocab.ranked(logits, remaining_heal, 0)
        return Candidate(text, ids, sum(logprobs) / len(ids), finished_by, logprobs)

    def _text(self, ids: list[int], heal: str) -> str:
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        return text[len(heal):] if text.startswith(heal) else text

    # --- KV cache -----------------------------------------------------------------------------

    def _slot(self, key: str) -> _KVCache:
        slot = self._slots.pop(key, None)
        if slot is None:
            if len(self._slots) >= self.cache_slots:
                self._slots.popitem(last=False)
            slot = _KVCache(self._og, self.model, self.context_length)
        self._slots[key] = slot
        return slot

    def _prefill(self, prompt_ids: list[int]) -> int:
        """Bring the KV cache to `prompt_ids`, reusing the longest common prefix. Returns it."""
        kv = self._kv
        common = _common_prefix(kv.sequence, prompt_ids)
        # Feed at least two tokens: int4 MatMulNBits takes another kernel path for a single row,
        # whose rounding differs; with two or more rows a warm prefill equals a cold one exactly.
        common = min(common, len(prompt_ids) - MIN_PREFILL_TOKENS)
        if common <= 0:
            kv.restart()
            common = 0
        else:
            kv.rewind(common)
        kv.append(prompt_ids[common:])
        return common

    def prefill(self, prompt_ids: list[int], *, cancel: threading.Event | None = None,
                cache_key: str = "") -> int:
        """Fill the KV cache of `cache_key` with `prompt_ids` and generate nothing (a warm
        request). It stops `MIN_PREFILL_TOKENS` short, so the completion that follows feeds at
        least two rows (see `_prefill`), and goes in chunks that check `cancel`: a completion
        waits for at most one chunk, and what was filled stays. Returns the tokens cached."""
        with self._lock:
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            kv = self._slot(cache_key)
            end = len(prompt_ids) - MIN_PREFILL_TOKENS
            done = min(_common_prefix(kv.sequence, prompt_ids), end)
            if done <= 0:
                kv.restart()
                done = 0
            else:
                kv.rewind(done)
            try:
                while end - done >= MIN_PREFILL_TOKENS:
                    if cancel is not None and cancel.is_set():
                        raise Cancelled()
                    step = min(end, done + PREFILL_CHUNK_TOKENS)
                    step = end if end - step < MIN_PREFILL_TOKENS else step
                    kv.append(prompt_ids[done:step])
                    done = step
            except Cancelled:
                raise
            except BaseException:
                self._slots.pop(cache_key, None)
                raise
            return done

    def _logits(self) -> np.ndarray:
        return self._kv.generator.get_logits().reshape(-1)

    def reset(self) -> None:
        """Forget every KV cache (tests use it to compare cold and warm runs)."""
        with self._lock:
            self._slots.clear()


class _KVCache:
    """A GenAI generator and the tokens whose keys and values it holds."""

    def __init__(self, og, model, context_length: int):
        self._og, self._model, self._length = og, model, context_length
        self.generator = None
        self.sequence: list[int] = []

    def restart(self) -> None:
        params = self._og.GeneratorParams(self._model)
        params.set_search_options(max_length=self._length)
        self.generator = self._og.Generator(self._model, params)
        self.sequence = []

    def rewind(self, length: int) -> None:
        self.generator.rewind_to(length)
        del self.sequence[length:]

    def append(self, ids: list[int]) -> None:
        self.generator.append_tokens(ids)
        self.sequence.extend(ids)


class _Vocabulary:
    """Token texts, for constrained choice during token healing."""

    def __init__(self, tokenizer):
        size = tokenizer.get_vocab_size()
        self.texts = tokenizer.decode_batch([[i] for i in range(size)], skip_special_tokens=False)
        self._sorted = sorted((t, i) for i, t in enumerate(self.texts))
        self._keys = [t for t, _ in self._sorted]
        self._by_text: dict[str, list[int]] = {}
        for i, t in enumerate(self.texts):
            self._by_text.setdefault(t, []).append(i)

    def allowed(self, heal: str) -> np.ndarray:
        """Tokens that are compatible with the remaining healing text: they start with it, or
        are a prefix of it (then the next token goes on healing)."""
        lo = bisect.bisect_left(self._keys, heal)
        hi = bisect.bisect_left(self._keys, heal + "\U0010ffff")
        ids = [i for _, i in self._sorted[lo:hi]]
        for end in range(1, len(heal)):
            ids += self._by_text.get(heal[:end], [])
        return np.array(sorted(set(ids)), dtype=np.int64)

    def ranked(self, logits: np.ndarray, heal: str, rank: int) -> int | None:
        if not heal:
            if rank >= logits.shape[0]:
                return None
            return int(np.argpartition(-logits, rank)[rank]) if rank else int(np.argmax(logits))
        allowed = self.allowed(heal)
        if rank >= len(allowed):
            return None
        order = np.argsort(-logits[allowed])
        return int(allowed[order[rank]])

    def consume(self, heal: str, token: int) -> str:
        text = self.texts[token]
        return heal[len(text):] if heal.startswith(text) else ""


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _log_softmax_at(logits: np.ndarray, index: int) -> float:
    top = float(logits.max())
    return float(logits[index] - top - np.log(np.exp(logits - top).sum()))
