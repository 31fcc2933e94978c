"""`jupyter codecomp eval` end to end: a notebook executed in a real kernel, the test model."""

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import nbformat

import pytest

from jupyter_codecomp.tools.evaluation import (edit_similarity, make_block_tasks, make_tasks,
                                         notebook_cells, request_for, score, variant_parts)

REPO = Path(__file__).resolve().parents[1]


def write_notebook(path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Grades\nWe look at the grades of a class."),
        nbformat.v4.new_code_cell("import pandas as pd"),
        nbformat.v4.new_code_cell("grades = pd.DataFrame({'student': ['ann', 'bob'], 'score': [81.0, 67.5]})"),
        nbformat.v4.new_code_cell("oops = grades['Score']  # fails on purpose"),
        nbformat.v4.new_code_cell("best = grades.sort_values('score', ascending=False)\nprint(best.head(1))"),
        nbformat.v4.new_code_cell("def passed(score):\n    return score >= 70\n\ngrades['passed'] = grades['score'].apply(passed)"),
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
        "for name in grades['student']:\n    if name:\n        print(name)\n\n    print('-')\nprint('end')"))
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
    result = run_eval(str(tmp_path), "--kernel", "--model", str(test_model.path),
                      "--out", str(out), "--tasks-per-notebook", "6")
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((out / "results.json").read_text())
    assert (out / "results.png").stat().st_size > 1000
    variants = {row["variant"] for row in report["summary"]}
    assert variants == {"cell", "above", "above+below", "above+variables", "above+below+variables",
                        "kernel", "kernel+1char"}
    assert report["tasks"] == 6
    # Tasks of one notebook share their cells above: each variant keeps its own KV cache (with
    # fewer slots than variants they evicted each other: 8 to 13 %), reused and reported.
    assert all(row["reused_pct"] >= 50 for row in report["summary"]
               if row["variant"].startswith("above") and row["kind"] == "all")
    assert "KeyError" in json.dumps(report["cell_errors"])  # recorded, not fatal
    assert "EM %" in result.stdout and "above+variables" in result.stdout


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
