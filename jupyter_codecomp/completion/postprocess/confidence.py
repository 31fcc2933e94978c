"""A completion's confidence: from the model's own probabilities of the tokens it kept.

The statistic is chosen on the corpus (benchmarks/RESULTS.md, "Confidence"): `STATISTICS` holds
the ones compared there, `confidence` uses the chosen one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence


def _mean(lp: Sequence[float]) -> float:
    return sum(lp) / len(lp)


STATISTICS: dict[str, Callable[[Sequence[float]], float]] = {
    "mean": _mean,  # geometric mean of the token probabilities
    "min": min,  # the least likely token
    "first": lambda lp: lp[0],
    "joint": sum,  # the probability of the whole text
}
# Chosen on the tune split of the corpus run (benchmarks/RESULTS.md): ranking line and mid-line
# suggestions by it, average precision 66.0 against min 56.0, mean 45.3, first token 42.0.
CHOSEN = "joint"


def confidence(logprobs: Sequence[float], statistic: str = CHOSEN) -> float:
    """In [0, 1]; 0 for nothing kept."""
    if not logprobs:
        return 0.0
    return round(min(1.0, max(0.0, math.exp(STATISTICS[statistic](logprobs)))), 4)


def kept_logprobs(raw: str, kept: str, token_ids: Sequence[int], logprobs: Sequence[float],
                  decode: Callable[[Sequence[int]], str], heal: str = "") -> list[float]:
    """The log-probabilities of the tokens that wrote `kept` (a part of the generated `raw`, the
    trimmer's result), and of the one after it: the model's word that the suggestion ends there."""
    if not kept or not logprobs:
        return []
    start = max(0, raw.find(kept))
    end = start + len(kept)
    chosen: list[float] = []
    low = 0
    for k in range(1, len(token_ids) + 1):
        text = decode(token_ids[:k])
        high = len(text[len(heal):] if text.startswith(heal) else text)
        if low >= end:  # the token after the kept text
            chosen.append(logprobs[k - 1])
            break
        if high > start:
            chosen.append(logprobs[k - 1])
        low = high
    return chosen
