"""A scripted engine for the server's tests: no model, milliseconds per request.

It implements `engine.Engine` with a byte-level tokenizer built in memory and a `script` that
maps the prompt text to the completion text. It honours the stopping criteria, cancellation,
streaming, token healing and prefix caching the way the real engine does, and can hold a
generation at a gate or slow it per token, which is how the tests stage a busy server or a
cancellation mid-stream. The real-model tests run beside it (tests/test_engine.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from ..errors import Cancelled
from .engine import Candidate, GenerationResult, Streamer
from .stopping import GenerationState, StoppingCriterion, any_stops

FIM_TOKENS = ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>")
END_OF_TEXT = "<|endoftext|>"


def byte_tokenizer() -> Tokenizer:
    """One token per byte, plus the FIM and end-of-text specials."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokenizer = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([*FIM_TOKENS, END_OF_TEXT])
    return tokenizer


class FakeEngine:
    device = "fake"
    providers = ["fake"]
    fallback_reason = None
    context_length = None

    def __init__(
        self,
        script: Callable[[str], str] = lambda prompt: "",
        *,
        token_delay: float = 0.0,
        gate: threading.Event | None = None,
        prefill_delay: float = 0.0,
    ):
        self.tokenizer = byte_tokenizer()
        self.script = script
        self.token_delay = token_delay
        self.gate = gate  # when set, generation waits for it before the first token
        self.calls: list[str] = []  # prompt texts, in the order generation started
        self.prefill_delay = prefill_delay  # seconds per prompt token of a warm prefill
        self.warmed: list[str] = []  # prompt texts of finished warm prefills
        self._lock = threading.Lock()
        self._seen: dict[str, list[int]] = {}

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
        with self._lock:  # one generation at a time, like the real engine
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            prompt = self.tokenizer.decode(prompt_ids, skip_special_tokens=False)
            self.calls.append(prompt)
            previous = self._seen.get(cache_key, [])
            cached = next((i for i, (a, b) in enumerate(zip(previous, prompt_ids)) if a != b),
                          min(len(previous), len(prompt_ids)))
            self._seen[cache_key] = list(prompt_ids)
            if self.gate is not None:
                while not self.gate.wait(0.01):
                    if cancel is not None and cancel.is_set():
                        raise Cancelled()
            started = time.perf_counter()
            full = heal + self.script(prompt)
            ids = self.tokenizer.encode(full, add_special_tokens=False).ids
            candidate = self._decode(ids, heal, criteria, streamer, cancel)
            total = (time.perf_counter() - started) * 1000
            return GenerationResult([candidate][:n], len(prompt_ids), cached,
                                    {"prefill": 0.0, "decode": total, "total": total,
                                     "first_token": total})

    def prefill(self, prompt_ids: list[int], *, cancel: threading.Event | None = None,
                cache_key: str = "") -> int:
        """A warm request: `prefill_delay` per token, stopped by `cancel` between chunks of 16
        tokens with what was filled kept, like `OnnxEngine.prefill`."""
        with self._lock:
            for start in range(0, len(prompt_ids), 16):
                if cancel is not None and cancel.is_set():
                    self._seen[cache_key] = list(prompt_ids[:start])
                    raise Cancelled()
                if self.prefill_delay:
                    time.sleep(self.prefill_delay * len(prompt_ids[start:start + 16]))
            self._seen[cache_key] = list(prompt_ids)
            self.warmed.append(self.tokenizer.decode(prompt_ids, skip_special_tokens=False))
            return len(prompt_ids)

    def _decode(self, ids, heal, criteria, streamer, cancel) -> Candidate:
        generated: list[int] = []
        text = ""
        finished_by = "cap"
        for token in ids:
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            if self.token_delay:
                time.sleep(self.token_delay)
            generated.append(token)
            decoded = self.tokenizer.decode(generated)
            if not decoded.startswith(heal):
                continue  # still healing
            text = decoded[len(heal):]
            if any_stops(criteria, GenerationState(generated, text)):
                finished_by = "criteria"
                break
            if streamer is not None and not text.endswith("\ufffd"):
                streamer(text)
        return Candidate(text, generated, -0.1, finished_by)

    def reset(self) -> None:
        self._seen.clear()
