"""Training examples for `jupyter codecomp finetune`: train what you serve.

Examples are cut from notebooks exactly as the product is asked to fill them: the eval's own
task shapes (the rest of a line after its indentation, the rest of a line from a token boundary,
the rest of an indented block), each rendered by the product's `PromptBuilder` with the cells
above (markdown as the prompt renders it), the cells below where the service shows them, and
no variables block (no kernel ran). The target is the middle, with the healed token put back in
front and the end-of-text token after it (the model must learn to stop). A share of the examples
is plain left-to-right (no FIM tokens; the target is the rest of the cell), as Refact's LoRA
fine-tuning mixes them (FIM rate 0.9). The split is by notebook, seeded, so no validation
example shares a notebook with a training one.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..completion.context import cells_below_shown
from ..completion.prompt import PromptBuilder
from ..errors import CodecompError
from ..models.finetune import TrainingExample
from ..models.recipes import PromptFormat
from .evaluation import Task, make_block_tasks, make_tasks, notebook_cells, request_for

FIM_RATE = 0.9  # Refact's setting; the rest are plain left-to-right examples
VALIDATION_SHARE = 0.15
# Tokens the left-to-right target may span (the rest of a cell can be long; the first lines are
# what the product shows).
PLAIN_TARGET_MAX_TOKENS = 96
ALL_TASKS = 10**9


@dataclass(frozen=True)
class Corpus:
    train: list[TrainingExample]
    validation: list[TrainingExample]
    train_notebooks: list[Path]
    validation_notebooks: list[Path]
    counts: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        c = self.counts
        kinds = ", ".join(f"{k} {c[k]}" for k in ("line", "mid", "block", "plain") if k in c)
        return (
            f"{len(self.train_notebooks)} training and {len(self.validation_notebooks)} "
            f"validation notebooks; {len(self.train)} training and {len(self.validation)} "
            f"validation examples ({kinds}); {c.get('duplicates', 0)} duplicates and "
            f"{c.get('too_long', 0)} over the token limit dropped; "
            f"{c.get('train_tokens', 0)} training tokens"
        )


class ExampleCutter:
    """Turns eval-shaped tasks into token ids with the serving prompt builder."""

    def __init__(self, tokenizer, fmt: PromptFormat, *, max_tokens: int):
        # Prompt budgets scale with the tokens one example may use: the serving layout at a
        # smaller window (a 512-token window scored nearly as well as 1500, DESIGN.md), since
        # a training step costs time in proportion to its tokens.
        budgets = dict(budget_above=max_tokens // 2, budget_below=max_tokens // 8)
        self.fim_builder = PromptBuilder.for_tokenizer(tokenizer, fmt, **budgets)
        self.plain_builder = PromptBuilder.for_tokenizer(tokenizer, replace(fmt, fim=False),
                                                         **budgets)
        self.encode = self.fim_builder.encode
        self.max_tokens = max_tokens
        stop = fmt.stop_tokens[0] if fmt.stop_tokens else None
        self.end_id = tokenizer.token_to_id(stop) if stop else None

    @property
    def fim(self) -> bool:
        return self.fim_builder.fim

    def cut(self, task: Task, cells, plain: bool) -> TrainingExample | None:
        request = request_for(task, cells, "above+below")
        if plain or not self.fim:
            # Left to right: the suffix is not shown, so the continuation is the rest of the cell.
            prompt = self.plain_builder.build(request.prefix, "", request.cells)
            target = self.encode(prompt.heal + task.target + task.suffix)[:PLAIN_TARGET_MAX_TOKENS]
            kind = "plain"
        else:
            prompt = self.fim_builder.build(request.prefix, request.suffix, request.cells,
                                            cells_below_shown(request,
                                                              self.fim_builder.layout.below))
            target = self.encode(prompt.heal + task.target)
            if self.end_id is not None:
                target.append(self.end_id)
            kind = task.kind
        if not target or len(prompt.ids) + len(target) > self.max_tokens:
            return None
        return TrainingExample(tuple(prompt.ids), tuple(target), task.notebook, kind)


def split_notebooks(notebooks: list[Path], seed: int) -> tuple[list[Path], list[Path]]:
    """A seeded split by notebook; at least one notebook on each side."""
    if len(notebooks) < 2:
        raise CodecompError(
            f"fine-tuning needs at least 2 notebooks (one held out for validation), got "
            f"{len(notebooks)}",
            fix="give more notebooks or a folder of them",
        )
    order = sorted(notebooks, key=lambda p: str(p))
    random.Random(seed).shuffle(order)
    held_out = max(1, round(len(order) * VALIDATION_SHARE))
    return sorted(order[held_out:]), sorted(order[:held_out])


def build_corpus(notebooks: list[Path], tokenizer, fmt: PromptFormat, *, seed: int,
                 max_tokens: int, limit: int = 0, validation_limit: int = 0) -> Corpus:
    """Every example, or a seeded sample of `limit` training and `validation_limit` validation
    examples drawn across all tasks (a run bounded by --max-steps sees only so many; cutting
    all 15k examples of handson-ml3 costs about 50 s of CPU)."""
    cutter = ExampleCutter(tokenizer, fmt, max_tokens=max_tokens)
    train_nbs, val_nbs = split_notebooks(notebooks, seed)
    counts: Counter = Counter()
    seen: set[str] = set()
    train = _examples(train_nbs, cutter, seed, counts, seen, limit)
    validation = _examples(val_nbs, cutter, seed + 1, counts, seen, validation_limit)
    if not train or not validation:
        side = "training" if not train else "validation"
        raise CodecompError(
            f"no usable code in the {side} notebooks ({len(train_nbs if not train else val_nbs)}"
            " notebooks without code lines to complete)",
            fix="give notebooks with code cells",
        )
    counts["train_tokens"] = sum(len(e.prompt) + len(e.target) for e in train)
    return Corpus(train, validation, train_nbs, val_nbs, dict(counts))


def _examples(notebooks: list[Path], cutter: ExampleCutter, seed: int, counts: Counter,
              seen: set[str], limit: int = 0) -> list[TrainingExample]:
    rng = random.Random(seed)
    examples: list[TrainingExample] = []
    tasks = []
    for path in notebooks:
        try:
            cells = notebook_cells(path)
        except Exception as exc:  # nbformat raises several types for a file that is not a notebook
            raise CodecompError(f"cannot read {path}: {str(exc).splitlines()[0][:200]}") from None
        tasks += [(t, cells) for t in make_tasks(path, cells, rng, ALL_TASKS)
                  + make_block_tasks(path, cells, rng, ALL_TASKS)]
    if limit:
        rng.shuffle(tasks)
    for task, cells in tasks:
        if limit and len(examples) >= limit:
            break
        example = cutter.cut(task, cells, plain=rng.random() > FIM_RATE)
        if example is None:
            counts["too_long"] += 1
            continue
        # Identical examples (the same import line under the same cells) count once, and a
        # validation example never repeats a training one.
        key = hashlib.sha1(repr((example.prompt, example.target)).encode()).hexdigest()
        if key in seen:
            counts["duplicates"] += 1
            continue
        seen.add(key)
        counts[example.kind] += 1
        examples.append(example)
    return examples


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
