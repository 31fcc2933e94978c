"""`jupyter codecomp eval`: completion quality on notebooks, through the product's own pipeline.

Notebooks become tasks (seeded, deterministic): at a code line, after its indentation ("line")
or at a token boundary inside it ("mid"), the target is the rest of the line. With `--kinds
block`, at the first line of an indented block (after `def ...:`, `for ...:`), the target is the
whole block: with `--mode line` against `--mode auto` it tells whether a block suggestion gives
more of the right code than its first line. Each task runs through `CompletionService.complete`
under context variants. A variant is `cell` (the current cell only: the text before and after
the cursor) or the parts it adds to the cell, joined with `+`:

    above      the cells above
    below      the cells below
    variables  the live variables (needs --kernel)

so `above+variables` is the cell, the cells above and the variables, and `above+below+variables`
is everything the editor sends.

With --kernel the notebook's cells are executed in order in a real kernel: a cell's tasks see
the state after the cells before it, as a student would have it; cell errors are recorded, and
each cell has a time limit. The kernel's own completion (what Tab gives today, top-1) is scored
as a baseline, at the cursor and with the first letter of the next name typed. Metrics: exact
match, edit similarity, first-token accuracy, latency and the share of prompt tokens reused from
the KV cache; per kind ("line", "mid", and "name": the tasks whose rest of line starts with a
name) and per variant. Output: a table, `results.json` and `results.png` in --out.
"""

from __future__ import annotations

import io
import json
import random
import re
import statistics
import subprocess
import time
import tokenize
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ..errors import CodecompError
from ..completion.protocol import Cell, CompletionRequest
from ..completion.context import Variables

KINDS = ("line", "mid", "block")
CONTEXT_PARTS = ("above", "below", "variables")
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


@dataclass
class NotebookRun:
    cells: list[Cell]
    tasks: list[Task]
    errors: dict[int, str] = field(default_factory=dict)


# --- tasks ------------------------------------------------------------------------------------


def notebook_cells(path: Path) -> list[Cell]:
    import nbformat

    nb = nbformat.read(path, as_version=4)
    return [Cell(c.cell_type, c.source) for c in nb.cells if c.cell_type in ("code", "markdown")]


def make_tasks(path: Path, cells: list[Cell], rng: random.Random, per_notebook: int) -> list[Task]:
    tasks = []
    for index, lines in _code_cells(cells):
        for number, line in enumerate(lines):
            body = line.strip()
            if len(body) < 4 or body.startswith("#"):
                continue
            indent = line[: _indent(line)]
            before = "\n".join(lines[:number]) + ("\n" if number else "")
            after = "\n" + "\n".join(lines[number + 1:]) if number + 1 < len(lines) else ""
            tasks.append(Task(path.name, index, "line", before + indent, after, body))
            cut = _token_boundary(body, rng)
            if cut:
                tasks.append(Task(path.name, index, "mid", before + indent + body[:cut], after,
                                  body[cut:]))
    return _draw(tasks, rng, per_notebook)


def make_block_tasks(path: Path, cells: list[Cell], rng: random.Random,
                     per_notebook: int) -> list[Task]:
    """At the first line of each indented block, after its indentation: the rest of the block."""
    tasks = []
    for index, lines in _code_cells(cells):
        for number, header in enumerate(lines[:-1]):
            first = lines[number + 1]
            indent = _indent(first)
            if not header.rstrip().endswith(":") or not first.strip() or indent <= _indent(header):
                continue
            end = number + 1
            while end < len(lines) and (not lines[end].strip() or _indent(lines[end]) >= indent):
                end += 1
            body = "\n".join(lines[number + 1:end]).rstrip()
            before = "\n".join(lines[:number + 1]) + "\n" + first[:indent]
            after = "\n" + "\n".join(lines[end:]) if end < len(lines) else ""
            tasks.append(Task(path.name, index, "block", before, after, body[indent:]))
    return _draw(tasks, rng, per_notebook)


def _code_cells(cells: list[Cell]):
    """(index, lines) of the code cells, leaving out cells of magics."""
    for index, cell in enumerate(cells):
        if cell.cell_type == "code" and not cell.source.lstrip().startswith("%"):
            yield index, cell.source.split("\n")


def _draw(tasks: list[Task], rng: random.Random, count: int) -> list[Task]:
    rng.shuffle(tasks)
    return sorted(tasks[:count], key=_in_notebook_order)


def _in_notebook_order(task: Task) -> tuple[int, int]:
    return task.cell, len(task.prefix)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


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


