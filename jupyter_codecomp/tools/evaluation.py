"""`jupyter codecomp eval`: completion quality on notebooks, through the product's own pipeline.

Notebooks become tasks (`eval_tasks`: whole-line, mid-line and block, seeded). Each task runs
through `CompletionService.complete` under variants, in notebook order (so each variant's KV cache
is reused as a student's would be). A variant is a context and, after `/`, options:

    product    what the editor sends (cells above and below, and the variables with --kernel),
               the product's prompt layout and post-processing rules
    naive      the baseline every figure is read against: the cells above as plain code in FIM,
               a 1500-token budget, token healing, nothing else (`prompt.NAIVE`, `NAIVE_RULES`)
    cell       the current cell only; or the parts added to it joined with `+`: above, below,
               variables (needs --kernel), e.g. `above+variables`

and options `/field=value` of `prompt.PromptLayout` (`product/budget_above=1500`,
`product/markdown=drop`, `product/variables=top`) or `/rules=naive`. Every variant is compared
with the baseline (`naive`) and with `product`, paired on the same tasks, with a bootstrap 95 %
interval of the difference (`eval_stats`). With --kernel the notebook's cells are executed in
order in a real kernel: a task sees the state after the cells before it; cell errors are
recorded; the kernel's own completion (Tab's top-1) is scored as a baseline too.
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ..completion.context import Variables
from ..completion.postprocess import NAIVE_RULES, PRODUCT_RULES, resolve_mode
from ..completion.postprocess.confidence import CHOSEN
from ..completion.postprocess.rules import Rules
from ..completion.prompt import NAIVE, PromptLayout
from ..completion.protocol import Cell, CompletionRequest
from .eval_stats import confidence_report, paired, summarize
from .eval_tasks import (  # noqa: F401
    KINDS,
    Result,
    Task,
    collect_notebooks,
    in_notebook_order,
    make_block_tasks,
    make_tasks,
    notebook_cells,
    notebook_counts,
    score,
    starts_with_name,
)

CONTEXT_PARTS = ("above", "below", "variables")
# A block costs up to 160 generated tokens against a line's 48: a notebook gets a third as many
# block tasks as line and mid-line ones (the CPU of the standard run is what bounds it).
BLOCK_SHARE = 3
CHECKPOINT_TASKS = 10  # results.json is rewritten every 10 tasks: a run stopped early keeps them
BASELINE = "naive"
PRODUCT = "product"


@dataclass(frozen=True)
class Variant:
    name: str
    parts: frozenset[str]
    layout: PromptLayout
    rules: Rules
    mode: str | None = None  # the request's mode, when the variant sets it


def variant_parts(variant: str) -> set[str]:
    """The context parts a variant adds to the current cell; ValueError names a bad one."""
    parts = set() if variant == "cell" else set(variant.split("+"))
    unknown = parts - set(CONTEXT_PARTS)
    if unknown or not (parts or variant == "cell"):
        raise ValueError(sorted(unknown)[0] if unknown else variant)
    return parts


def parse_variant(name: str, layout: PromptLayout = PromptLayout(),
                  kernel: bool = False) -> Variant:
    """`context[/option=value...]`; ValueError names the bad part or option."""
    base, *options = name.split("/")
    rules = PRODUCT_RULES
    if base == BASELINE:
        parts, layout, rules = {"above"}, NAIVE, NAIVE_RULES
    elif base == PRODUCT:
        parts = {"above", "below"} | ({"variables"} if kernel else set())
    else:
        parts = variant_parts(base)
    values = dict(option.partition("=")[::2] for option in options)
    mode = values.pop("mode", None)
    if mode not in (None, "auto", "line", "block"):
        raise ValueError(f"mode={mode}")
    if "rules" in values:
        chosen = values.pop("rules")
        if chosen not in ("naive", "product"):
            raise ValueError(f"rules={chosen}")
        rules = NAIVE_RULES if chosen == "naive" else PRODUCT_RULES
    try:
        layout = layout.with_options(values)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{exc.args[0] if exc.args else exc}") from None
    return Variant(name, frozenset(parts), layout, rules, mode)


def request_for(task: Task, cells: list[Cell], variant: str | Variant,
                mode: str = "auto") -> CompletionRequest:
    parts = variant.parts if isinstance(variant, Variant) else variant_parts(variant)
    name = variant.name if isinstance(variant, Variant) else variant
    return CompletionRequest(
        prefix=task.prefix,
        suffix=task.suffix,
        cells=tuple(cells[: task.cell]) if "above" in parts else (),
        cells_below=tuple(cells[task.cell + 1:]) if "below" in parts else (),
        # One KV cache per variant, as each notebook has its own in the server.
        path=f"{task.notebook}#{name}",
        mode=variant.mode or mode if isinstance(variant, Variant) else mode,
    )


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
        if content["status"] == "ok":
            return None
        return f"{content.get('ename')}: {content.get('evalue')}"

    def variables(self) -> Variables:
        from ..kernel.variables import KERNEL_EXPRESSION, format_variables, variables_from_reply

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


@dataclass
class NotebookRun:
    cells: list[Cell]
    tasks: list[Task]
    errors: dict[int, str] = field(default_factory=dict)


def draw_tasks(notebooks: list[Path] | dict[Path, int], seed: int, per_notebook: int,
               kinds: tuple[str, ...]) -> dict[Path, NotebookRun]:
    """Each notebook's tasks; `notebooks` may map each to its own count."""
    # Block tasks have a random stream of their own: asking for them leaves the others as they were.
    import random

    rng, block_rng = random.Random(seed), random.Random(seed)
    runs = {}
    counts = notebooks if isinstance(notebooks, dict) else dict.fromkeys(notebooks, per_notebook)
    for path, count in counts.items():
        cells = notebook_cells(path)
        # Filtered after the seeded draw: a run of one kind scores the same tasks as a full run.
        tasks = [t for t in make_tasks(path, cells, rng, count) if t.kind in kinds]
        if "block" in kinds:
            blocks = make_block_tasks(path, cells, block_rng, max(1, count // BLOCK_SHARE))
            tasks = sorted(tasks + blocks,
                           key=in_notebook_order)
        runs[path] = NotebookRun(cells, tasks)
    return runs


def shard_of(runs: dict[Path, NotebookRun], shard: tuple[int, int]) -> dict[Path, NotebookRun]:
    """Part `k` (from 1) of `n`: whole notebooks (each keeps its KV cache), balanced by task
    count, so that n processes run a long evaluation side by side; their results merge."""
    k, n = shard
    loads = [0] * n
    mine = set()
    for path, run in sorted(runs.items(), key=lambda item: -len(item[1].tasks)):
        part = loads.index(min(loads))
        loads[part] += len(run.tasks)
        if part == k - 1:
            mine.add(path)
    return {path: run for path, run in runs.items() if path in mine}


def run_task(service, variant: Variant, task: Task, cells: list[Cell], variables: Variables,
             mode: str, memo: dict) -> Result:
    """One task under one variant. A variant whose prompt, rules and mode are another's on this
    task (the cells-below rule mid-line, say) gets that one's reply: the engine is deterministic."""
    request = request_for(task, cells, variant, mode)
    shown = variables if "variables" in variant.parts else Variables()
    prompt = service.prompt(request, shown)
    key = (tuple(prompt.ids), prompt.heal, id(variant.rules),
           resolve_mode(request.prefix, request.suffix, request.mode))
    if key in memo:
        reply, trace = memo[key]
    else:
        trace: list[dict] = []
        reply = service.complete(request, shown, trace=trace)
        memo[key] = reply, trace
    latency = reply.timings_ms.total  # a memo's reply keeps the latency it was served with
    best = reply.completions[0] if reply.completions else None
    return replace(score(task, variant.name, best.text if best else "", latency),
                   prompt_tokens=reply.context.prompt_tokens,
                   cached_tokens=reply.context.cached_tokens,
                   confidence=best.confidence if best else 0.0,
                   logprobs=tuple(round(x, 4) for x in trace[0]["logprobs"]) if trace else (),
                   raw=trace[0]["raw"] if trace else "",
                   first_emptied_by=trace[0]["first_emptied_by"] if trace else "")


def evaluate(service, notebooks: list[Path] | dict[Path, int], *, variants: list[str],
             kernel: bool, seed: int, per_notebook: int, cell_timeout: float,
             kinds: tuple[str, ...] = ("line", "mid"), mode: str = "auto",
             progress=None, checkpoint=None, shard: tuple[int, int] = (1, 1)) -> dict:
    """The report of the run; `checkpoint`, if given, receives the report so far every
    `CHECKPOINT_TASKS` tasks (a long run stopped early still leaves its figures). `shard` (k, n)
    runs the k-th of n parts of the tasks (`shard_of`; the parts' results.json merge in
    `benchmarks/quality_tables.py`)."""
    started = time.perf_counter()
    parsed = [parse_variant(v, service.layout, kernel) for v in variants]
    if any("variables" in v.parts for v in parsed) and not kernel:
        raise ValueError("the variables variants need a kernel")
    services = {v.name: service.variant(v.layout, v.rules) for v in parsed}
    runs = shard_of(draw_tasks(notebooks, seed, per_notebook, kinds), shard)
    total = sum(len(r.tasks) for r in runs.values())
    bar = progress.add_task("evaluating", total=total) if progress else None
    results: list[Result] = []
    baseline: list[Result] = []
    finished: dict[Path, NotebookRun] = {}
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
                needs = nb_kernel and any("variables" in v.parts for v in parsed)
                variables = nb_kernel.variables() if needs else Variables()
                memo: dict = {}
                for variant in parsed:
                    results.append(run_task(services[variant.name], variant, task, run.cells,
                                            variables, mode, memo))
                if nb_kernel:
                    baseline += kernel_baselines(nb_kernel, task)
                if progress:
                    progress.advance(bar)
                finished[path] = run
                if checkpoint and len(results) % (CHECKPOINT_TASKS * len(parsed)) == 0:
                    checkpoint(report_of(service, list(finished), finished, parsed, results,
                                         baseline, seed=seed, mode=mode,
                                         seconds=time.perf_counter() - started))
            if progress and not progress.console.is_terminal:  # a log file: one line a notebook
                progress.console.print(f"{path}: {len(run.tasks)} tasks, "
                                       f"{time.perf_counter() - started:.0f} s so far")
        finally:
            if nb_kernel:
                nb_kernel.close()
    return report_of(service, notebooks, runs, parsed, results, baseline, seed=seed, mode=mode,
                     seconds=time.perf_counter() - started)


def report_of(service, notebooks, runs, parsed, results, baseline, *, seed, mode,
              seconds) -> dict:
    names = [v.name for v in parsed]
    comparisons = []
    for reference in (BASELINE, PRODUCT):
        if reference in names:
            comparisons += [row for name in names if name not in (BASELINE, reference)
                            for row in paired(results, name, reference, seed=seed)]
    focus = PRODUCT if PRODUCT in names else names[0]
    return {
        "model": service.name,
        "seed": seed,
        "mode": mode,
        "seconds": round(seconds, 1),
        "variants": {v.name: {"parts": sorted(v.parts), "layout": asdict(v.layout),
                              "rules": "naive" if v.rules is NAIVE_RULES else "product"}
                     for v in parsed},
        "notebooks": [str(p) for p in notebooks],
        "tasks": len(results) // max(1, len(parsed)),  # run so far (a checkpoint: fewer)
        "cell_errors": {str(p): r.errors for p, r in runs.items() if r.errors},
        "summary": summarize(results + baseline),
        "comparisons": comparisons,
        # Why a first alternative was cut to nothing (the product then takes the next one).
        "emptied_by": {name: dict(Counter(r.first_emptied_by for r in results
                                          if r.variant == name and r.first_emptied_by))
                       for name in names},
        "confidence_variant": focus,
        "confidence_statistic": CHOSEN,
        "min_confidence": service.settings.min_confidence,
        "confidence": confidence_report(results, focus),
        "results": [{**asdict(r.task), **{k: v for k, v in asdict(r).items() if k != "task"}}
                    for r in results + baseline],
    }
