"""`jupyter codecomp finetune`: notebooks -> examples -> LoRA training (or an optuna search) ->
merged model -> ONNX export into the cache -> with --eval, base against fine-tuned.

The pieces live where their imports allow: the examples in `tools.training_data` (they need the
product's prompt builder), the training in `models.finetune`, the export in
`models.finetune_export`. This module runs them in order and reports.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ..completion.settings import ServiceSettings
from ..errors import CodecompError
from ..models.finetune import BEST, Hyperparameters, LoraTrainer, TrainingResult
from ..models.finetune_export import (
    base_checkpoint,
    check_new_name,
    export_finetuned,
    merge_adapter,
)
from ..models.store import MANIFEST, ModelDir, ModelStore
from .eval_stats import bootstrap_ci
from .evaluation import collect_notebooks, evaluate
from .training_data import Corpus, build_corpus, file_sha256, split_notebooks

RUNS = ".finetune"
EVAL_VARIANT = "product"  # what the editor sends (no kernel here: cells above and below)
METRICS = {"exact": "exact match %", "similarity": "edit similarity %",
           "first_token": "first token %"}


@dataclass(frozen=True)
class FinetuneJob:
    notebooks: list[str]
    base: str
    name: str
    hp: Hyperparameters
    device: str = "cpu"
    search: int = 0
    resume: bool = False
    eval_dir: str | None = None
    eval_tasks_per_notebook: int = 40
    threads: int = 0


def run_finetune(job: FinetuneJob, store: ModelStore, console: Console) -> ModelDir:
    notebooks = collect_notebooks(job.notebooks)
    if not notebooks:
        raise CodecompError(
            "no notebooks found in " + " ".join(job.notebooks),
            fix="jupyter codecomp finetune NOTEBOOK_OR_DIR... --base NAME --name NEW")
    check_new_name(job.name, store, replace=job.resume)
    if job.eval_dir:
        _check_held_out(notebooks, collect_notebooks([job.eval_dir]))
    base = store.resolve(job.base)
    if job.threads:
        import torch

        torch.set_num_threads(job.threads)
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(base.path / "tokenizer.json"))
    fmt = base.manifest.prompt
    # A run bounded by --max-steps sees at most this many examples (a batch of 512 tokens holds
    # at most 16 of 32 tokens or more): cut a seeded sample of them, not the whole corpus.
    limit = job.hp.max_steps * max(1, job.hp.batch_tokens // 32)
    corpus = build_corpus(notebooks, tokenizer, fmt, seed=job.hp.seed,
                          max_tokens=job.hp.batch_tokens, limit=limit,
                          validation_limit=job.hp.validation_examples if limit else 0)
    console.print(corpus.describe())
    checkpoint = base_checkpoint(base, store, console)
    end = fmt.stop_tokens[0] if fmt.stop_tokens else None
    pad_id = (tokenizer.token_to_id(end) if end else None) or 0
    run_dir = store.cache_dir / RUNS / job.name
    trainer_args = dict(device=job.device, pad_id=pad_id, console=console)
    if job.search:
        hp, result, trials = search_hyperparameters(job, corpus, checkpoint, run_dir, trainer_args)
    else:
        hp, trials = job.hp, []
        result = LoraTrainer(checkpoint, hp, run_dir, **trainer_args).train(
            corpus.train, corpus.validation, resume=job.resume)
    console.print(f"trained {result.steps} steps in {result.seconds:.0f} s ({result.stopped}); "
                  f"validation loss {result.initial_val_loss:.4f} -> {result.best_val_loss:.4f} "
                  f"(best at step {result.best_step}); peak RSS {result.peak_rss_mb:.0f} MB")
    info = finetune_info(job, base, hp, result, corpus, trials)
    merged = merge_adapter(checkpoint, result.adapter_dir)
    model = export_finetuned(merged, checkpoint, base, store, name=job.name,
                             device="cuda" if job.device == "cuda" else "cpu", info=info,
                             console=console, adapter_dir=result.adapter_dir)
    del merged
    console.print(f"[green]✓[/] {job.name} is in the cache: {model.path}")
    if job.eval_dir:
        info["eval"] = compare_models(base, model, [job.eval_dir], job, console)
        write_manifest_info(model, info)
    return model


def export_stopped_run(job: FinetuneJob, store: ModelStore, console: Console,
                       last: bool = False) -> ModelDir:
    """Export the best adapter of a run stopped with Ctrl+C (or, with `last`, the adapter of its
    last step), from its saved state: no examples are cut again."""
    import torch
    from peft import set_peft_model_state_dict

    from ..models.finetune import STATE, add_adapters, load_base

    base = store.resolve(job.base)
    check_new_name(job.name, store, replace=True)
    run_dir = store.cache_dir / RUNS / job.name
    if not (run_dir / STATE).is_file():
        raise CodecompError(f"no stopped run named {job.name} in {run_dir.parent}")
    state = torch.load(run_dir / STATE, weights_only=False, map_location="cpu")
    data = data_record(*split_notebooks(collect_notebooks(job.notebooks), job.hp.seed))
    info = {"base": base.manifest.name, "data": data, "hyperparameters": asdict(job.hp),
            "device": job.device, "steps": state["step"], "best_step": state["best_step"],
            "stopped": "interrupted", "val_loss_before": state["initial_val_loss"],
            "val_loss": state["best_val_loss"], "val_history": state["history"],
            "train_losses": state["train_losses"], "search": []}
    checkpoint = base_checkpoint(base, store, console)
    adapter_dir = run_dir / BEST
    if last:
        adapter_dir = run_dir / "last"
        model = add_adapters(load_base(checkpoint, "cpu"), job.hp)
        set_peft_model_state_dict(model, state["adapter"])
        model.save_pretrained(adapter_dir)
        del model
        info.update(stopped=f"interrupted; the adapter of step {state['step']} (unvalidated)")
    merged = merge_adapter(checkpoint, adapter_dir)
    return export_finetuned(merged, checkpoint, base, store, name=job.name, device=job.device,
                            info=info, console=console, adapter_dir=adapter_dir)


def _check_held_out(training: list[Path], evaluation: list[Path]) -> None:
    """Never evaluate on what was trained on: the same file content anywhere is refused."""
    if not evaluation:
        raise CodecompError("--eval: no notebooks there", fix="give a folder of held-out notebooks")
    trained = {file_sha256(p): p for p in training}
    shared = [p for p in evaluation if file_sha256(p) in trained]
    if shared:
        raise CodecompError(f"--eval holds {len(shared)} training notebook(s), e.g. {shared[0]}",
                            fix="evaluate on notebooks that are not in the training set")


def finetune_info(job: FinetuneJob, base: ModelDir, hp: Hyperparameters, result: TrainingResult,
                  corpus: Corpus, trials: list[dict]) -> dict:
    return {
        "base": base.manifest.name,
        "data": data_record(corpus.train_notebooks, corpus.validation_notebooks),
        "examples": {"train": len(corpus.train), "validation": len(corpus.validation),
                     **corpus.counts},
        "hyperparameters": asdict(hp),
        "device": job.device,
        "steps": result.steps,
        "best_step": result.best_step,
        "stopped": result.stopped,
        "val_loss_before": result.initial_val_loss,
        "val_loss": result.best_val_loss,
        "val_history": result.history,
        "train_seconds": result.seconds,
        "peak_rss_mb": result.peak_rss_mb,
        "search": trials,
    }


def data_record(train: list[Path], validation: list[Path]) -> list[dict]:
    """Each notebook trained or validated on, with its sha256: what the manifest records."""
    return [{"path": str(p.resolve()), "sha256": file_sha256(p), "split": split}
            for split, paths in (("train", train), ("validation", validation)) for p in paths]


def write_manifest_info(model: ModelDir, info: dict) -> None:
    """Add the figures measured after the export; the manifest is replaced whole (the model's
    files and their sizes are unchanged)."""
    path = model.path / MANIFEST
    data = json.loads(path.read_text())
    data["finetune"] = info
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(data, indent=2))
    partial.replace(path)


# --- search -----------------------------------------------------------------------------------


def search_hyperparameters(job: FinetuneJob, corpus: Corpus, checkpoint: Path, run_dir: Path,
                           trainer_args: dict) -> tuple[Hyperparameters, TrainingResult, list]:
    """`job.search` short trials with optuna's TPE sampler (Bayesian optimization) over the
    learning rate, the LoRA rank and the epochs; the lowest validation loss wins."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    console = trainer_args["console"]
    results: dict[int, tuple[Hyperparameters, TrainingResult]] = {}

    def objective(trial: optuna.Trial) -> float:
        hp = replace(job.hp, lr=trial.suggest_float("lr", 3e-5, 2e-3, log=True),
                     lora_rank=trial.suggest_categorical("lora_rank", [4, 8, 16, 32]),
                     epochs=trial.suggest_float("epochs", 0.5, 3.0))
        console.print(f"trial {trial.number}: lr {hp.lr:.2e}, rank {hp.lora_rank}, "
                      f"epochs {hp.epochs:.2f}")
        result = LoraTrainer(checkpoint, hp, run_dir / f"trial-{trial.number}",
                             **trainer_args).train(corpus.train, corpus.validation)
        results[trial.number] = (hp, result)
        return result.best_val_loss

    study = optuna.create_study(direction="minimize",
                                sampler=optuna.samplers.TPESampler(seed=job.hp.seed))
    study.optimize(objective, n_trials=job.search)
    trials = [{"trial": n, "lr": hp.lr, "lora_rank": hp.lora_rank, "epochs": hp.epochs,
               "steps": r.steps, "val_loss": r.best_val_loss, "seconds": r.seconds}
              for n, (hp, r) in sorted(results.items())]
    table = Table(title=f"search: {job.search} trials (TPE), by validation loss")
    for column in ("trial", "lr", "rank", "epochs", "steps", "val loss", "s"):
        table.add_column(column, justify="right")
    for t in trials:
        mark = " *" if t["trial"] == study.best_trial.number else ""
        table.add_row(f"{t['trial']}{mark}", f"{t['lr']:.2e}", str(t["lora_rank"]),
                      f"{t['epochs']:.2f}", str(t["steps"]), f"{t['val_loss']:.4f}",
                      f"{t['seconds']:.0f}")
    Console().print(table)
    hp, result = results[study.best_trial.number]
    return hp, result, trials


