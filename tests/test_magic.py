"""`%complete` on a real InteractiveShell and on a real ipykernel, with the SmolLM2 test model.

The magic reads the server's configuration files: the tests point JUPYTER_CONFIG_DIR at a folder
whose jupyter_server_config.json names the test model, as a user would.
"""

import json
import os
import sys
import time
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory, test_model):
    folder = tmp_path_factory.mktemp("jupyter-config")
    (folder / "jupyter_server_config.json").write_text(json.dumps(
        {"CodecompConfig": {"model": str(test_model.path), "device": "cpu", "threads": 2}}))
    return folder


@pytest.fixture(scope="module")
def shell(config_dir):
    os.environ["JUPYTER_CONFIG_DIR"] = str(config_dir)
    import jupyter_codecomp.kernel.magic as magic

    magic._loader = None  # read the configuration above
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "jupyter_codecomp")
    yield ip
    os.environ.pop("JUPYTER_CONFIG_DIR", None)
    magic._loader = None


def strip_ansi(text):
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def run(shell, capsys, line, cell=None):
    if cell is None:
        shell.run_line_magic("complete", line)
    else:
        shell.run_cell_magic("complete", line, cell)
    out = capsys.readouterr()
    return strip_ansi(out.out), strip_ansi(out.err)


def test_completion_highlights_the_completed_part(shell, capsys):
    out, err = run(shell, capsys, "def add(a, b): return a")
    assert not err
    line = "def add(a, b): return a"
    assert out.startswith(line) and len(out.strip()) > len(line)


def test_alternatives(shell, capsys):
    out, _ = run(shell, capsys, "-n 3 total = ")
    numbered = [ln for ln in out.splitlines() if ln.startswith("[")]
    assert len(numbered) >= 2 and numbered[0].startswith("[1] total = ")


def test_insert_sets_the_next_input(shell, capsys):
    shell.rl_next_input = None
    out, _ = run(shell, capsys, "--insert import numpy as")
    assert shell.rl_next_input and shell.rl_next_input.startswith("import numpy as")
    assert shell.rl_next_input.strip() in out


def test_cell_magic_generates_from_a_comment(shell, capsys):
    out, err = run(shell, capsys, "", "# a function that returns the square of x\ndef square(x):\n")
    assert not err
    assert out.startswith("# a function that returns the square of x\ndef square(x):\n")
    assert len(out.splitlines()) > 2


def test_fix_shows_a_diff_of_the_cell_that_raised(shell, capsys):
    shell.run_cell("prices = {'apple': 1.0}\ntotal = prices['apples'] * 2\n")
    capsys.readouterr()
    out, err = run(shell, capsys, "--fix")
    assert not err
    assert "KeyError: 'apples'" in out
    assert ("--- cell" in out and "+++ proposed" in out) or "proposes no change" in out


def test_a_fix_is_the_first_alternative_that_changes_the_cell_and_parses():
    from jupyter_codecomp.kernel.magic import proposed_fix

    cell = "total = sales['Revenue'].sum()"
    assert proposed_fix([cell, "total = sales['revenue'].sum(", "total = sales['revenue'].sum()"],
                        cell) == "total = sales['revenue'].sum()"
    assert proposed_fix(["# %matplotlib inline\n# x = 1"], "x = 2") == "%matplotlib inline\nx = 1"
    assert proposed_fix([cell + "\n", ""], cell) is None


def test_context_lists_a_namespace_variable(shell, capsys):
    shell.run_cell("inventory_by_store = {'north': 3, 'south': 5}")
    out, _ = run(shell, capsys, "--context inventory_")
    assert "inventory_by_store" in out and "prompt tokens" in out and "--- variables" in out


def test_status(shell, capsys):
    out, _ = run(shell, capsys, "--status")
    assert "state: ready" in out and "smollm2-135m-int4" in out and "device: cpu" in out


@pytest.mark.parametrize("line,message", [
    ("-n 9 x", "-n must be between 1 and 5"),
    ("--bogus x", "unrecognized arguments: --bogus"),
    ("", "nothing to complete"),
])
def test_bad_options_print_the_usage_line(shell, capsys, line, message):
    shell.run_cell(f"%complete {line}")
    out, err = capsys.readouterr()
    text = strip_ansi(out + err)
    assert "UsageError" in text and message in text and "Traceback" not in text


def test_fix_without_an_exception(shell, capsys, monkeypatch):
    monkeypatch.delattr(sys, "last_value", raising=False)
    out, err = run(shell, capsys, "--fix")
    assert "no exception to fix yet" in err and "Traceback" not in err


def test_model_not_built_gives_the_build_command(shell, capsys, tmp_path, monkeypatch):
    import jupyter_codecomp.kernel.magic as magic
    from jupyter_codecomp.completion.service import ServiceLoader
    from jupyter_codecomp.completion.settings import ServiceSettings

    monkeypatch.setattr(magic, "_loader", ServiceLoader(
        ServiceSettings(model="qwen2.5-coder-0.5b", cache_dir=str(tmp_path))))
    out, err = run(shell, capsys, "x = ")
    assert "codecomp: model 'qwen2.5-coder-0.5b' is not built" in err
    assert "fix: jupyter codecomp model build qwen2.5-coder-0.5b" in err
    assert "Traceback" not in err + out


# --- in a real ipykernel ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kernel(config_dir):
    from jupyter_client.manager import start_new_kernel

    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(config_dir), "PYTHONPATH": str(REPO),
           "HF_HUB_OFFLINE": "1"}
    km, kc = start_new_kernel(kernel_name="python3", env=env, cwd=str(REPO))
    yield km, kc
    kc.stop_channels()
    km.shutdown_kernel(now=True)


def execute(kc, code, timeout=120):
    """Run code; return the stream text and the reply content."""
    chunks = []
    reply = kc.execute_interactive(
        code, timeout=timeout,
        output_hook=lambda msg: chunks.append(msg["content"].get("text", ""))
        if msg["msg_type"] == "stream" else None)
    return strip_ansi("".join(chunks)), reply["content"]


def test_kernel_context_sees_a_kernel_only_variable(kernel):
    _, kc = kernel
    execute(kc, "%load_ext jupyter_codecomp")
    execute(kc, "import pandas as pd\n"
                "enrollment = pd.DataFrame({'student': ['a'], 'grade_pct': [91.5]})")
    out, reply = execute(kc, "%complete --context enrollment.")
    assert reply["status"] == "ok"
    assert "enrollment" in out and "grade_pct" in out


def test_kernel_completion_and_interrupt(kernel):
    km, kc = kernel
    out, reply = execute(kc, "%%complete -n 2\nscores = [90, 85, 70]\nmean_score = ")
    assert reply["status"] == "ok" and out.strip()
    # A long generation, interrupted with the kernel's interrupt: one line, kernel still usable.
    msg_id = kc.execute("%%complete -n 5 --max-tokens 400\n# numbers\nvalues = [\n")
    time.sleep(1.0)
    km.interrupt_kernel()
    text = []
    while True:
        msg = kc.get_iopub_msg(timeout=60)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            text.append(msg["content"]["text"])
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    joined = strip_ansi("".join(text))
    assert "codecomp: interrupted" in joined and "Traceback" not in joined
    out, reply = execute(kc, "print(1 + 1)")
    assert out.strip() == "2"
