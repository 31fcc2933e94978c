"""The engine interface: token ids and stopping criteria in, candidates out.

The service depends on this protocol only. `OnnxEngine` (ONNX Runtime GenAI, in-process) is the
product's engine; `FakeEngine` is the scripted stand-in that lets the server's handler, policy
and stream tests run without a model. An engine knows nothing of Jupyter, prompts or HTTP.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from .stopping import StoppingCriterion

Streamer = Callable[[str], None]


def continues_heal(token: str, heal: str) -> bool:
    """Whether a first token may follow a prompt whose `heal` text was held back: it starts with
    it, and after held-back whitespace (an indentation's last space) it goes on with code, not
    more whitespace. Measured on the standard eval: the model sometimes chose a run of spaces
    there ("   " after `:\n` and 3 of 4 spaces), and 8 of 116 answers after an indentation came
    out 3-4 spaces too deep; none since, with exact match and edit similarity unchanged."""
    if not token.startswith(heal):
        return False
    return not (heal.isspace() and token[len(heal):][:1].isspace())


class TokenIds(Protocol):
    """What `encode` returns: a `tokenizers.Encoding`, or an `Encoded`."""

    @property
    def ids(self) -> list[int]: ...


@dataclass
class Encoded:
    ids: list[int]


class TextTokenizer(Protocol):
    """What the pipeline uses of a tokenizer: `tokenizers.Tokenizer` is one, and so is
    `http_engine.EngineTokenizer` (the shared engine encodes, a table decodes)."""

    def encode(self, text: str, add_special_tokens: bool = ...) -> TokenIds: ...

    def decode(self, ids: list[int], skip_special_tokens: bool = ...) -> str: ...

    def token_to_id(self, token: str) -> int | None: ...


@dataclass
class Candidate:
    text: str
    token_ids: list[int]
    score: float  # mean log-probability per token
    finished_by: str  # "criteria" or "cap"
    # The log-probability of each token as it was chosen: the confidence statistic's input.
    token_logprobs: list[float] = field(default_factory=list)


@dataclass
class GenerationResult:
    candidates: list[Candidate]
    prompt_tokens: int
    cached_tokens: int
    timings_ms: dict[str, float] = field(default_factory=dict)


class Engine(Protocol):
    tokenizer: TextTokenizer  # the one tokenizer for prompt building and generation
    device: str  # "cpu", "cuda", or what a remote engine reports
    providers: list[str]
    fallback_reason: str | None  # why the asked-for device is not used, if it is not
    # Tokens of prompt and completion the engine holds for one request (None: not known); the
    # service fits the prompt into it.
    context_length: int | None

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
        """Up to `n` candidates after `prompt_ids`, greedy, the first streamed.

        `heal` is text removed from the end of the prompt: the first tokens must reproduce it,
        and it is not part of the returned text. `cache_key` (a notebook path) names the cache
        whose prefix may be reused. Raises `errors.Cancelled` once `cancel` is set."""
        ...

    def reset(self) -> None:
        """Forget every cached prefix."""
        ...
