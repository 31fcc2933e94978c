"""Quality parity: the same eval through the in-process engine and through a shared engine.

    python benchmarks/engine_parity.py [--model qwen2.5-coder-0.5b] [--tasks-per-notebook 3]
                                       [--variants above] [--kinds line,mid] [NOTEBOOK_OR_DIR...]

Runs `jupyter codecomp eval` twice on the same seeded tasks: once in-process (ONNX Runtime GenAI,
int4 re-quantized from the GGUF) and once with `engine_url` pointing at `jupyter codecomp serve`
(llama.cpp on the GGUF itself), or at a running engine given as `--engine-url` (vLLM: with
`--engine-model` and the key in CODECOMP_ENGINE_API_KEY). Prints, per metric, both means, the
paired difference and its bootstrap 95 % CI (`tools/eval_stats.bootstrap_ci`, the eval's own),
how often the two engines wrote the same text, and the latency medians. Default notebooks: the
eval split of the course corpora (handson-ml3 chapters 13-16, pandas-exercises); no kernel (their
cells need TensorFlow or files).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from jupyter_codecomp.tools.eval_stats import bootstrap_ci

sys.path.insert(0, str(Path(__file__).parent))
from api_latency import free_port  # noqa: E402

CORPORA = Path("/work/shared/corpora")
EVAL_SPLIT = [*(sorted((CORPORA / "handson-ml3").glob("1[3-6]_*.ipynb"))),
              CORPORA / "pandas-exercises"]
METRICS = ("exact", "similarity", "first_token")


def run_eval(args, out: Path, extra: list[str]) -> list[dict]:
    cmd = [sys.executable, "-m", "jupyter_codecomp", "eval", *map(str, args.notebooks),
           f"--model={args.model}", f"--variants={args.variants}", f"--kinds={args.kinds}",
           f"--tasks-per-notebook={args.tasks_per_notebook}", f"--seed={args.seed}",
           f"--threads={args.threads}", f"--out={out}",
           f"--CodecompConfig.context_tokens={args.context_tokens}", *extra]
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "HF_HUB_OFFLINE": "1"})
    print(f"  {out.name}: {time.perf_counter() - started:.0f} s", flush=True)
    return json.loads((out / "results.json").read_text())["results"]


def start_engine(args) -> tuple[subprocess.Popen, str]:
    port = free_port()
    log = open(Path(tempfile.mkdtemp(prefix="parity-engine-")) / "llama.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "jupyter_codecomp", "serve", args.model,
                             "--port", str(port), "--parallel", "2",
                             "--threads", str(args.engine_threads)],
                            stdout=subprocess.DEVNULL, stderr=log)
    for _ in range(2400):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                return proc, f"http://127.0.0.1:{port}/v1"
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"the engine did not start: see {log.name}")
        time.sleep(0.25)
    raise SystemExit("the engine did not start")


def key(r: dict) -> tuple:
    return r["notebook"], r["cell"], r["kind"], r["prefix"], r["variant"]


def compare(label_a: str, a_rows: list[dict], label_b: str, b_rows: list[dict], seed: int,
            same_key=key) -> None:
    """`b` minus `a`, paired by task (and variant unless `same_key` says otherwise)."""
    by_key = {same_key(r): r for r in b_rows}
    pairs = [(r, by_key[same_key(r)]) for r in a_rows if same_key(r) in by_key]
    if not pairs:
        return
    print(f"\n{label_b} - {label_a}: {len(pairs)} paired tasks")
    print(f"{'metric':12} {label_a[:14]:>14} {label_b[:14]:>14} {'diff':>7}   95 % CI of the diff")
    for metric in METRICS:
        a = [100.0 * float(p[0][metric]) for p in pairs]
        b = [100.0 * float(p[1][metric]) for p in pairs]
        low, high = bootstrap_ci([y - x for x, y in zip(a, b)], seed=seed)
        print(f"{metric:12} {statistics.mean(a):14.1f} {statistics.mean(b):14.1f} "
              f"{statistics.mean(b) - statistics.mean(a):+7.1f}   [{low:+.1f}, {high:+.1f}]")
    same = sum(p[0]["completion"] == p[1]["completion"] for p in pairs)
    print(f"identical text: {100 * same / len(pairs):.1f} %   latency p50 ms: "
          f"{statistics.median(p[0]['latency_ms'] for p in pairs):.0f} and "
          f"{statistics.median(p[1]['latency_ms'] for p in pairs):.0f}")


def compare_all(local: list[dict], shared: list[dict], seed: int) -> None:
    """Each variant across the engines; then, on the shared engine, each variant against the
    first (e.g. `above/heal=false` against `above`: what token healing is worth there)."""
    variants = list(dict.fromkeys(r["variant"] for r in local))
    for variant in variants:
        compare(f"in-process {variant}", [r for r in local if r["variant"] == variant],
                f"shared {variant}", [r for r in shared if r["variant"] == variant], seed)
    task = lambda r: key(r)[:4]  # noqa: E731
    for variant in variants[1:]:
        compare(f"shared {variants[0]}", [r for r in shared if r["variant"] == variants[0]],
                f"shared {variant}", [r for r in shared if r["variant"] == variant], seed, task)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, default=EVAL_SPLIT)
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--variants", default="above")
    parser.add_argument("--kinds", default="line,mid")
    parser.add_argument("--tasks-per-notebook", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--engine-threads", type=int, default=1)
    parser.add_argument("--context-tokens", type=int, default=1024,
                        help="budget of the cells above (smaller: a faster run on a busy CPU)")
    parser.add_argument("--engine-url", default="",
                        help="a running engine's OpenAI base URL instead of starting serve")
    parser.add_argument("--engine-model", default="", help="its served model name")
    parser.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp(prefix="parity-")))
    args = parser.parse_args()
    print(f"{args.model}: {args.variants} / {args.kinds}, {args.tasks_per_notebook} tasks per "
          f"notebook, seed {args.seed}; results in {args.out}", flush=True)
    local = run_eval(args, args.out / "in-process", [])
    engine, url = start_engine(args) if not args.engine_url else (None, args.engine_url)
    try:
        # A batch run waits for a loaded machine: no 503 for a slow cold prefill.
        shared = run_eval(args, args.out / "shared", [
            f"--CodecompConfig.engine_url={url}", "--CodecompConfig.engine_read_timeout=900",
            f"--CodecompConfig.engine_model={args.engine_model}"])
    finally:
        if engine is not None:
            engine.terminate()  # it exits once the batch under way is computed
    compare_all(local, shared, args.seed)


if __name__ == "__main__":
    main()
