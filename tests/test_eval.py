"""`jupyter codecomp eval` end to end: a notebook executed in a real kernel, the test model."""

import json
import os
import random
import statistics
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from jupyter_codecomp.completion.prompt import NAIVE
from jupyter_codecomp.tools.eval_stats import (
    bootstrap_ci,
    bootstrap_median_ci,
    coverage_precision,
    paired,
    summarize,
)
from jupyter_codecomp.tools.eval_tasks import (
    Result,
    Task,
    edit_similarity,
    make_block_tasks,
    make_tasks,
    notebook_cells,
    notebook_counts,
    score,
)
from jupyter_codecomp.tools.evaluation import parse_variant, request_for, variant_parts

REPO = Path(__file__).resolve().parents[1]


def write_notebook(path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Grades\nWe look at the grades of a class."),
        nbformat.v4.new_code_cell("import pandas as pd"),
        nbformat.v4.new_code_cell(
            "grades = pd.DataFrame({'student': ['ann', 'bob'], 'score': [81.0, 67.5]})"),
        nbformat.v4.new_code_cell("oops = grades['Score']  # fails on purpose"),
        nbformat.v4.new_code_cell(
            "best = grades.sort_values('score', ascending=False)\nprint(best.head(1))"),
        nbformat.v4.new_code_cell("def passed(score):\n    return score >= 70\n\n"
                                  "grades['passed'] = grades['score'].apply(passed)"),
    ]
    nbformat.write(nb, path)
    return path


def test_tasks_are_deterministic_and_targets_are_line_rests(tmp_path):
    path = write_notebook(tmp_path / "grades.ipynb")
    cells = notebook_cells(path)
    first = make_tasks(path, cells, random.Random(3), 50)
    assert first == make_tasks(path, cells, random.Random(3), 50)
    assert {t.kind for t in first} == {"line", "mid"}
    for task in first:
        line = cells[task.cell].source.split("\n")[task.prefix.count("\n")]
        assert line.strip().endswith(task.target.strip())
        assert (task.prefix.rsplit("\n", 1)[-1] + task.target).strip() == line.strip()


def test_block_tasks_take_the_rest_of_the_block(tmp_path):
    path = write_notebook(tmp_path / "grades.ipynb")
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(
        "for name in grades['student']:\n    if name:\n        print(name)\n\n    print('-')\n"
        "print('end')"))
    nbformat.write(nb, path)
    tasks = make_block_tasks(path, notebook_cells(path), random.Random(0), 10)
    assert {(t.prefix.rsplit("\n", 2)[-2], t.target) for t in tasks} == {
        ("def passed(score):", "return score >= 70"),
        ("for name in grades['student']:", "if name:\n        print(name)\n\n    print('-')"),
        ("    if name:", "print(name)"),
    }
    block = next(t for t in tasks if t.target.startswith("if name"))
    assert block.prefix.endswith(":\n    ") and block.suffix == "\nprint('end')"
    # A block is scored whole: its first line alone is not an exact match.
    assert score(block, "cell", "if name:\n        print(name)\n\n    print('-')  \n", 1).exact
    assert not score(block, "cell", "if name:", 1).exact


def test_a_variant_is_the_context_it_adds_to_the_cell(tmp_path):
    path = write_notebook(tmp_path / "grades.ipynb")
    cells = notebook_cells(path)
    task = next(t for t in make_tasks(path, cells, random.Random(0), 50) if t.cell == 4)
    context = {variant: request_for(task, cells, variant)
               for variant in ("cell", "above", "above+variables", "above+below+variables")}
    assert [(len(r.cells), len(r.cells_below)) for r in context.values()] == [
        (0, 0), (4, 0), (4, 0), (4, 1)]
    assert variant_parts("below+above") == {"above", "below"}
    for bad in ("cells", "above+", "cell+above"):
        with pytest.raises(ValueError):
            variant_parts(bad)


def test_edit_similarity():
    assert edit_similarity("abc", "abc") == 1.0
    assert edit_similarity("", "") == 1.0
    assert edit_similarity("abcd", "abcx") == 0.75


