"""KV caches of the in-process engine: one GenAI generator per model and notebook.

A `KVCache` is a GenAI generator and the token ids whose keys and values it holds; it moves to a
new prompt by keeping the longest common prefix (`rewind_to`) and appending the rest. `KVSlots`
keeps one `Slot` per notebook, least recently used first, so students in one server do not
evict each other's prompt prefix. A slot holds the caches of every model that reads the prompt
(the verifier, and a draft model when one drafts), so `kv_cache_slots` still counts notebooks
and a slot's memory is the sum of its caches (`bytes_per_slot`).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..models.pairing import LAST_LOGITS

# Feed at least two tokens to a prefill: int4 MatMulNBits takes another kernel path for a single
# row, whose rounding differs; with two or more rows a warm prefill equals a cold one exactly.
MIN_PREFILL_TOKENS = 2
# A prompt goes in chunks of this many tokens. GenAI's append_tokens holds the GIL for the whole
# call: measured on two cores, a 1500-token prompt in one call froze the server's event loop for
# 9.5-10.9 s; in chunks of 256 for 2.1-2.5 s, of 64 for 0.7 s, at 4-35 % more prefill time, with
# the same logits. Between chunks the caller yields the GIL and may stop (a superseded request).
PREFILL_CHUNK_TOKENS = 128


class KVCache:
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

    def logits(self) -> np.ndarray:
        """The next token's logits after the last append."""
        return self.generator.get_logits().reshape(-1)

    def last_logits(self, rows: int) -> np.ndarray:
        """The logits of the last `rows` positions of the last append (a verifier export)."""
        return self.generator.get_output(LAST_LOGITS)[0, -rows:]

    def sync(self, ids: list[int], keep_last: int = MIN_PREFILL_TOKENS,
             between_chunks: Callable[[], None] | None = None) -> int:
        """Bring the cache to `ids`, reusing the longest common prefix but feeding at least
        `keep_last` tokens, in chunks of `PREFILL_CHUNK_TOKENS` (the last one never shorter than
        `MIN_PREFILL_TOKENS`); `between_chunks` runs between two. Returns the tokens reused.
        Whatever stops it midway, `sequence` stays what the cache holds."""
        common = min(common_prefix(self.sequence, ids), len(ids) - keep_last)
        if self.generator is None or common <= 0:
            self.restart()
            common = 0
        else:
            self.rewind(common)
        done = common
        while done < len(ids):
            step = min(len(ids), done + PREFILL_CHUNK_TOKENS)
            if len(ids) - step < MIN_PREFILL_TOKENS:
                step = len(ids)
            self.append(ids[done:step])
            done = step
            if between_chunks is not None and done < len(ids):
                between_chunks()
        return common

    @property
    def free(self) -> int:
        """Positions left before the cache is full."""
        return self._length - len(self.sequence)


@dataclass
class Slot:
    """One notebook's caches: the verifier's, and the draft model's when one drafts."""

    target: KVCache
    draft: KVCache | None = None


class KVSlots:
    """Up to `count` notebooks' slots, the least recently used evicted first."""

    def __init__(self, og, models: list, context_length: int, count: int):
        self._og, self._models, self._length = og, models, context_length
        self.count = max(1, count)
        self._slots: OrderedDict[str, Slot] = OrderedDict()

    def get(self, key: str) -> Slot:
        slot = self._slots.pop(key, None)
        if slot is None:
            if len(self._slots) >= self.count:
                self._slots.popitem(last=False)
            caches = [KVCache(self._og, m, self._length) for m in self._models]
            slot = Slot(*caches)
        self._slots[key] = slot
        return slot

    def drop(self, key: str) -> None:
        self._slots.pop(key, None)

    def clear(self) -> None:
        self._slots.clear()


def kv_bytes_per_position(model_path: Path) -> int:
    """Keys and values of one position in every layer, fp32 on the CPU (GenAI's layout)."""
    decoder = json.loads((Path(model_path) / "genai_config.json").read_text())["model"]["decoder"]
    return 2 * decoder["num_hidden_layers"] * decoder["num_key_value_heads"] * decoder[
        "head_size"] * 4


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
