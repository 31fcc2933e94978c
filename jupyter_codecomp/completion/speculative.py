"""Speculative decoding: a drafter proposes k tokens, the verifier checks them in one pass.

Greedy acceptance: a drafted token is kept only when it is the verifier's own argmax at its
position, and the first disagreement is replaced by the verifier's choice. So the text is the
verifier's greedy text; the drafter changes only how many verifier passes it takes. (One caveat
of the int4 export, measured: ONNX Runtime's MatMulNBits with accuracy_level 4 rounds a one-row
pass differently from a many-row pass, so a near-tie can go the other way with and without
speculation; with accuracy_level 0 the rows agree within 1e-4 and the tokens are identical.)

Two drafters:
- `ModelDrafter`: a small model of the same vocabulary (Qwen2.5-Coder-0.5B for the 1.5B), with its
  own KV cache in the notebook's slot;
- `PromptLookupDrafter`: the tokens that followed the last earlier occurrence of the sequence's
  final n-gram. No second model: notebook code repeats its names and calls.
`DraftLength` adapts k to the acceptance rate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from ..errors import ModelNotReady
from ..models.pairing import LAST_ROWS, PROMPT_LOOKUP
from .kv_cache import KVCache, Slot

# The verifier's pass returns LAST_ROWS rows of logits: k drafts plus the token before them.
MAX_DRAFT = LAST_ROWS - 1


class Drafter(Protocol):
    name: str

    def prefill(self, prompt_ids: list[int], slot: Slot) -> None:
        """Read the prompt along with the verifier, so its cost counts as prefill."""
        ...

    def propose(self, sequence: list[int], slot: Slot, k: int) -> list[int]:
        """Up to `k` tokens likely to follow `sequence` (prompt, generated, the next token)."""
        ...


class ModelDrafter:
    """A small model drafts greedily from its own KV cache, kept in the notebook's slot."""

    name = "draft model"

    def __init__(self, model, path: Path):
        self.model = model
        self.path = Path(path)

    def prefill(self, prompt_ids: list[int], slot: Slot) -> None:
        slot.draft.sync(prompt_ids, keep_last=1)

    def propose(self, sequence: list[int], slot: Slot, k: int) -> list[int]:
        kv: KVCache = slot.draft
        kv.sync(sequence, keep_last=1)  # the logits after the last token
        drafts: list[int] = []
        while True:
            drafts.append(int(np.argmax(kv.logits())))
            if len(drafts) >= k:
                return drafts
            kv.append(drafts[-1:])


@dataclass
class PromptLookupDrafter:
    """Prompt lookup decoding: find the sequence's last `n` tokens earlier in it (the longest n
    that matches, from `longest` down to `shortest`) and propose what followed them."""

    longest: int = 4
    shortest: int = 2
    name: str = PROMPT_LOOKUP

    def prefill(self, prompt_ids: list[int], slot: Slot) -> None:
        pass  # it reads the sequence when it drafts

    def propose(self, sequence: list[int], slot: Slot, k: int) -> list[int]:
        seq = np.asarray(sequence, dtype=np.int64)
        for n in range(self.longest, self.shortest - 1, -1):
            if len(seq) <= n:
                continue
            # Windows that end before the last token, so a following token exists.
            windows = np.lib.stride_tricks.sliding_window_view(seq[:-1], n)
            hits = np.flatnonzero((windows == seq[-n:]).all(axis=1))
            if hits.size:
                start = int(hits[-1]) + n
                return seq[start:start + k].tolist()
        return []


@dataclass
class DraftLength:
    """k grows by one after a round that kept every draft and shrinks by one after a round that
    kept fewer than half; counts feed the benchmark's acceptance rate."""

    k: int = 4
    low: int = 1
    high: int = 8
    rounds: int = 0
    proposed: int = 0
    accepted: int = 0
    history: list[int] = field(default_factory=list, repr=False)

    def record(self, proposed: int, accepted: int) -> None:
        if not proposed:
            return
        self.rounds += 1
        self.proposed += proposed
        self.accepted += accepted
        if accepted == proposed and proposed >= self.k:
            self.k = min(self.high, self.k + 1)
        elif accepted * 2 < proposed:
            self.k = max(self.low, self.k - 1)

    @property
    def acceptance(self) -> float:
        return self.accepted / self.proposed if self.proposed else 0.0

    def snapshot(self) -> dict[str, float]:
        return {"rounds": self.rounds, "proposed": self.proposed, "accepted": self.accepted,
                "acceptance": round(self.acceptance, 3), "k": self.k}


def accept(drafts: list[int], rows: np.ndarray) -> int:
    """How many drafts the verifier keeps: `rows[i]` are its logits after drafts[:i]."""
    for i, token in enumerate(drafts):
        if int(np.argmax(rows[i])) != token:
            return i
    return len(drafts)


def check_same_vocabulary(target: Path, draft: Path) -> None:
    """A draft must speak the verifier's token ids: same tokenizer vocabulary and logits width."""
    def vocab(path: Path) -> tuple[dict, int]:
        tokenizer = json.loads((path / "tokenizer.json").read_text())
        model = tokenizer["model"]["vocab"]
        added = {t["content"]: t["id"] for t in tokenizer.get("added_tokens", [])}
        size = json.loads((path / "genai_config.json").read_text())["model"]["vocab_size"]
        return {**model, **added}, size

    (target_vocab, target_size), (draft_vocab, draft_size) = vocab(target), vocab(draft)
    if target_vocab != draft_vocab or target_size != draft_size:
        differ = sum(1 for t, i in draft_vocab.items() if target_vocab.get(t) != i)
        raise ModelNotReady(
            f"the draft model {draft.name} does not share the vocabulary of {target.name} "
            f"({differ} tokens differ, logits {draft_size} against {target_size})",
            fix="pair models of one family (the recipe's [pair] draft)",
        )