def test_eval_cli_with_kernel(tmp_path, test_model):
    write_notebook(tmp_path / "grades.ipynb")
    out = tmp_path / "out"
    variants = "cell,above,above+below,above+variables,above+below+variables,product,naive"
    result = run_eval(str(tmp_path), "--kernel", "--model", str(test_model.path),
                      "--out", str(out), "--tasks-per-notebook", "6", "--kinds", "line,mid",
                      "--variants", variants)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((out / "results.json").read_text())
    assert (out / "results.png").stat().st_size > 1000
    variants = {row["variant"] for row in report["summary"]}
    assert variants == {"cell", "above", "above+below", "above+variables", "above+below+variables",
                        "product", "naive", "kernel", "kernel+1char"}
    assert report["variants"]["product"]["parts"] == ["above", "below", "variables"]
    # Every variant against the naive baseline and the product, paired, with an interval.
    compared = {(row["variant"], row["baseline"]) for row in report["comparisons"]}
    assert ("product", "naive") in compared and ("above", "product") in compared
    row = next(r for r in report["comparisons"] if r["variant"] == "product"
               and r["split"] == "all" and r["kind"] == "all")
    low, high = row["exact_match"]["ci"]
    assert row["n"] == 6 and low <= row["exact_match"]["diff"] <= high
    assert set(report["confidence"]) == {"mean", "min", "first", "joint"}
    assert (out / "confidence.png").stat().st_size > 1000
    assert all(0.0 <= r["confidence"] <= 1.0 for r in report["results"])
    assert report["tasks"] == 6
    # Tasks of one notebook share their cells above: each variant keeps its own KV cache (with
    # fewer slots than variants they evicted each other: 8 to 13 %), reused and reported.
    assert all(row["reused_pct"] >= 50 for row in report["summary"]
               if row["variant"].startswith("above") and row["kind"] == "all")
    assert "KeyError" in json.dumps(report["cell_errors"])  # recorded, not fatal
    assert "EM %" in result.stdout and "above+variables" in result.stdout
    assert "paired differences" in result.stdout and "the run took" in result.stderr


