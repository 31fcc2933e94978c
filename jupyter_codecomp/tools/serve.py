"""`jupyter codecomp serve [NAME]`: one shared engine for a class, on a machine without a GPU.

It runs llama.cpp's own HTTP server, through the PyPI wheel `xllamacpp` (prebuilt, no compiler;
the other llama.cpp wheels on the index need a compiler, download binaries at run time or crash
here), on the GGUF the model build keeps in the cache. Every student's Jupyter server then sets
`c.CodecompConfig.engine_url` to the URL it prints and loads no weights itself.

    jupyter codecomp serve [NAME] [--host 127.0.0.1] [--port 8765] [--parallel N] [--threads T]
                           [--api-key KEY] [--ctx-size C] [--kv-tokens K] [--cache-ram MIB]
                           [--slots] [--metrics]
"""

from __future__ import annotations

import errno
import ipaddress
import os
import signal
import socket
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from traitlets import Bool, Int, Unicode, default

from ..errors import CodecompError
from ..models.recipes import available_recipes
from ..models.store import GGUF, ModelDir, ModelStore
from .cli import _Base, console

DEFAULT_PORT = 8765


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    parallel: int = 4  # llama.cpp slots: requests decoded together, each with its prompt cache
    threads: int = 0  # 0: every core this process may use
    api_key: str = ""
    # The most tokens one request holds. The students' servers fit their prompts into it
    # (leaving out the farthest cells above); 2048 holds all but 1 of 789 corpus prompts with
    # their completion whole (p50 876, p99 1534 tokens).
    ctx_size: int = 2048
    # Tokens of KV cache all slots share (12 KB a token for the 0.5B); 0: 1024 a slot, at least
    # ctx_size. A request takes room only for the tokens it has, so the cache need not hold
    # every slot's longest prompt at once: sized for the p50 prompt, 8 slots took 177 MB less
    # than 2048 tokens reserved for each (benchmarks/RESULTS.md). A request that finds no room
    # even after llama.cpp has moved the idle slots' prompts to its RAM cache is refused:
    # ctx_size x parallel rules that out.
    kv_tokens: int = 0
    # Host RAM (MiB) where llama.cpp keeps the prompts of slots handed to another student, so a
    # student who comes back restores theirs instead of prefilling it again. llama.cpp's own
    # default is 8192: with a class that grows the engine by gigabytes.
    cache_ram: int = 512
    slots: bool = False  # the /slots endpoint (it shows prompt sizes; tests read it)
    metrics: bool = False  # the /metrics endpoint (token counters; the class benchmark reads it)

    @property
    def kv_size(self) -> int:
        return max(self.ctx_size, self.kv_tokens or 1024 * self.parallel)

    @property
    def url(self) -> str:
        host = socket.getfqdn() if self.host in ("0.0.0.0", "::") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/v1"


def check_host(options: ServeOptions) -> None:
    """A server others can reach needs a key: anyone who reaches it could use the machine."""
    if options.api_key or _is_loopback(options.host):
        return
    raise CodecompError(
        f"refusing to serve on {options.host} without an API key: anyone who reaches this "
        "machine could use the engine",
        fix="add --api-key KEY (or set CODECOMP_ENGINE_API_KEY), and give the Jupyter servers "
            "the same key",
    )


def check_port(options: ServeOptions) -> None:
    family = socket.AF_INET6 if ":" in options.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As llama.cpp's server does: a port whose last connections linger is free to listen on.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((options.host, options.port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise CodecompError(f"port {options.port} on {options.host} is busy",
                                    fix=f"choose another: --port {options.port + 1}") from None
            raise CodecompError(f"cannot listen on {options.host}:{options.port}: "
                                f"{exc.strerror}", fix="check --host") from None


def find_gguf(store: ModelStore, name: str) -> Path:
    """The built model's GGUF; a model built before the build kept it gets it assembled from the
    weight wheels in the cache (seconds: no conversion, no export)."""
    model = store.resolve(name, only=())
    if model.gguf is not None:  # a fine-tuned model's export writes its own (finetune_gguf)
        return model.gguf
    # A fine-tuned model is named apart from the recipe it started from, whose GGUF it is not.
    if getattr(model.manifest, "finetune", None) or model.manifest.name != model.manifest.recipe:
        raise CodecompError(
            f"{name} is a fine-tuned ONNX model and has no GGUF for llama.cpp",
            fix="fine-tune it again with this version (its export writes a GGUF), or serve its "
                "base model")
    recipe = available_recipes().get(model.manifest.recipe)
    if recipe is None or not recipe.packages:
        raise CodecompError(f"{name} has no GGUF (its recipe {model.manifest.recipe!r} names none)",
                            fix="serve a model built from a recipe: jupyter codecomp model list")
    return _assemble(recipe, store, model)


def _assemble(recipe, store: ModelStore, model: ModelDir) -> Path:
    from ..models.builder import _progress, assemble_gguf, download_wheels

    console.print(f"{model.manifest.name} was built without its GGUF: assembling it once")
    with _progress(console) as progress, tempfile.TemporaryDirectory(
        prefix=".gguf-", dir=store.cache_dir
    ) as scratch:
        wheels = download_wheels(recipe, store.cache_dir / ".wheels", progress)
        gguf, _ = assemble_gguf(recipe, wheels, Path(scratch) / GGUF, progress)
        gguf.rename(model.path / GGUF)
    return model.path / GGUF


