"""The variables probe against the hostile-object catalogue (tests/hostile_cases.py), the
current probe beside an earlier revision's, in one real kernel; and the cost of one read.

    python benchmarks/hostile_probe.py [--baseline 65187b0]

For each case: which hostile methods ran (marker files) or whether the read timed out, per probe.
Then the in-process time of one read (median of 30, rounds interleaved) of a namespace with 20
DataFrames of 20 columns, 20 arrays, 20 functions and 20 ints, per probe. The baseline's probe is
read from git (`git show REV:jupyter_codecomp/kernel/inspector.py`), so run it in a checkout.
"""

from __future__ import annotations

import argparse
import importlib.util
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from hostile_cases import CASES, PRELUDE  # noqa: E402
from jupyter_client.manager import start_new_kernel  # noqa: E402

from jupyter_codecomp.kernel.variables import KERNEL_EXPRESSION  # noqa: E402


def baseline_expression(rev: str) -> str:
    source = subprocess.run(["git", "show", f"{rev}:jupyter_codecomp/kernel/inspector.py"],
                            cwd=ROOT, capture_output=True, text=True, check=True).stdout
    path = pathlib.Path(tempfile.mkdtemp()) / "baseline_inspector.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("baseline_inspector", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["baseline_inspector"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module.KERNEL_EXPRESSION


def run(client, code: str) -> None:
    client.execute_interactive(code, timeout=120, output_hook=lambda msg: None)


def probe_case(client, case, expression: str) -> str:
    marks = pathlib.Path(tempfile.mkdtemp())
    run(client, PRELUDE.format(marks=str(marks)) + case.setup)
    client.execute_interactive("", silent=True, store_history=False, user_expressions={"x": "1"},
                               timeout=30, output_hook=lambda msg: None)  # as the test does
    for mark in marks.iterdir():
        mark.unlink()
    try:
        content = client.execute_interactive(
            "", silent=True, store_history=False, user_expressions={"codecomp": expression},
            timeout=8, output_hook=lambda msg: None)["content"]
        status = content["user_expressions"]["codecomp"]["status"]
    except TimeoutError:
        status = "timeout"
        client.get_shell_msg(timeout=60)  # the late reply
    ran = sorted(p.name for p in marks.iterdir())
    run(client, case.teardown + "get_ipython().run_line_magic('reset', '-f')")
    return f"{status}, ran {', '.join(ran)}" if ran else status


def read_time(expression: str, ns: dict) -> float:
    times = []
    for _ in range(30):
        started = time.perf_counter()
        eval(expression, dict(ns))
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="65187b0", help="git revision of the old probe")
    args = parser.parse_args()
    probes = {"baseline": baseline_expression(args.baseline), "current": KERNEL_EXPRESSION}

    manager, client = start_new_kernel(kernel_name="python3")
    try:
        run(client, "import numpy, pandas")
        safe = dict.fromkeys(probes, 0)
        print(f"{'case':62} | {'baseline':28} | current")
        for name, case in CASES.items():
            results = {label: probe_case(client, case, expr) for label, expr in probes.items()}
            for label, result in results.items():
                safe[label] += result == "ok"
            print(f"{name[:62]:62} | {results['baseline'][:28]:28} | {results['current']}")
        print(f"cases answered without running user code: baseline {safe['baseline']}, "
              f"current {safe['current']} of {len(CASES)}")
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)

    import numpy as np
    import pandas as pd
    ns = {"__builtins__": __builtins__, "pd": pd, "np": np}
    for i in range(20):
        ns[f"df{i}"] = pd.DataFrame({f"c{j}": np.arange(1000) for j in range(20)})
        ns[f"arr{i}"], ns[f"f{i}"], ns[f"n{i}"] = np.zeros((100, 3)), (lambda x, y=2: x), i
    rounds = {label: [] for label in probes}
    for _ in range(3):
        for label, expression in probes.items():
            rounds[label].append(read_time(expression, ns))
    print("one read, ms (in-process, 82 names): " + ", ".join(
        f"{label} {statistics.median(values):.1f}" for label, values in rounds.items()))


if __name__ == "__main__":
    main()
