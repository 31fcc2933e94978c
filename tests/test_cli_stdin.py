"""`jupyter codecomp complete` reads input piped into it without `-` (issue 17)."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def complete(*args: str, stdin: str, cache) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "jupyter_codecomp", "complete", *args],
        input=stdin, capture_output=True, text=True,
        env={**os.environ, "JUPYTER_CODECOMP_CACHE_DIR": str(cache)},
    )


def test_piped_input_is_completed_without_a_dash(test_model):
    result = complete("--model", str(test_model.path), "--json",
                      stdin="def square(x):\n    return <CURSOR>\n", cache=test_model.path.parent)
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout)
    assert reply["completions"] and reply["context"]["prompt_tokens"] > 5


def test_empty_piped_input_is_a_one_line_error(tmp_path):
    result = complete("--model", "qwen2.5-coder-0.5b", stdin="", cache=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "no input" in result.stderr and "pipe it in" in result.stderr