def start_server(gguf: Path, options: ServeOptions):
    """llama.cpp's server in this process; it serves from its own threads once constructed."""
    try:
        import xllamacpp as xlc
    except ImportError:
        raise CodecompError("serving needs xllamacpp",
                            fix="pip install 'jupyter-codecomp[serve]'") from None
    params = xlc.CommonParams()
    params.model.path = str(gguf)
    params.n_parallel = options.parallel
    params.kv_unified = True  # one KV cache for all slots (see ServeOptions.kv_tokens)
    params.n_ctx = options.kv_size
    params.kv_unified_per_slot = options.ctx_size
    threads = options.threads or len(os.sched_getaffinity(0))
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    # The KV cache stays f16: in 8 bits (with flash attention, which V needs for it) it took
    # 90 of the engine's 317 MB off at 8 slots of 2048 tokens, but prefilled 1.7x slower on
    # this CPU (81 against 136 tokens/s, 1940-token prompt).
    params.cache_ram_mib = options.cache_ram
    # Prompt tokens per pass (n_ubatch): 256. A pass of 512 sizes a compute buffer 19 MB larger
    # for no faster prefill here (1060-token prompt, 2 threads: 6.0-6.2 s either way; 128 was
    # 10 % slower).
    params.n_ubatch = 256
    # Tokens per round of the server's loop (n_batch), which starts new requests and ends
    # cancelled ones between rounds: 1024, not llama.cpp's 2048. Long rounds (about 20 s here)
    # keep a keystroke waiting, and one that finds its own slot still busy goes to another and
    # prefills its notebook again; short ones starve the last slots. Measured, 2 cores
    # (benchmarks/RESULTS.md, run D): 8 students typing in a real notebook, warm p50 134 s
    # with 2048, 68 s with 1024, 55 s with 256; 32 students on the small notebook, no error
    # with 2048 or 1024, 9-11 cold requests timed out with 256.
    params.n_batch = 1024
    params.hostnames = [options.host]
    params.port = options.port
    params.endpoint_slots = options.slots
    params.endpoint_metrics = options.metrics
    if options.api_key:
        params.api_keys = [options.api_key]
    try:
        return xlc.Server(params)
    except Exception as exc:
        raise CodecompError(f"llama.cpp could not start on {gguf.name}: {exc}",
                            fix="check the model: jupyter codecomp model build NAME --force"
                            ) from None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ServeApp(_Base):
    name = "jupyter-codecomp-serve"
    description = ("Serve a model to many Jupyter servers: llama.cpp's HTTP server (xllamacpp) "
                   "on the model's GGUF; prints the engine_url to configure.")
    host = Unicode(ServeOptions.host, help="Address to listen on; a non-loopback one needs "
                                           "--api-key.").tag(config=True)
    port = Int(DEFAULT_PORT, help="Port to listen on.").tag(config=True)
    parallel = Int(ServeOptions.parallel, help="Requests served at once (llama.cpp slots); "
                                               "one per active student is ideal.").tag(config=True)
    api_key = Unicode(help="Key clients must send (Bearer). Default: "
                           "$CODECOMP_ENGINE_API_KEY.").tag(config=True)
    ctx_size = Int(ServeOptions.ctx_size, help="The most tokens one request holds (prompt and "
                                               "completion).").tag(config=True)
    kv_tokens = Int(ServeOptions.kv_tokens, help="KV cache tokens all slots share (0: 1024 a "
                                                 "slot, at least --ctx-size).").tag(config=True)
    slots = Bool(False, help="Expose /slots (per-slot state; tests use it).").tag(config=True)
    metrics = Bool(False, help="Expose /metrics (Prometheus token counters).").tag(config=True)
    cache_ram = Int(ServeOptions.cache_ram, help="MiB of RAM for the prompts of slots handed to "
                                                 "another client (0: none).").tag(config=True)
    aliases = {
        **_Base.aliases,
        "host": "ServeApp.host", "port": "ServeApp.port", "parallel": "ServeApp.parallel",
        "api-key": "ServeApp.api_key", "ctx-size": "ServeApp.ctx_size",
        "kv-tokens": "ServeApp.kv_tokens",
        "cache-ram": "ServeApp.cache_ram",
    }
    flags = {"slots": ({"ServeApp": {"slots": True}}, slots.help),
             "metrics": ({"ServeApp": {"metrics": True}}, metrics.help)}

    @default("api_key")
    def _default_api_key(self) -> str:
        return os.environ.get("CODECOMP_ENGINE_API_KEY", "")

    def run(self):
        name = self._name_argument()
        options = ServeOptions(
            host=self.host, port=self.port, parallel=max(1, self.parallel),
            threads=self.settings.threads, api_key=self.api_key, ctx_size=self.ctx_size,
            kv_tokens=max(0, self.kv_tokens),
            cache_ram=max(0, self.cache_ram), slots=self.slots, metrics=self.metrics)
        check_host(options)
        check_port(options)
        gguf = find_gguf(self.store, name)
        console.print(f"starting llama.cpp on {gguf} ({gguf.stat().st_size / 1e6:.0f} MB), "
                      f"{options.parallel} slots of up to {options.ctx_size} tokens, sharing "
                      f"{options.kv_size} tokens of KV cache")
        server = start_server(gguf, options)
        key_line = ("\n  c.CodecompConfig.engine_api_key = '...'  # or CODECOMP_ENGINE_API_KEY"
                    if options.api_key else "")
        print(f"engine_url: {options.url}\nIn each Jupyter server's jupyter_server_config.py:\n"
              f"  c.CodecompConfig.model = {name!r}\n"
              f"  c.CodecompConfig.engine_url = {options.url!r}{key_line}", flush=True)
        _wait_for_signal()
        del server


def _wait_for_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(3600):
        pass
    console.print("stopped")


__all__ = ["ServeApp", "ServeOptions", "check_host", "check_port", "find_gguf"]
