"""The evaluation's tasks and their scores: notebooks become tasks (seeded, deterministic).

At a code line, after its indentation ("line") or at a token boundary inside it ("mid"), the
target is the rest of the line. At the first line of an indented block (after `def ...:`, `for
...:`), "block": the target is the whole block.
"""

from __future__ import annotations

import io
import random
import re
import tokenize
from dataclasses import dataclass
from pathlib import Path

from ..completion.postprocess import is_scaffolding
from ..completion.postprocess.rules import indent_of
from ..completion.protocol import Cell

KINDS = ("line", "mid", "block")
WORD = re.compile(r"\w+|[^\w\s]")


@dataclass(frozen=True)
class Task:
    notebook: str
    cell: int  # index among all cells
    kind: str  # "line", "mid" or "block"
    prefix: str  # current cell up to the cursor
    suffix: str  # current cell after the line
    target: str  # the rest of the line; for a block, the rest of the block


@dataclass
class Result:
    task: Task
    variant: str
    completion: str
    exact: bool
    similarity: float
    first_token: bool
    latency_ms: float
    prompt_tokens: int = 0
    cached_tokens: int = 0  # reused from the previous prompt's KV cache
    confidence: float = 0.0
    logprobs: tuple[float, ...] = ()  # the kept tokens' log-probabilities
    raw: str = ""  # what the model wrote, before post-processing
    first_emptied_by: str = ""  # the rule that cut the first alternative to nothing, if one did

    @property
    def empty(self) -> bool:
        return not self.completion.strip()

    @property
    def scaffolding(self) -> bool:
        return any(is_scaffolding(line) for line in self.completion.split("\n"))


def notebook_cells(path: Path) -> list[Cell]:
    import nbformat

    nb = nbformat.read(path, as_version=4)
    return [Cell(c.cell_type, c.source) for c in nb.cells if c.cell_type in ("code", "markdown")]


def collect_notebooks(paths: list[str]) -> list[Path]:
    return list(notebook_counts(paths, 0))


def notebook_counts(paths: list[str], per_notebook: int) -> dict[Path, int]:
    """Notebooks under `paths` and the tasks to draw from each: `per_notebook`, or N for a path
    given as `PATH:N` (the corpora differ in size: a few long textbook chapters, many short
    exercise notebooks). The paths take turns, each in proportion to its tasks, so that every
    corpus is in each part of a run (a run stopped early still covers them all)."""
    by_folder: dict[Path, list[tuple[Path, int]]] = {}  # notebooks given one by one: their folder
    for name in paths:
        head, _, count = name.rpartition(":")
        name, count = (head, int(count)) if head and count.isdigit() else (name, per_notebook)
        path = Path(name)
        by_folder.setdefault(path if path.is_dir() else path.parent, []).extend(
            (nb, count) for nb in (sorted(path.rglob("*.ipynb")) if path.is_dir() else [path])
            if ".ipynb_checkpoints" not in nb.parts)
    groups = list(by_folder.values())
    found: dict[Path, int] = {}
    taken = [0] * len(groups)
    sizes = [max(1, sum(count for _, count in g)) for g in groups]
    while any(taken[k] < len(g) for k, g in enumerate(groups)):
        # The path furthest behind, by the share of its tasks already placed.
        k = min((k for k, g in enumerate(groups) if taken[k] < len(g)),
                key=lambda k: sum(c for _, c in groups[k][:taken[k]]) / sizes[k])
        notebook, count = groups[k][taken[k]]
        found[notebook] = count
        taken[k] += 1
    return found


def make_tasks(path: Path, cells: list[Cell], rng: random.Random, per_notebook: int) -> list[Task]:
    tasks = []
    for index, lines in _code_cells(cells):
        for number, line in enumerate(lines):
            body = line.strip()
            if len(body) < 4 or body.startswith("#"):
                continue
            indent = line[: indent_of(line)]
            before = "\n".join(lines[:number]) + ("\n" if number else "")
            after = "\n" + "\n".join(lines[number + 1:]) if number + 1 < len(lines) else ""
            tasks.append(Task(str(path), index, "line", before + indent, after, body))
            cut = _token_boundary(body, rng)
            if cut:
                tasks.append(Task(str(path), index, "mid", before + indent + body[:cut], after,
                                  body[cut:]))
    return _draw(tasks, rng, per_notebook)


def make_block_tasks(path: Path, cells: list[Cell], rng: random.Random,
                     per_notebook: int) -> list[Task]:
    """At the first line of each indented block, after its indentation: the rest of the block."""
    tasks = []
    for index, lines in _code_cells(cells):
        for number, header in enumerate(lines[:-1]):
            first = lines[number + 1]
            indent = indent_of(first)
            opens_block = header.rstrip().endswith(":") and indent > indent_of(header)
            if not opens_block or not first.strip():
                continue
            end = number + 1
            while end < len(lines) and (not lines[end].strip() or indent_of(lines[end]) >= indent):
                end += 1
            body = "\n".join(lines[number + 1:end]).rstrip()
            before = "\n".join(lines[:number + 1]) + "\n" + first[:indent]
            after = "\n" + "\n".join(lines[end:]) if end < len(lines) else ""
            tasks.append(Task(str(path), index, "block", before, after, body[indent:]))
    return _draw(tasks, rng, per_notebook)


def _code_cells(cells: list[Cell]):
    """(index, lines) of the code cells, leaving out cells of magics."""
    for index, cell in enumerate(cells):
        if cell.cell_type == "code" and not cell.source.lstrip().startswith("%"):
            yield index, cell.source.split("\n")


def _draw(tasks: list[Task], rng: random.Random, count: int) -> list[Task]:
    rng.shuffle(tasks)
    return sorted(tasks[:count], key=in_notebook_order)


def in_notebook_order(task: Task) -> tuple[int, int]:
    return task.cell, len(task.prefix)


def _token_boundary(line: str, rng: random.Random) -> int | None:
    """A cursor position after a Python token, leaving at least one token to complete."""
    try:
        ends = [tok.end[1] for tok in tokenize.generate_tokens(io.StringIO(line).readline)
                if tok.type not in (tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER,
                                    tokenize.COMMENT) and tok.start[0] == 1]
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return None
    candidates = [e for e in ends[:-1] if 0 < e < len(line.rstrip())]
    return rng.choice(candidates) if candidates else None


# --- metrics ----------------------------------------------------------------------------------


def edit_similarity(a: str, b: str) -> float:
    if not a and not b:
        return 1.0
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return 1.0 - previous[-1] / max(len(a), len(b))


def _lines(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.rstrip().split("\n"))


def first_token(text: str) -> str:
    match = WORD.search(text)
    return match.group(0) if match else ""


def starts_with_name(task: Task) -> bool:
    token = first_token(task.target)
    return len(token) > 1 and token[0].isidentifier()


def score(task: Task, variant: str, completion: str, latency_ms: float) -> Result:
    if task.kind == "block":
        got, want = _lines(completion), _lines(task.target)
    else:
        got, want = completion.split("\n", 1)[0].rstrip(), task.target.rstrip()
    return Result(task, variant, completion, got == want, edit_similarity(got, want),
                  bool(first_token(got)) and first_token(got) == first_token(want), latency_ms)
