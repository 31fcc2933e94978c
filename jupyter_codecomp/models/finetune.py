"""LoRA fine-tuning of a model's Hugging Face checkpoint (peft on torch, CPU or CUDA).

The base weights stay frozen; low-rank adapters on every attention and MLP projection learn
(Refact's setting: rank 16, alpha 32, learning rate 3e-4). AdamW with weight decay, a linear
warmup then cosine decay, dropout on the adapters, gradient clipping, and early stopping on the
validation loss: the best adapter is kept in `RUN_DIR/best`, the last state (adapter, optimizer,
schedule, step) in `RUN_DIR/state.pt`, which `resume=True` continues from. Ctrl+C saves the state
and keeps the best adapter. The loss counts the target (middle) tokens only.

Measured on the 2-core machine (DESIGN.md): Qwen2.5-Coder-0.5B in fp32, rank 16 (8.8 M trainable
parameters), one 512-token step takes about 14 s with peak RSS 7.3 GB.
"""

from __future__ import annotations

import hashlib
import math
import random
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ..errors import CodecompError

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
IGNORE = -100  # the label of a token the loss leaves out (prompt, padding)
STATE = "state.pt"
BEST = "best"


@dataclass(frozen=True)
class TrainingExample:
    prompt: tuple[int, ...]  # the prompt as served: no loss on it
    target: tuple[int, ...]  # the middle the model must write (and its end token)
    notebook: str
    kind: str  # "line", "mid", "block" or "plain"


@dataclass(frozen=True)
class Hyperparameters:
    lr: float = 3e-4
    lora_rank: int = 16
    lora_alpha_per_rank: float = 2.0  # alpha = 2 x rank, as Refact's 16/32
    lora_dropout: float = 0.05
    # Adapters on the top N layers only (0: all). Below the lowest adapter nothing needs a
    # gradient, so backpropagation stops there: on a CPU, half the layers cut a step by a third.
    lora_layers: int = 0
    weight_decay: float = 0.01
    epochs: float = 1.0
    batch_tokens: int = 512  # padded tokens per step; also the longest example kept
    max_steps: int = 0  # 0: as many as the epochs give
    warmup_share: float = 0.05
    eval_every: int = 0  # steps between validation passes; 0: about 8 per run
    patience: int = 3  # validation passes without improvement before stopping
    validation_examples: int = 64  # a fixed seeded sample: a full pass costs like a step per 3
    seed: int = 0


@dataclass
class TrainingResult:
    adapter_dir: Path
    steps: int
    best_step: int
    initial_val_loss: float
    best_val_loss: float
    stopped: str  # "max steps", "epochs", "early stop"
    seconds: float
    peak_rss_mb: float
    train_losses: list[float] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)  # {"step", "val_loss"} per validation pass


def load_base(checkpoint: Path, device: str):
    try:
        import torch
        from transformers import AutoModelForCausalLM
    except ImportError as exc:
        raise CodecompError(f"fine-tuning needs {exc.name}",
                            fix="pip install 'jupyter-codecomp[finetune]'") from None
    if device == "cuda" and not torch.cuda.is_available():
        raise CodecompError("--device cuda, but torch sees no CUDA device", fix="use --device cpu")
    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32)
    return model.to(device)


