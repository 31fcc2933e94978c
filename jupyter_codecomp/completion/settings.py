"""The pipeline's settings and their defaults: the one source for the server's traitlets
(`config.CodecompConfig`), the magic and the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field

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
    context_length: int = 4096  # KV cache: prompt plus generated tokens
    kv_cache_slots: int = 4  # notebooks whose KV cache is kept
    speculative: bool = True  # a pairing model's drafter drafts (False: the verifier alone)
    # Ghost text is shown at or above this completion confidence (the frontend's minConfidence
    # default, read from /codecomp/status `min_confidence`); chosen on the corpus, RESULTS.md.
    min_confidence: float = 0.2
    # A shared OpenAI-compatible engine (vLLM, `jupyter codecomp serve`); "" runs the model
    # in-process. `model` still names the recipe whose tokenizer and prompt format build the prompt.
    engine_url: str = ""  # the base URL, e.g. http://gpu-node:8000/v1
    engine_api_key: str = field(default="", repr=False)  # sent as a Bearer token
    engine_model: str = ""  # the served model's name ("" lets the engine choose its only one)
    # The engine's /tokenize encodes the prompt, so this server does not hold the tokenizer
    # (45 MB of a 147 MB student server, measured); False for an engine without /tokenize.
    engine_tokenize: bool = True
    # Connection refused is instant; a connect timeout covers a host that drops packets. The read
    # timeout bounds the wait between two streamed tokens, a cold prefill and the engine's queue
    # included. Measured (benchmarks/class_load.py, 32 students on one 2-core llama.cpp): a class
    # opening its notebooks at once queues 2,100 prompt tokens, about 16 s here; with 15 s every
    # request failed and no last keystroke was answered, with 60 s none failed and all were.
    engine_connect_timeout: float = 3.0
    engine_read_timeout: float = 60.0