# --- base against fine-tuned ------------------------------------------------------------------


def compare_models(base: ModelDir, tuned: ModelDir, eval_paths: list[str], job: FinetuneJob,
                   console: Console) -> dict:
    """The product's eval on the same seeded tasks for both models, paired task by task."""
    from rich.progress import Progress

    from ..completion.service import CompletionService

    notebooks = collect_notebooks(eval_paths)
    if not notebooks:
        raise CodecompError(f"--eval {' '.join(eval_paths)}: no notebooks there")
    settings = ServiceSettings(device="cuda" if job.device == "cuda" else "cpu",
                               threads=job.threads)
    reports = []
    for model in (base, tuned):
        service = CompletionService.load(model, settings)
        with Progress(console=console) as progress:
            reports.append(evaluate(service, notebooks, variants=[EVAL_VARIANT], kernel=False,
                                    seed=job.hp.seed, per_notebook=job.eval_tasks_per_notebook,
                                    cell_timeout=60, progress=progress))
        del service
    comparison = paired_comparison(reports[0]["results"], reports[1]["results"], job.hp.seed)
    comparison["notebooks"] = [str(p) for p in notebooks]
    print_comparison(comparison, base.manifest.name, tuned.manifest.name)
    return comparison


def paired_comparison(base: list[dict], tuned: list[dict], seed: int) -> dict:
    """Mean of each metric for both, and the eval's seeded bootstrap 95% CI of the paired
    difference."""
    keys = [(r["notebook"], r["cell"], r["kind"], r["prefix"]) for r in base]
    if keys != [(r["notebook"], r["cell"], r["kind"], r["prefix"]) for r in tuned]:
        raise CodecompError("the two evaluations drew different tasks; cannot pair them")
    figures: dict = {"tasks": len(base)}
    for metric in METRICS:
        diffs = [100.0 * (float(t[metric]) - float(b[metric])) for b, t in zip(base, tuned)]
        low, high = bootstrap_ci(diffs, seed)
        figures[metric] = {
            "base": round(100 * statistics.fmean(float(b[metric]) for b in base), 1),
            "tuned": round(100 * statistics.fmean(float(t[metric]) for t in tuned), 1),
            "diff": round(statistics.fmean(diffs), 1),
            "ci95": [round(low, 1), round(high, 1)],
        }
    return figures


def print_comparison(figures: dict, base_name: str, tuned_name: str) -> None:
    table = Table(title=f"{tuned_name} against {base_name}: {figures['tasks']} paired tasks")
    for column in ("metric", base_name, tuned_name, "difference", "95% CI"):
        table.add_column(column, justify="right")
    for metric, label in METRICS.items():
        f = figures[metric]
        table.add_row(label, f"{f['base']:.1f}", f"{f['tuned']:.1f}", f"{f['diff']:+.1f}",
                      f"[{f['ci95'][0]:+.1f}, {f['ci95'][1]:+.1f}]")
    Console().print(table)
