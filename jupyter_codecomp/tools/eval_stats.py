"""The evaluation's statistics: tables per variant, paired comparisons with bootstrap confidence
intervals, and coverage/precision of the confidence threshold.

Every comparison is paired: the same tasks under two variants, the difference per task, and a
seeded bootstrap over tasks for its 95 % interval. A difference whose interval holds zero is no
decision.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Callable, Iterable

from ..completion.postprocess.confidence import STATISTICS
from .eval_tasks import Result, starts_with_name

BOOTSTRAP_SAMPLES = 2000
THRESHOLDS = tuple(round(0.05 * k, 2) for k in range(20))
METRICS: dict[str, Callable[[Result], float]] = {
    "exact_match": lambda r: 100.0 * r.exact,
    "edit_similarity": lambda r: 100.0 * r.similarity,
    "first_token": lambda r: 100.0 * r.first_token,
    "empty": lambda r: 100.0 * r.empty,
}


def split_of(notebook: str) -> str:
    """The corpus a notebook belongs to: the eval split's two corpora, or the project's own."""
    if "handson-ml3" in notebook:
        return "handson"
    if "pandas-exercises" in notebook:
        return "pandas"
    return "project"


def _groups(r: Result) -> Iterable[str]:
    yield r.task.kind
    yield "all"
    if r.task.kind in ("line", "mid"):
        yield "line+mid"
    if starts_with_name(r.task):  # where `kernel+1char` competes
        yield "name"


def summarize(results: list[Result]) -> list[dict]:
    groups: dict[tuple[str, str], list[Result]] = {}
    for r in results:
        for kind in _groups(r):
            groups.setdefault((r.variant, kind), []).append(r)
    order = list(dict.fromkeys(r.variant for r in results))  # as asked, the baselines last
    rows = []
    for (variant, kind), rs in sorted(groups.items(),
                                      key=lambda kv: (order.index(kv[0][0]), kv[0][1])):
        rows.append({
            "variant": variant, "kind": kind, "n": len(rs),
            **{name: round(statistics.mean(f(r) for r in rs), 1) for name, f in METRICS.items()},
            "scaffolding": sum(r.scaffolding for r in rs),
            "latency_ms_p50": round(statistics.median(r.latency_ms for r in rs), 1),
            "reused_pct": round(100 * sum(r.cached_tokens for r in rs)
                                / max(1, sum(r.prompt_tokens for r in rs)), 1),
        })
    return rows


def bootstrap_ci(differences: list[float], seed: int = 0) -> tuple[float, float]:
    """The 95 % percentile interval of the mean of `differences`, resampled over tasks."""
    import numpy as np

    values = np.asarray(differences, dtype=float)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (BOOTSTRAP_SAMPLES, len(values)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def bootstrap_median_ci(values: list[float], seed: int = 0) -> tuple[float, float]:
    """The 95 % percentile interval of the median of `values`, resampled: for latencies and
    speed ratios (the benchmarks), where a few slow outliers would drag a mean."""
    rng = random.Random(seed)
    draws = sorted(statistics.median(rng.choices(values, k=len(values)))
                   for _ in range(BOOTSTRAP_SAMPLES))
    return draws[BOOTSTRAP_SAMPLES // 40], draws[BOOTSTRAP_SAMPLES * 39 // 40 - 1]


def _key(r: Result) -> tuple:
    return r.task.notebook, r.task.cell, r.task.kind, r.task.prefix


def paired(results: list[Result], variant: str, baseline: str,
           metrics: tuple[str, ...] = ("exact_match", "edit_similarity", "empty"),
           seed: int = 0) -> list[dict]:
    """`variant` minus `baseline` on the tasks both ran, per split and kind, with the CI."""
    base = {_key(r): r for r in results if r.variant == baseline}
    pairs: dict[tuple[str, str], list[tuple[Result, Result]]] = {}
    for r in results:
        if r.variant == variant and _key(r) in base:
            for split in (split_of(r.task.notebook), "all"):
                for kind in _groups(r):
                    if kind != "name":
                        pairs.setdefault((split, kind), []).append((r, base[_key(r)]))
    rows = []
    for (split, kind), rs in sorted(pairs.items()):
        row: dict = {"variant": variant, "baseline": baseline, "split": split, "kind": kind,
                     "n": len(rs)}
        for name in metrics:
            f = METRICS[name]
            diffs = [f(a) - f(b) for a, b in rs]
            low, high = bootstrap_ci(diffs, seed)
            row[name] = {"variant": round(statistics.mean(f(a) for a, _ in rs), 1),
                         "baseline": round(statistics.mean(f(b) for _, b in rs), 1),
                         "diff": round(statistics.mean(diffs), 1),
                         "ci": [round(low, 1), round(high, 1)]}
        row["wins"] = sum(a.exact and not b.exact for a, b in rs)
        row["losses"] = sum(b.exact and not a.exact for a, b in rs)
        rows.append(row)
    return rows


def statistic_of(r: Result, name: str) -> float:
    return math.exp(STATISTICS[name](r.logprobs)) if r.logprobs else 0.0


def coverage_precision(results: list[Result], variant: str, statistic: str,
                       kinds: tuple[str, ...] = ("line", "mid")) -> list[dict]:
    """At each threshold: the share of tasks whose suggestion would be shown (confidence at or
    above it, and not empty) and exact match among those shown."""
    rs = [r for r in results if r.variant == variant and r.task.kind in kinds]
    rows = []
    for threshold in THRESHOLDS:
        shown = [r for r in rs if not r.empty and statistic_of(r, statistic) >= threshold]
        rows.append({
            "threshold": threshold,
            "coverage": round(100 * len(shown) / max(1, len(rs)), 1),
            "precision": round(100 * sum(r.exact for r in shown) / max(1, len(shown)), 1),
            "shown": len(shown),
        })
    return rows


def confidence_report(results: list[Result], variant: str) -> dict:
    """Every statistic's curve for `variant`, and its average precision over the shown tasks
    ranked by it (the one summary figure used to choose the statistic)."""
    report = {}
    rs = [r for r in results if r.variant == variant and r.task.kind in ("line", "mid")
          and not r.empty]
    for name in STATISTICS:
        ranked = sorted(rs, key=lambda r: -statistic_of(r, name))
        hits, precisions = 0, []
        for k, r in enumerate(ranked, 1):
            if r.exact:
                hits += 1
                precisions.append(hits / k)
        report[name] = {"average_precision": round(100 * statistics.mean(precisions), 1)
                        if precisions else 0.0,
                        "curve": coverage_precision(results, variant, name)}
    return report
