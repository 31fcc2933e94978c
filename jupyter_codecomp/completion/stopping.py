"""Stopping criteria for the generation loop, in the manner of Hugging Face's `StoppingCriteria`.

Each criterion sees the state after every token and says whether generation is finished. The
engine stops when any says so; the text rules themselves live in `postprocess`, so that what
stops generation and what trims its result can never disagree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass
class GenerationState:
    token_ids: list[int]  # generated so far, this alternative
    text: str  # their text, without the token-healing prefix


class StoppingCriterion(Protocol):
    def __call__(self, state: GenerationState) -> bool: ...


@dataclass(frozen=True)
class MaxNewTokens:
    limit: int

    def __call__(self, state: GenerationState) -> bool:
        return len(state.token_ids) >= self.limit


@dataclass(frozen=True)
class StopTokens:
    """EOS, FIM and chat markers: the model has nothing more to say."""

    ids: frozenset[int]

    def __call__(self, state: GenerationState) -> bool:
        return bool(state.token_ids) and state.token_ids[-1] in self.ids


@dataclass(frozen=True)
class TextComplete:
    """Stop as soon as post-processing would cut the text: end of line or block, a closing bracket
    that belongs to the suffix, or the suffix starting to repeat."""

    is_complete: Callable[[str], bool]

    def __call__(self, state: GenerationState) -> bool:
        return self.is_complete(state.text)


def any_stops(criteria: list[StoppingCriterion], state: GenerationState) -> bool:
    return any(criterion(state) for criterion in criteria)
