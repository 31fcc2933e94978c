"""Fine-tuning on a course's own notebooks: base against fine-tuned, paired, in one run.

    nice -n 10 python benchmarks/finetune_quality.py --max-steps 150 [--base qwen2.5-coder-0.5b]
        [--name handson-ft] [--corpus /work/shared/corpora/handson-ml3] [--skip-training]

Trains with `jupyter codecomp finetune`'s own code on the course's fine-tuning split (handson-ml3
chapters 01-12 and its tools, math and extra notebooks), exports the merged model into the cache,
then runs the product's eval (cells above and below, no kernel, the same seeded tasks for both
models) on the eval split (chapters 13-16, never trained on) and on the project's general corpus
(benchmarks/notebooks: nothing forgotten?). Printed: exact match, edit similarity and first token
for both, the paired difference with its bootstrap 95% CI, training wall time and peak memory
(this process: training; its children: the ONNX export). JSON goes to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from rich.console import Console  # noqa: E402

from jupyter_codecomp.models.finetune import Hyperparameters  # noqa: E402
from jupyter_codecomp.models.store import ModelStore  # noqa: E402
from jupyter_codecomp.tools.finetuning import (  # noqa: E402
    FinetuneJob,
    compare_models,
    export_stopped_run,
    run_finetune,
)

CORPUS = Path("/work/shared/corpora/handson-ml3")
EVAL_CHAPTERS = ("13", "14", "15", "16")
GENERAL = Path(__file__).parent / "notebooks"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", default="qwen2.5-coder-0.5b")
    parser.add_argument("--name", default="handson-ml3-ft")
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--max-steps", type=int, default=150)
    parser.add_argument("--lr", type=float, default=Hyperparameters.lr)
    parser.add_argument("--lora-rank", type=int, default=Hyperparameters.lora_rank)
    parser.add_argument("--lora-layers", type=int, default=Hyperparameters.lora_layers)
    parser.add_argument("--batch-tokens", type=int, default=Hyperparameters.batch_tokens)
    parser.add_argument("--validation-examples", type=int, default=24)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--eval-tasks", type=int, default=40, help="tasks per eval notebook")
    parser.add_argument("--general-tasks", type=int, default=12, help="tasks per general notebook")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--skip-training", action="store_true", help="compare an existing --name")
    parser.add_argument("--export-stopped", action="store_true",
                        help="export the best adapter of a run stopped with Ctrl+C, then compare")
    parser.add_argument("--last", action="store_true",
                        help="with --export-stopped: the last step's adapter, not the best")
    parser.add_argument("--out", type=Path, default=Path("/tmp/finetune-benchmark.json"))
    args = parser.parse_args()

    console = Console(stderr=True)
    notebooks = sorted(args.corpus.glob("*.ipynb"))
    train = [p for p in notebooks if not p.name.startswith(EVAL_CHAPTERS)]
    held_out = [str(p) for p in notebooks if p.name.startswith(EVAL_CHAPTERS)]
    hp = Hyperparameters(lr=args.lr, lora_rank=args.lora_rank, max_steps=args.max_steps,
                         lora_layers=args.lora_layers, batch_tokens=args.batch_tokens,
                         eval_every=args.eval_every,
                         validation_examples=args.validation_examples)
    job = FinetuneJob([str(p) for p in train], args.base, args.name, hp, threads=args.threads,
                      eval_tasks_per_notebook=args.eval_tasks, device=args.device)
    store = ModelStore()
    started = time.monotonic()
    if args.skip_training:
        tuned = store.resolve(args.name)
    elif args.export_stopped:
        tuned = export_stopped_run(job, store, console, last=args.last)
    else:
        tuned = run_finetune(job, store, console)
    train_wall = time.monotonic() - started
    base = store.resolve(args.base)
    report = {"base": args.base, "tuned": args.name, "train_notebooks": [p.name for p in train],
              "finetune": tuned.manifest.finetune, "train_and_export_wall_s": round(train_wall),
              "peak_rss_mb": _peak_mb(resource.RUSAGE_SELF),
              "peak_rss_children_mb": _peak_mb(resource.RUSAGE_CHILDREN)}
    console.rule("eval split: chapters " + ", ".join(EVAL_CHAPTERS))
    report["eval_split"] = compare_models(base, tuned, held_out, job, console)
    console.rule("general corpus: benchmarks/notebooks")
    general = FinetuneJob(job.notebooks, args.base, args.name, hp, device=args.device,
                          eval_tasks_per_notebook=args.general_tasks, threads=args.threads)
    report["general"] = compare_models(base, tuned, [str(GENERAL)], general, console)
    report["total_wall_s"] = round(time.monotonic() - started)
    args.out.write_text(json.dumps(report, indent=1))
    console.print(f"training + export {train_wall / 60:.1f} min, all "
                  f"{report['total_wall_s'] / 60:.1f} min; peak RSS {report['peak_rss_mb']:.0f} MB "
                  f"(export subprocess "
                  f"{report['peak_rss_children_mb']:.0f} MB); wrote {args.out}")


def _peak_mb(who: int) -> float:
    return round(resource.getrusage(who).ru_maxrss / 1024, 1)


if __name__ == "__main__":
    main()