def variant_parts(variant: str) -> set[str]:
    """The context parts a variant adds to the current cell; ValueError names a bad one."""
    parts = set() if variant == "cell" else set(variant.split("+"))
    unknown = parts - set(CONTEXT_PARTS)
    if unknown or not (parts or variant == "cell"):
        raise ValueError(sorted(unknown)[0] if unknown else variant)
    return parts


def request_for(task: Task, cells: list[Cell], variant: str, mode: str = "auto") -> CompletionRequest:
    parts = variant_parts(variant)
    return CompletionRequest(
        prefix=task.prefix,
        suffix=task.suffix,
        cells=tuple(cells[: task.cell]) if "above" in parts else (),
        cells_below=tuple(cells[task.cell + 1:]) if "below" in parts else (),
        # One KV cache per variant, as each notebook has its own in the server.
        path=f"{task.notebook}#{variant}",
        mode=mode,
    )


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


# --- kernel -----------------------------------------------------------------------------------


class NotebookKernel:
    """A real kernel that runs a notebook's cells in order and answers for its state."""

    def __init__(self, cell_timeout: float, cwd: Path):
        from jupyter_client.manager import start_new_kernel

        self.cell_timeout = cell_timeout
        # Notebooks read their data relative to their own folder. The kernel's own stderr (its
        # transport warning, IPython's completer tracebacks on blank lines) is not the user's.
        self.km, self.kc = start_new_kernel(kernel_name="python3", cwd=str(cwd),
                                            stderr=subprocess.DEVNULL)
        self.run("%matplotlib agg")

    def run(self, source: str) -> str | None:
        """Execute a cell; return an error line, or None."""
        try:
            reply = self.kc.execute_interactive(source, timeout=self.cell_timeout,
                                                output_hook=lambda msg: None)
        except TimeoutError:
            self.km.interrupt_kernel()
            self.kc.get_shell_msg(timeout=30)
            return f"timeout after {self.cell_timeout:.0f} s"
        content = reply["content"]
        return None if content["status"] == "ok" else f"{content.get('ename')}: {content.get('evalue')}"

    def variables(self):
        from ..kernel.inspector import KERNEL_EXPRESSION, format_variables, variables_from_reply

        reply = self.kc.execute_interactive("", silent=True, store_history=False,
                                            user_expressions={"codecomp": KERNEL_EXPRESSION},
                                            timeout=10, output_hook=lambda msg: None)
        found = variables_from_reply(reply["content"])
        return Variables(format_variables(found), len(found), "fresh")

    def complete(self, code: str) -> str:
        """The kernel's own top-1 completion (jedi), as the text it would insert."""
        msg_id = self.kc.complete(code, len(code))
        reply = self.kc.get_shell_msg(timeout=30)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = self.kc.get_shell_msg(timeout=30)
        content = reply["content"]
        matches = content.get("matches") or []
        if not matches:
            return ""
        typed = code[content["cursor_start"]:content["cursor_end"]]
        return matches[0][len(typed):] if matches[0].startswith(typed) else matches[0]

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


def kernel_baselines(nb_kernel: NotebookKernel, task: Task) -> list[Result]:
    """Tab's top-1 at the cursor; and, where the line goes on with a name, once the student has
    typed its first letter (at a token boundary Tab has nothing to filter by; the model is never
    given that letter)."""
    results = []
    lead = len(task.target) - len(task.target.lstrip()) + 1
    tries = [("kernel", "")]
    if starts_with_name(task):
        tries.append(("kernel+1char", task.target[:lead]))
    for variant, typed in tries:
        started = time.perf_counter()
        text = typed + nb_kernel.complete(task.prefix + typed)
        results.append(score(task, variant, text, (time.perf_counter() - started) * 1000))
    return results


# --- the run ----------------------------------------------------------------------------------


def collect_notebooks(paths: list[str]) -> list[Path]:
    found: list[Path] = []
    for name in paths:
        path = Path(name)
        found += sorted(path.rglob("*.ipynb")) if path.is_dir() else [path]
    return [p for p in found if ".ipynb_checkpoints" not in p.parts]