def run_eval(*args):
    return subprocess.run([sys.executable, "-m", "jupyter_codecomp", "eval", *args],
                          capture_output=True, text=True, cwd=REPO, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def test_eval_of_one_kind_scores_the_same_tasks_as_a_full_run(tmp_path, test_model):
    path = write_notebook(tmp_path / "grades.ipynb")
    full = make_tasks(path, notebook_cells(path), random.Random(0), 6)
    out = tmp_path / "out"
    result = run_eval(str(path), "--model", str(test_model.path), "--out", str(out),
                      "--tasks-per-notebook", "6", "--variants", "cell", "--kinds", "line")
    assert result.returncode == 0, result.stderr[-2000:]
    scored = [(r["cell"], r["prefix"], r["target"])
              for r in json.loads((out / "results.json").read_text())["results"]]
    assert scored and scored == [(t.cell, t.prefix, t.target) for t in full if t.kind == "line"]
    assert len(scored) < len(full)  # the mid tasks were drawn, then left out

    blocks = run_eval(str(path), "--model", str(test_model.path), "--out", str(out),
                      "--variants", "cell", "--kinds", "block", "--mode", "line")
    assert blocks.returncode == 0, blocks.stderr[-2000:]
    report = json.loads((out / "results.json").read_text())
    assert report["mode"] == "line" and {r["kind"] for r in report["results"]} == {"block"}

    wrong = run_eval(str(path), "--model", str(test_model.path), "--kinds", "lines")
    assert wrong.returncode != 0
    assert "unknown kind 'lines'" in wrong.stderr and "Traceback" not in wrong.stderr
    wrong = run_eval(str(path), "--model", str(test_model.path), "--variants", "cell,above+cells")
    assert wrong.returncode != 0
    assert "unknown variant part 'cells' in 'above+cells'" in wrong.stderr
    wrong = run_eval(str(path), "--model", str(test_model.path), "--shard", "3/2")
    assert wrong.returncode != 0
    assert "--shard '3/2' is not K/N" in wrong.stderr and "Traceback" not in wrong.stderr


def _result(kind, variant, exact, notebook="nb.ipynb", cell=0, logprob=-0.1, text="x"):
    task = Task(notebook, cell, kind, f"p{cell}", "", "x")
    return Result(task, variant, text, exact, float(exact), exact, 1.0, logprobs=(logprob,))


def test_the_median_interval_of_the_benchmarks():
    # Latencies with two slow outliers: the interval stays around the median, not the mean.
    values = [100.0 + k for k in range(30)] + [5000.0, 9000.0]
    low, high = bootstrap_median_ci(values)
    assert 100 <= low <= statistics.median(values) <= high <= 135
    assert bootstrap_median_ci(values) == (low, high)  # seeded


def test_paired_differences_and_their_interval():
    results = []
    for cell in range(40):  # the variant right on 30 tasks, the baseline on 10 of the same
        results.append(_result("line", "product", cell < 30, cell=cell))
        results.append(_result("line", "naive", cell < 10, cell=cell))
    row = next(r for r in paired(results, "product", "naive") if r["kind"] == "all")
    assert row["n"] == 40 and row["wins"] == 20 and row["losses"] == 0
    assert row["exact_match"]["diff"] == 50.0
    low, high = row["exact_match"]["ci"]
    assert 30 < low < 50 < high < 70
    assert bootstrap_ci([1.0, 0.0] * 20, seed=3) == bootstrap_ci([1.0, 0.0] * 20, seed=3)
    assert bootstrap_ci([2.0] * 10) == (2.0, 2.0)
    rows = summarize(results)
    naive_line = next(r for r in rows if r["variant"] == "naive" and r["kind"] == "line")
    assert naive_line["exact_match"] == 25.0


def test_coverage_and_precision_by_threshold():
    # Confident and right, unsure and wrong, one empty suggestion (never shown).
    results = [_result("line", "product", True, cell=c, logprob=-0.05) for c in range(3)]
    results += [_result("mid", "product", False, cell=c + 3, logprob=-2.0) for c in range(3)]
    results.append(_result("line", "product", False, cell=9, logprob=-0.01, text=""))
    curve = {p["threshold"]: p for p in coverage_precision(results, "product", "mean")}
    assert curve[0.0]["coverage"] == round(100 * 6 / 7, 1) and curve[0.0]["precision"] == 50.0
    assert curve[0.5]["shown"] == 3 and curve[0.5]["precision"] == 100.0
    assert curve[0.95]["shown"] == 3  # exp(-0.05) = 0.951


def test_variants_parse_to_a_context_a_layout_and_rules():
    naive = parse_variant("naive")
    assert naive.parts == {"above"} and naive.layout == NAIVE
    assert parse_variant("product").parts == {"above", "below"}
    assert parse_variant("product", kernel=True).parts == {"above", "below", "variables"}
    budget = parse_variant("product/budget_above=1500/mode=line")
    assert budget.layout.budget_above == 1500 and budget.mode == "line"
    for bad in ("product/budget=2", "product/markdown=html", "product/mode=word",
                "product/rules=other", "above+cells"):
        with pytest.raises(ValueError):
            parse_variant(bad)


def test_a_path_may_set_its_own_task_count(tmp_path):
    (tmp_path / "a").mkdir()
    first = write_notebook(tmp_path / "a" / "one.ipynb")
    second = write_notebook(tmp_path / "two.ipynb")
    counts = notebook_counts([f"{tmp_path / 'a'}:7", str(second)], 3)
    assert counts == {first: 7, second: 3}


def test_shards_split_a_run_into_disjoint_whole_notebooks(tmp_path):
    """N processes side by side score exactly the run's tasks (FakeEngine: no model)."""
    from jupyter_codecomp.completion.fake_engine import FIM_TOKENS, FakeEngine
    from jupyter_codecomp.completion.service import CompletionService
    from jupyter_codecomp.models.recipes import PromptFormat
    from jupyter_codecomp.tools.evaluation import evaluate

    fmt = PromptFormat(fim=True, fim_prefix=FIM_TOKENS[0], fim_suffix=FIM_TOKENS[1],
                       fim_middle=FIM_TOKENS[2], stop_tokens=("<|endoftext|>",))
    service = CompletionService(FakeEngine(lambda prompt: "score >= 70\n"), fmt, "fake")
    (tmp_path / "b").mkdir()
    for path in (tmp_path / "a.ipynb", tmp_path / "b" / "c.ipynb", tmp_path / "b" / "d.ipynb"):
        write_notebook(path)
    counts = notebook_counts([str(tmp_path / "a.ipynb"), str(tmp_path / "b")], 4)

    def keys(shard):
        run = evaluate(service, counts, variants=["product", "naive"], kernel=False, seed=0,
                       per_notebook=4, cell_timeout=10, shard=shard)
        return [(r["notebook"], r["cell"], r["prefix"], r["variant"]) for r in run["results"]]
    whole, first, second = keys((1, 1)), keys((1, 2)), keys((2, 2))
    assert first and second and not set(first) & set(second)
    assert sorted(first + second) == sorted(whole)
    assert {k[0] for k in first}.isdisjoint({k[0] for k in second})  # whole notebooks
