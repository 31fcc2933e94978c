"""Token texts for the constrained choice of token healing, and a token's log-probability."""

from __future__ import annotations

import bisect

import numpy as np

from .engine import continues_heal


class Vocabulary:
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
        ids = [i for text, i in self._sorted[lo:hi] if continues_heal(text, heal)]
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


def log_softmax_at(logits: np.ndarray, index: int) -> float:
    top = float(logits.max())
    return float(logits[index] - top - np.log(np.exp(logits - top).sum()))
