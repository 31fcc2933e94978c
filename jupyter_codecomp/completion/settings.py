"""The pipeline's settings and their defaults: the one source for the server's traitlets
(`config.CodecompConfig`), the magic and the CLI."""

from __future__ import annotations

from dataclasses import dataclass

from ..models.recipes import DEFAULT_MODEL


@dataclass(frozen=True)
class ServiceSettings:
    model: str = DEFAULT_MODEL  # a built model's name, or a model folder path
    cache_dir: str = ""  # "" means the default cache (models.store.default_cache_dir)
    device: str = "auto"  # auto, cpu or cuda
    threads: int = 0  # 0: every core the process may use
    max_new_tokens: int = 48  # default cap for a line
    block_max_new_tokens: int = 160  # default cap for a block
    max_new_tokens_limit: int = 256  # the most a request may ask for
    context_tokens: int = 1024  # cells above
    context_tokens_below: int = 256
    context_length: int = 4096  # KV cache: prompt plus generated tokens
    kv_cache_slots: int = 4  # notebooks whose KV cache is kept
