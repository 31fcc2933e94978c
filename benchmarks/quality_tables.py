"""The tables and the chart of benchmarks/RESULTS.md's corpus section, from one eval run.

    python benchmarks/quality_tables.py OUT/results.json [OUT2/results.json] [--chart PNG]

The run's tasks are split in two: `tune` (the project's notebooks and pandas-exercises), on which
the prompt decisions, the confidence statistic and the default threshold are chosen, and
`confirm` (handson-ml3 chapters 13-16), on which nothing was chosen; `corpora` is both course
corpora (pandas-exercises and handson-ml3), without the project's notebooks. Every comparison is
paired (variant - baseline) with a bootstrap 95 % interval of the difference.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from jupyter_codecomp.completion.postprocess.confidence import STATISTICS
from jupyter_codecomp.tools.eval_stats import (
    coverage_precision,
    paired,
    split_of,
    statistic_of,
)
from jupyter_codecomp.tools.eval_tasks import Result, Task

# `corpora` is what issue 13's target is on: the course corpora without the project's notebooks.
SPLITS = {"tune": ("project", "pandas"), "confirm": ("handson",),
          "corpora": ("pandas", "handson"), "all": ("project", "pandas", "handson")}
PRECISION_FLOOR = 40.0  # the issue's targets: at least 2 in 5 suggestions shown are right,
COVERAGE_FLOOR = 30.0  # shown on at least 3 tasks in 10
# Coverage kept above the floor on the tune split: other notebooks (the held-out check) differ,
# and a threshold just over the floor there may fall under it elsewhere.
COVERAGE_MARGIN = 3.0


def load(paths: list[Path]) -> list[Result]:
    """The results of one run, or of its shards (`--shard K/N`); a task in two counts once."""
    fields = set(Task.__dataclass_fields__)
    results: dict[tuple, Result] = {}
    for path in paths:
        for row in json.loads(path.read_text())["results"]:
            task = Task(**{k: row[k] for k in fields})
            rest = {k: v for k, v in row.items() if k not in fields}
            rest["logprobs"] = tuple(rest.get("logprobs", ()))
            results.setdefault((task, rest["variant"]), Result(task, **rest))
    return list(results.values())


def in_split(results: list[Result], split: str) -> list[Result]:
    return [r for r in results if split_of(r.task.notebook) in SPLITS[split]]


def comparison_table(results: list[Result], variant: str, baseline: str) -> str:
    pair = f"{variant} / {baseline}"
    lines = [f"| split | kind | n | EM: {pair} | EM diff [95 % CI] | ES: {pair} "
             "| ES diff [95 % CI] | empty diff [95 % CI] | EM wins / losses |",
             "|---|---|---|---|---|---|---|---|---|"]
    for split in SPLITS:
        rows = paired(in_split(results, split), variant, baseline)
        for row in rows:
            if row["split"] != "all" or row["kind"] not in ("line", "mid", "block", "line+mid",
                                                            "all"):
                continue
            em, es, empty = row["exact_match"], row["edit_similarity"], row["empty"]
            lines.append(
                f"| {split} | {row['kind']} | {row['n']} | {em['variant']} / {em['baseline']} | "
                f"{em['diff']:+.1f} [{em['ci'][0]:+.1f}, {em['ci'][1]:+.1f}] | "
                f"{es['variant']} / {es['baseline']} | "
                f"{es['diff']:+.1f} [{es['ci'][0]:+.1f}, {es['ci'][1]:+.1f}] | "
                f"{empty['diff']:+.1f} [{empty['ci'][0]:+.1f}, {empty['ci'][1]:+.1f}] | "
                f"{row['wins']} / {row['losses']} |")
    return "\n".join(lines)


def _share(rs: list[Result], hit) -> str:
    return f"{100 * sum(map(hit, rs)) / max(1, len(rs)):.1f}"


def quality_table(results: list[Result]) -> str:
    lines = ["| variant | split | line tasks | empty on line tasks | scaffolding | a comment for a "
             "code line | EM line / mid / block | first token, all |",
             "|---|---|---|---|---|---|---|---|"]
    for variant in dict.fromkeys(r.variant for r in results):
        for split in SPLITS:
            rs = [r for r in in_split(results, split) if r.variant == variant]
            if not rs:
                continue
            line = [r for r in rs if r.task.kind == "line"]
            comments = sum(r.completion.lstrip().startswith("#") for r in line)
            em = " / ".join(_share([r for r in rs if r.task.kind == k], lambda r: r.exact)
                            for k in ("line", "mid", "block"))
            empty = sum(r.empty for r in line)
            lines.append(f"| {variant} | {split} | {len(line)} | {empty} "
                         f"({_share(line, lambda r: r.empty)} %) | "
                         f"{sum(r.scaffolding for r in rs)} | {comments} | {em} | "
                         f"{_share(rs, lambda r: r.first_token)} |")
    return "\n".join(lines)


def average_precision(results: list[Result], variant: str, statistic: str) -> float:
    rs = sorted((r for r in results if r.variant == variant and r.task.kind in ("line", "mid")
                 and not r.empty), key=lambda r: -statistic_of(r, statistic))
    hits, total = 0, 0.0
    for k, r in enumerate(rs, 1):
        if r.exact:
            hits += 1
            total += hits / k
    return 100 * total / max(1, hits)


def choose_threshold(curve: list[dict]) -> dict | None:
    """The most selective threshold that still meets the targets (coverage, with its margin, and
    precision floors): a student sees as few wrong suggestions as the coverage floor allows."""
    meets = [p for p in curve if p["coverage"] >= COVERAGE_FLOOR + COVERAGE_MARGIN
             and p["precision"] >= PRECISION_FLOOR]
    return meets[-1] if meets else None


def confidence_section(results: list[Result], variant: str, chart: Path | None) -> str:
    tune, confirm = in_split(results, "tune"), in_split(results, "confirm")
    aps = {name: average_precision(tune, variant, name) for name in STATISTICS}
    chosen = max(aps, key=aps.get)
    out = ["average precision of each statistic (tune split, line+mid, non-empty): "
           + ", ".join(f"{name} {ap:.1f}" for name, ap in aps.items()) + f"; chosen: {chosen}",
           "", "| threshold | tune: coverage / precision | confirm: coverage / precision | all |",
           "|---|---|---|---|"]
    curves = {split: coverage_precision(rs, variant, chosen)
              for split, rs in (("tune", tune), ("confirm", confirm), ("all", results))}
    for k, point in enumerate(curves["tune"]):
        cells = [f"{c[k]['coverage']} / {c[k]['precision']}" for c in curves.values()]
        out.append(f"| {point['threshold']:.2f} | " + " | ".join(cells) + " |")
    pick = choose_threshold(curves["tune"])
    if pick:
        k = curves["tune"].index(pick)
        right = [c[k]["shown"] * c[k]["precision"] / 100 for c in (curves["confirm"],)]
        all_right = sum(r.exact for r in confirm if r.variant == variant
                        and r.task.kind in ("line", "mid") and not r.empty)
        out.append(f"\nchosen threshold (tune split, the highest with coverage >= "
                   f"{COVERAGE_FLOOR + COVERAGE_MARGIN:.0f} % and precision >= "
                   f"{PRECISION_FLOOR:.0f} %): "
                   f"{pick['threshold']:.2f} (tune: "
                   f"coverage {pick['coverage']} %, precision {pick['precision']} %); on the "
                   f"confirm split: "
                   f"coverage {curves['confirm'][k]['coverage']} %, precision "
                   f"{curves['confirm'][k]['precision']} %, right suggestions kept "
                   f"{right[0]:.0f} of {all_right}; all: coverage {curves['all'][k]['coverage']} "
                   f"%, precision {curves['all'][k]['precision']} %")
    if chart:
        draw(curves, chosen, pick["threshold"] if pick else None, chart)
    return "\n".join(out)


def draw(curves: dict, statistic: str, threshold: float | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for split, curve in curves.items():
        xs = [p["threshold"] for p in curve]
        line, = ax.plot(xs, [p["precision"] for p in curve], label=f"precision, {split}")
        ax.plot(xs, [p["coverage"] for p in curve], "--", color=line.get_color(),
                label=f"coverage, {split}")
    if threshold is not None:
        ax.axvline(threshold, color="black", linewidth=0.8)
        ax.text(threshold, 3, f" default {threshold:.2f}", fontsize=8)
    ax.axhline(PRECISION_FLOOR, color="grey", linewidth=0.5)
    ax.set_xlabel(f"minConfidence (confidence = {statistic} token probability)")
    ax.set_ylabel("% of line and mid-line tasks")
    ax.set_ylim(0, 100)
    ax.set_title("Coverage (shown) and precision (exact among shown), qwen2.5-coder-0.5b")
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, nargs="+")
    parser.add_argument("--chart", type=Path)
    parser.add_argument("--variant", default="product")
    parser.add_argument("--baseline", default="naive")
    args = parser.parse_args()
    results = load(args.results)
    print(comparison_table(results, args.variant, args.baseline), end="\n\n")
    print(quality_table(results), end="\n\n")
    print(confidence_section(results, args.variant, args.chart))


if __name__ == "__main__":
    main()