def evaluate(service, notebooks: list[Path], *, variants: list[str], kernel: bool, seed: int,
             per_notebook: int, cell_timeout: float, kinds: tuple[str, ...] = ("line", "mid"),
             mode: str = "auto", progress=None) -> dict:
    # Block tasks have a random stream of their own: asking for them leaves the others as they were.
    rng, block_rng = random.Random(seed), random.Random(seed)
    with_variables = [v for v in variants if "variables" in variant_parts(v)]
    if with_variables and not kernel:
        raise ValueError("the variables variants need a kernel")
    runs = {}
    for path in notebooks:
        cells = notebook_cells(path)
        # Filtered after the seeded draw: a run of one kind scores the same tasks as a full run.
        tasks = [t for t in make_tasks(path, cells, rng, per_notebook) if t.kind in kinds]
        if "block" in kinds:
            tasks = sorted(tasks + make_block_tasks(path, cells, block_rng, per_notebook),
                           key=_in_notebook_order)
        runs[path] = NotebookRun(cells, tasks)
    total = sum(len(r.tasks) for r in runs.values())
    bar = progress.add_task("evaluating", total=total) if progress else None
    results: list[Result] = []
    baseline: list[Result] = []
    for path, run in runs.items():
        nb_kernel = NotebookKernel(cell_timeout, path.parent) if kernel else None
        executed = 0
        try:
            for task in run.tasks:
                while nb_kernel and executed < task.cell:  # the state a student would have
                    cell = run.cells[executed]
                    if cell.cell_type == "code":
                        error = nb_kernel.run(cell.source)
                        if error:
                            run.errors[executed] = error
                    executed += 1
                # One silent kernel request per task, only when a variant shows the variables.
                variables = nb_kernel.variables() if with_variables else Variables()
                for variant in variants:
                    request = request_for(task, run.cells, variant, mode)
                    shown = variables if variant in with_variables else Variables()
                    started = time.perf_counter()
                    reply = service.complete(request, shown)
                    latency = (time.perf_counter() - started) * 1000
                    text = reply.completions[0].text if reply.completions else ""
                    results.append(replace(score(task, variant, text, latency),
                                           prompt_tokens=reply.context.prompt_tokens,
                                           cached_tokens=reply.context.cached_tokens))
                if nb_kernel:
                    baseline += kernel_baselines(nb_kernel, task)
                if progress:
                    progress.advance(bar)
        finally:
            if nb_kernel:
                nb_kernel.close()
    return {
        "model": service.name,
        "seed": seed,
        "mode": mode,
        "notebooks": [p.name for p in notebooks],
        "tasks": total,
        "cell_errors": {p.name: r.errors for p, r in runs.items() if r.errors},
        "summary": summarize(results + baseline),
        "results": [{**asdict(r.task), **{k: v for k, v in asdict(r).items() if k != "task"}}
                    for r in results + baseline],
    }


def summarize(results: list[Result]) -> list[dict]:
    rows = []
    groups: dict[tuple[str, str], list[Result]] = {}
    for r in results:
        groups.setdefault((r.variant, r.task.kind), []).append(r)
        groups.setdefault((r.variant, "all"), []).append(r)
        if starts_with_name(r.task):  # where `kernel+1char` competes
            groups.setdefault((r.variant, "name"), []).append(r)
    order = list(dict.fromkeys(r.variant for r in results))  # as asked, the baselines last
    for (variant, kind), rs in sorted(groups.items(), key=lambda kv: (order.index(kv[0][0]), kv[0][1])):
        rows.append({
            "variant": variant, "kind": kind, "n": len(rs),
            "exact_match": round(100 * sum(r.exact for r in rs) / len(rs), 1),
            "edit_similarity": round(100 * statistics.mean(r.similarity for r in rs), 1),
            "first_token": round(100 * sum(r.first_token for r in rs) / len(rs), 1),
            "latency_ms_p50": round(statistics.median(r.latency_ms for r in rs), 1),
            "reused_pct": round(100 * sum(r.cached_tokens for r in rs)
                                / max(1, sum(r.prompt_tokens for r in rs)), 1),
        })
    return rows


def write_outputs(report: dict, out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "results.json"
    json_path.write_text(json.dumps(report, indent=1))
    png_path = out / "results.png"
    try:
        import matplotlib
    except ImportError:
        raise CodecompError("the chart needs matplotlib",
                            fix="pip install 'jupyter-codecomp[eval]'") from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report["summary"] if r["kind"] != "all"]
    kinds = sorted({r["kind"] for r in rows})
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("exact_match", "first_token")):
        width = 0.8 / max(1, len(variants))
        for i, variant in enumerate(variants):
            values = [next((r[metric] for r in rows if r["variant"] == variant and r["kind"] == k), 0)
                      for k in kinds]
            ax.bar([k + i * width for k in range(len(kinds))], values, width, label=variant)
        ax.set_xticks([k + width * (len(variants) - 1) / 2 for k in range(len(kinds))], kinds)
        ax.set_title(metric.replace("_", " ") + " (%)")
    axes[0].legend()
    fig.suptitle(f"{report['model']}: {report['tasks']} tasks")
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return json_path, png_path
