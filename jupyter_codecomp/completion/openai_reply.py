"""What an OpenAI-compatible `/completions` reply says, in the dialects of llama.cpp and vLLM.

One streamed chunk (or a whole reply) becomes a `ReplyChunk`: the new text, the token ids with
their log-probabilities, and what the engine reports of its prompt cache. Both engines put the
token ids where we can read them, so the product's stopping criteria see real token ids:
- llama.cpp: `logprobs.content[i] = {id, token, logprob, top_logprobs: [{id, token, logprob}]}`,
  `timings.cache_n` (every chunk with `timings_per_token`), `usage.prompt_tokens_details`.
- vLLM (with `return_tokens_as_token_ids`): `logprobs.tokens = ["token_id:123", ...]`,
  `token_logprobs`, `top_logprobs = [{"token_id:123": logprob, ...}]`, and `usage` on every chunk
  with `continuous_usage_stats` (`prompt_tokens_details.cached_tokens` needs
  `--enable-prompt-tokens-details`).
An error the engine sends in place of a chunk (both stream it with HTTP 200 once the stream has
started: llama.cpp `{"error": {"message": ...}}`, vLLM `{"object": "error", "message": ...}`) is an
`ErrorReply`; anything else is an `UnreadableReply`: the engine answered, but not with a completion.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field


class UnreadableReply(ValueError):
    """The engine's reply is not an OpenAI-compatible completion."""


class ErrorReply(Exception):
    """The engine's reply is an error: `message` is the engine's own words."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass
class ReplyChunk:
    text: str = ""
    tokens: list[tuple[int, float]] = field(default_factory=list)  # (token id, log-probability)
    top_first: list[tuple[int, float]] = field(default_factory=list)  # alternatives of token 1
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    cached_tokens: int | None = None


def parse_chunk(data: str) -> ReplyChunk:
    """One SSE `data:` payload, or a whole non-streamed reply body."""
    try:
        body = json.loads(data)
        error = error_message(body)
        if error is not None:
            raise ErrorReply(error)
        choice = body["choices"][0]
        text = choice.get("text") or ""
        if not isinstance(text, str):
            raise TypeError("text is not a string")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise UnreadableReply(f"not an OpenAI completion chunk ({exc.__class__.__name__}): "
                              f"{data[:120]!r}") from None
    chunk = ReplyChunk(text=text, finish_reason=choice.get("finish_reason"))
    logprobs = choice.get("logprobs") or {}
    if isinstance(logprobs, dict):
        if "content" in logprobs:  # llama.cpp
            _read_llamacpp(logprobs["content"] or [], chunk)
        elif "tokens" in logprobs:  # OpenAI legacy shape, as vLLM sends it
            _read_openai(logprobs, chunk)
    _read_cache(body, chunk)
    return chunk


def error_message(body) -> str | None:
    """The engine's error message, if `body` (a parsed reply) is an error."""
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if error is None and body.get("object") == "error":
        error = body
    if isinstance(error, dict):
        return str(error.get("message") or error)[:200]
    return None if error is None else str(error)[:200]


def _read_llamacpp(content: list, chunk: ReplyChunk) -> None:
    for i, item in enumerate(content):
        chunk.tokens.append((int(item["id"]), float(item.get("logprob", 0.0))))
        if i == 0:
            chunk.top_first = [(int(t["id"]), float(t["logprob"]))
                               for t in item.get("top_logprobs") or []]


def _read_openai(logprobs: dict, chunk: ReplyChunk) -> None:
    values = logprobs.get("token_logprobs") or []
    for i, token in enumerate(logprobs.get("tokens") or []):
        value = values[i] if i < len(values) and values[i] is not None else 0.0
        chunk.tokens.append((_token_id(token), float(value)))
    tops = logprobs.get("top_logprobs") or []
    if tops and isinstance(tops[0], dict):
        ranked = sorted(tops[0].items(), key=lambda kv: -kv[1])
        chunk.top_first = [(_token_id(t), float(v)) for t, v in ranked]


def _token_id(token: str) -> int:
    if not isinstance(token, str) or not token.startswith("token_id:"):
        raise UnreadableReply("the engine did not return token ids (vLLM needs "
                              "return_tokens_as_token_ids, which this client sends)")
    return int(token.removeprefix("token_id:"))


def _read_cache(body: dict, chunk: ReplyChunk) -> None:
    usage = body.get("usage") or {}
    if isinstance(usage, dict):
        if usage.get("prompt_tokens") is not None:
            chunk.prompt_tokens = int(usage["prompt_tokens"])
        details = usage.get("prompt_tokens_details") or {}
        if isinstance(details, dict) and details.get("cached_tokens") is not None:
            chunk.cached_tokens = int(details["cached_tokens"])
    timings = body.get("timings") or {}
    if isinstance(timings, dict) and timings.get("cache_n") is not None:
        chunk.cached_tokens = int(timings["cache_n"])