def add_adapters(model, hp: Hyperparameters):
    from peft import LoraConfig, get_peft_model

    layers = model.config.num_hidden_layers
    top = list(range(layers - hp.lora_layers, layers)) if 0 < hp.lora_layers < layers else None
    config = LoraConfig(r=hp.lora_rank, lora_alpha=hp.lora_alpha_per_rank * hp.lora_rank,
                        lora_dropout=hp.lora_dropout, target_modules=list(LORA_TARGETS),
                        layers_to_transform=top, task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def plan_batches(examples: list[TrainingExample], hp: Hyperparameters) -> list[list[int]]:
    """The whole run's batches, seeded: each epoch a fresh shuffle, grouped greedily so that a
    batch's padded size stays within `batch_tokens`. The same inputs give the same plan, so a
    resumed run takes up at the batch where it stopped."""
    plan: list[list[int]] = []
    for epoch in range(max(1, math.ceil(hp.epochs))):
        order = list(range(len(examples)))
        random.Random(f"{hp.seed}-{epoch}").shuffle(order)
        batch: list[int] = []
        longest = 0
        for index in order:
            size = len(examples[index].prompt) + len(examples[index].target)
            if batch and max(longest, size) * (len(batch) + 1) > hp.batch_tokens:
                plan.append(batch)
                batch, longest = [], 0
            batch.append(index)
            longest = max(longest, size)
        if batch:
            plan.append(batch)
    steps = round(len(plan) * hp.epochs / max(1, math.ceil(hp.epochs)))
    return plan[: min(steps, hp.max_steps) if hp.max_steps else steps]


def collate(examples: list[TrainingExample], pad_id: int, device: str):
    """Right-padded ids, the attention mask, and labels that count only the target tokens."""
    import torch

    longest = max(len(e.prompt) + len(e.target) for e in examples)
    ids, mask, labels = [], [], []
    for e in examples:
        seq = list(e.prompt) + list(e.target)
        pad = longest - len(seq)
        ids.append(seq + [pad_id] * pad)
        mask.append([1] * len(seq) + [0] * pad)
        labels.append([IGNORE] * len(e.prompt) + list(e.target) + [IGNORE] * pad)
    as_tensor = lambda rows: torch.tensor(rows, dtype=torch.long, device=device)  # noqa: E731
    return as_tensor(ids), as_tensor(mask), as_tensor(labels)


def target_loss(model, batch, reduction: str = "mean"):
    """Cross-entropy of the target tokens, each predicted from the tokens before it. The output
    head runs on the target positions only: over a 151k-token vocabulary it is about a quarter
    of the 0.5B model's work per position, and the prompt positions need no logits."""
    import torch.nn.functional as F

    ids, mask, labels = batch
    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = causal_lm.model(input_ids=ids, attention_mask=mask, use_cache=False)
    wanted = labels[:, 1:]
    chosen = wanted != IGNORE
    logits = causal_lm.get_output_embeddings()(hidden.last_hidden_state[:, :-1][chosen])
    return F.cross_entropy(logits.float(), wanted[chosen], reduction=reduction)


def mean_target_loss(model, examples: list[TrainingExample], pad_id: int, device: str) -> float:
    """Mean loss per target token, one example at a time (no padding), dropout off."""
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for e in examples:
            total += target_loss(model, collate([e], pad_id, device), "sum").item()
            count += len(e.target)
    return round(total / max(1, count), 5)


def data_key(examples: list[TrainingExample]) -> str:
    digest = hashlib.sha256()
    for e in examples:
        digest.update(repr((e.prompt, e.target)).encode())
    return digest.hexdigest()[:16]


class LoraTrainer:
    """One training run: a base checkpoint, hyperparameters, a run folder for its checkpoints."""

    def __init__(self, checkpoint: Path, hp: Hyperparameters, run_dir: Path, *,
                 device: str = "cpu", pad_id: int = 0, console: Console | None = None):
        self.checkpoint = checkpoint
        self.hp = hp
        self.run_dir = run_dir
        self.device = device
        self.pad_id = pad_id
        self.console = console or Console(stderr=True)

    def train(self, train: list[TrainingExample], validation: list[TrainingExample],
              resume: bool = False) -> TrainingResult:
        import torch

        torch.manual_seed(self.hp.seed)
        started = time.monotonic()
        model = add_adapters(load_base(self.checkpoint, self.device), self.hp)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.hp.lr, weight_decay=self.hp.weight_decay)
        plan = plan_batches(train, self.hp)
        warmup = max(1, round(len(plan) * self.hp.warmup_share))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(warmup, len(plan)))
        val_sample = random.Random(self.hp.seed).sample(
            validation, min(len(validation), self.hp.validation_examples))
        key = data_key(train) + data_key(val_sample)
        state = self._resume(model, optimizer, scheduler, key) if resume else None
        if state is None:
            state = {"step": 0, "history": [], "train_losses": [], "bad_passes": 0,
                     "initial_val_loss": self._val_loss(model, val_sample)}
            state["best_val_loss"], state["best_step"] = state["initial_val_loss"], 0
            self._save_best(model)
        every = self.hp.eval_every or max(1, len(plan) // 8)
        stopped = "max steps" if self.hp.max_steps and len(plan) == self.hp.max_steps else "epochs"
        try:
            stopped = self._loop(model, optimizer, scheduler, plan, train, val_sample, state,
                                 every, key) or stopped
        except KeyboardInterrupt:
            self._save_state(model, optimizer, scheduler, state, key)
            self.console.print(
                f"[yellow]stopped at step {state['step']}[/]: the best adapter (validation loss "
                f"{state['best_val_loss']:.4f}, step {state['best_step']}) is kept in "
                f"{self.run_dir / BEST}; continue with --resume")
            raise
        return TrainingResult(
            self.run_dir / BEST, state["step"], state["best_step"], state["initial_val_loss"],
            state["best_val_loss"], stopped, round(time.monotonic() - started, 1),
            round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            state["train_losses"], state["history"])

    def _loop(self, model, optimizer, scheduler, plan, train, val_sample, state, every, key):
        import torch

        model.train()
        with _progress(self.console) as progress:
            bar = progress.add_task("training", total=len(plan), completed=state["step"],
                                    loss="-", val=f"{state['best_val_loss']:.3f}")
            while state["step"] < len(plan):
                batch = collate([train[i] for i in plan[state["step"]]], self.pad_id, self.device)
                loss = target_loss(model, batch)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(
                    [p for p in model.parameters() if p.requires_grad], 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                state["step"] += 1
                state["train_losses"].append(round(loss.item(), 4))
                progress.update(bar, advance=1, loss=f"{loss.item():.3f}")
                if state["step"] % every and state["step"] < len(plan):
                    continue
                val_loss = self._val_loss(model, val_sample)
                model.train()
                state["history"].append({"step": state["step"], "val_loss": val_loss})
                progress.update(bar, val=f"{val_loss:.3f}")
                if val_loss < state["best_val_loss"] * 0.999:
                    state.update(best_val_loss=val_loss, best_step=state["step"], bad_passes=0)
                    self._save_best(model)
                else:
                    state["bad_passes"] += 1
                self._save_state(model, optimizer, scheduler, state, key)
                if state["bad_passes"] >= self.hp.patience:
                    return "early stop"
        return None

    def _val_loss(self, model, examples: list[TrainingExample]) -> float:
        return mean_target_loss(model, examples, self.pad_id, self.device)

    def _save_best(self, model) -> None:
        model.save_pretrained(self.run_dir / BEST)

    def _save_state(self, model, optimizer, scheduler, state: dict, key: str) -> None:
        import torch
        from peft import get_peft_model_state_dict

        self.run_dir.mkdir(parents=True, exist_ok=True)
        payload = {**state, "adapter": get_peft_model_state_dict(model), "data_key": key,
                   "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                   "hyperparameters": _resumable(self.hp),
                   # The adapters' dropout draws from it: a resumed run draws the same masks.
                   "rng": torch.get_rng_state()}
        partial = self.run_dir / (STATE + ".partial")
        torch.save(payload, partial)
        partial.replace(self.run_dir / STATE)  # a Ctrl+C mid-write never leaves half a state

    def _resume(self, model, optimizer, scheduler, key: str) -> dict | None:
        import torch
        from peft import set_peft_model_state_dict

        path = self.run_dir / STATE
        if not path.is_file():
            self.console.print(f"[yellow]nothing to resume in {self.run_dir}; starting afresh[/]")
            return None
        payload = torch.load(path, weights_only=False, map_location=self.device)
        if payload["data_key"] != key or payload["hyperparameters"] != _resumable(self.hp):
            raise CodecompError(
                "--resume: the notebooks or the hyperparameters differ from the saved run",
                fix="run with the same notebooks and options, or without --resume")
        set_peft_model_state_dict(model, payload.pop("adapter"))
        optimizer.load_state_dict(payload.pop("optimizer"))
        scheduler.load_state_dict(payload.pop("scheduler"))
        # The schedule follows this run's plan (--max-steps may have grown): the learning rate
        # saved with the optimizer was the old plan's.
        for group, base_lr in zip(optimizer.param_groups, scheduler.base_lrs):
            group["lr"] = base_lr * scheduler.lr_lambdas[0](scheduler.last_epoch)
        torch.set_rng_state(payload.pop("rng").cpu())
        self.console.print(f"resuming at step {payload['step']} (best validation loss "
                           f"{payload['best_val_loss']:.4f} at step {payload['best_step']})")
        return payload


def _resumable(hp: Hyperparameters) -> dict:
    """What a resumed run must share with the saved one (the step limit may grow)."""
    return {k: v for k, v in asdict(hp).items() if k not in ("max_steps", "eval_every")}


def _warmup_cosine(warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]}  val {task.fields[val]}"),
                    TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                    console=console)
