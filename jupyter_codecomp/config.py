"""Configuration shared by the server extension, the `%complete` magic and the CLI.

Set it like any Jupyter option, in `jupyter_server_config.py` (`c.CodecompConfig.model = ...`) or
on the command line (`--CodecompConfig.model=...`). The magic and the CLI read the same files, so
a kernel uses the model and cache the server uses.
"""

from __future__ import annotations

import ast
import json
import os
from dataclasses import fields
from pathlib import Path

from jupyter_core.paths import jupyter_config_path
from traitlets import Bool, Enum, Float, Int, List, Unicode, default, validate
from traitlets.config import Config, Configurable
from traitlets.config.loader import JSONFileConfigLoader, PyFileConfigLoader

from .completion.settings import ServiceSettings
from .models.store import default_cache_dir

_DEFAULTS = ServiceSettings()


class CodecompConfig(Configurable):
    """The traitlets face of `ServiceSettings` (which holds the defaults), and the policy."""

    model = Unicode(
        _DEFAULTS.model,
        help="A model built into the cache (`jupyter codecomp model list`), or a model folder.",
    ).tag(config=True)
    cache_dir = Unicode(
        help="Where built models live. Default: $JUPYTER_CODECOMP_CACHE_DIR, else "
        "<jupyter data dir>/codecomp/models."
    ).tag(config=True)
    device = Enum(
        ["auto", "cpu", "cuda"], _DEFAULTS.device,
        help="Execution provider: auto uses CUDA when it works and falls back to the CPU.",
    ).tag(config=True)
    threads = Int(
        _DEFAULTS.threads, help="CPU threads for the model; 0 uses every core the server may use."
    ).tag(config=True)
    max_new_tokens = Int(
        _DEFAULTS.max_new_tokens, help="Default cap on generated tokens for a line."
    ).tag(config=True)
    block_max_new_tokens = Int(
        _DEFAULTS.block_max_new_tokens, help="Default cap on generated tokens for a block."
    ).tag(config=True)
    max_new_tokens_limit = Int(
        _DEFAULTS.max_new_tokens_limit, help="Largest max_new_tokens a request may ask for."
    ).tag(config=True)
    context_tokens = Int(
        _DEFAULTS.context_tokens, help="Token budget for cells above the current one."
    ).tag(config=True)
    context_length = Int(
        _DEFAULTS.context_length, help="KV cache length: prompt plus generated tokens."
    ).tag(config=True)
    kv_cache_slots = Int(
        _DEFAULTS.kv_cache_slots,
        help="Notebooks whose KV cache is kept (about 100 MB each for the 0.5B model, 335 MB for "
        "the 1.5B with its 0.5B draft: a slot holds both models' caches).",
    ).tag(config=True)
    speculative = Bool(
        _DEFAULTS.speculative,
        help="A pairing model (qwen2.5-coder-1.5b-spec) decodes speculatively: its draft "
        "proposes tokens that the larger model checks in one pass. False: the larger model alone.",
    ).tag(config=True)
    min_confidence = Float(
        _DEFAULTS.min_confidence, min=0.0, max=1.0,
        help="Default of the editor's minConfidence: ghost text only for completions whose "
        "confidence (0-1, from the model's token probabilities) is at least this.",
    ).tag(config=True)
    engine_url = Unicode(
        _DEFAULTS.engine_url,
        help="Base URL of a shared OpenAI-compatible engine (vLLM, `jupyter codecomp serve`), "
        "e.g. http://gpu-node:8000/v1. Empty: the model runs in this server.",
    ).tag(config=True)
    engine_api_key = Unicode(
        help="API key sent to engine_url as a Bearer token. Default: $CODECOMP_ENGINE_API_KEY."
    ).tag(config=True)
    engine_model = Unicode(
        _DEFAULTS.engine_model, help="The engine's served model name (vLLM --served-model-name)."
    ).tag(config=True)
    engine_tokenize = Bool(
        _DEFAULTS.engine_tokenize,
        help="Have engine_url's /tokenize encode the prompt (llama.cpp's server and vLLM have "
        "one), so that this server does not load the model's tokenizer (about 45 MB for "
        "Qwen). False: tokenize here, for an engine without /tokenize.",
    ).tag(config=True)
    engine_connect_timeout = Float(
        _DEFAULTS.engine_connect_timeout, help="Seconds to connect to engine_url."
    ).tag(config=True)
    engine_read_timeout = Float(
        _DEFAULTS.engine_read_timeout,
        help="Seconds engine_url may stay silent (a cold prefill included) before a 503.",
    ).tag(config=True)
    enabled = Bool(True, help="Serve completions at all (turn off for exams).").tag(config=True)
    disabled_paths = List(
        Unicode(),
        help="Glob patterns of notebook paths that get no completions, e.g. ['exams/**']. On the "
        "command line: --CodecompConfig.disabled_paths='[\"exams/**\"]', a comma list "
        "(exams/**,quiz/*), or the option repeated.",
    ).tag(config=True)
    kernel_variables = Bool(
        True, help="Read live variables from the notebook's kernel for the prompt."
    ).tag(config=True)

    @default("engine_api_key")
    def _default_engine_api_key(self) -> str:
        return os.environ.get("CODECOMP_ENGINE_API_KEY", "")

    @validate("disabled_paths")
    def _expand_disabled_paths(self, proposal) -> list[str]:
        """Each pattern as people type it: a JSON or Python list in one string (the command line
        hands traitlets '["exams/**"]' as one string) or a comma list become their patterns."""
        return [p for value in proposal["value"] for p in _split_patterns(value)]

    @default("cache_dir")
    def _default_cache_dir(self) -> str:
        return str(default_cache_dir())

    def service_settings(self) -> ServiceSettings:
        return ServiceSettings(**{f.name: getattr(self, f.name) for f in fields(ServiceSettings)})


def _split_patterns(value: str) -> list[str]:
    text = value.strip()
    if text.startswith("["):
        for parse in (json.loads, ast.literal_eval):
            try:
                items = parse(text)
            except (ValueError, SyntaxError):
                continue
            if isinstance(items, list) and all(isinstance(i, str) for i in items):
                return [p for item in items for p in _split_patterns(item)]
    # A glob never needs a comma ([,] aside): commas separate patterns.
    return [part.strip() for part in text.split(",") if part.strip()]


def load_jupyter_config() -> Config:
    """`CodecompConfig` settings from the Jupyter config files, as the server would read them."""
    config = Config()
    for directory in reversed(jupyter_config_path()):  # lowest priority first
        for base in ("jupyter_server_config", "jupyter_codecomp_config"):
            for loader_cls, ext in ((JSONFileConfigLoader, ".json"), (PyFileConfigLoader, ".py")):
                if not (Path(directory) / (base + ext)).is_file():
                    continue
                try:
                    config.merge(loader_cls(base + ext, path=directory).load_config())
                except Exception:  # a broken file for another app must not break completion
                    continue
    return config
