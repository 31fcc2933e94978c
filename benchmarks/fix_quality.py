"""`%complete --fix` on common student errors: does the proposed cell run, and do it right?

    python benchmarks/fix_quality.py [--model qwen2.5-coder-0.5b] [--threads 0]

Each case runs its setup and its failing cell in a real IPython shell, then goes through the
magic's own fix path (`last_failure`, `fix_request`, the service, `proposed_fix`, with the
shell's history and variables) and runs the proposed cell in the same namespace. Outcomes:
"fixed" (it runs and the case's check holds), "wrong" (it runs, the check fails), "fails" (it
raises) and "no change". Greedy decoding: the figures are deterministic for a model.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from dataclasses import dataclass

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@dataclass(frozen=True)
class Case:
    name: str
    setup: str
    cell: str  # raises
    check: str  # an expression that holds once the cell is right


SALES = ("import pandas as pd\n"
         "sales = pd.DataFrame({'region': ['north', 'south', 'north'], "
         "'revenue': [120.0, 80.5, 30.0]})")
CASES = [
    Case("column name case", SALES, "total = sales['Revenue'].sum()", "total == 230.5"),
    Case("pandas method case", SALES, "by_region = sales.groupBy('region')['revenue'].sum()",
         "by_region['north'] == 150.0"),
    Case("column name typo",
         "import pandas as pd\norders = pd.DataFrame({'price': [2.0, 3.0], 'quantity': [4, 5]})",
         "orders['total'] = orders['price'] * orders['qty']",
         "orders['total'].tolist() == [8.0, 15.0]"),
    Case("variable name typo", "scores = [70, 85, 90]", "mean = sum(score) / len(scores)",
         "mean == 245 / 3"),
    Case("missing import", "values = [1.0, 2.0, 3.0]", "spread = np.std(values)",
         "abs(spread - 0.816496580927726) < 1e-9"),
    Case("function name case", "def average(xs):\n    return sum(xs) / len(xs)",
         "result = Average([1, 2, 3])", "result == 2"),
    Case("str + int", "age = 21", 'message = "Age: " + age', 'message == "Age: 21"'),
    Case("len of an int", "n = 12345", "digits = len(n)", "digits == 5"),
    Case("list has no push", "numbers = [1, 2, 3]", "numbers.push(4)", "numbers == [1, 2, 3, 4]"),
    Case("str method name", "name = 'ada'", "shout = name.uppercase()", "shout == 'ADA'"),
    Case("dict key case", "prices = {'apple': 1.2, 'pear': 0.8}", "cost = prices['Apple'] * 3",
         "abs(cost - 3.6) < 1e-9"),
    Case("off by one", "xs = [3, 1, 4]",
         "total = 0\nfor i in range(len(xs) + 1):\n    total += xs[i]", "total == 8"),
    Case("matrix shapes", "import numpy as np\na = np.ones((2, 3))\nb = np.ones((2, 3))",
         "c = a @ b", "c.shape in ((2, 2), (3, 3))"),
    Case("missing colon", "", "for n in range(3)\n    print(n)", "n == 2"),
    Case("missing indentation", "", "def double(x):\nreturn 2 * x", "double(4) == 8"),
]


def run_case(shell, service, case: Case) -> tuple[str, str, str]:
    """(outcome, error, proposed cell)."""
    from IPython.utils.capture import capture_output

    from jupyter_codecomp.kernel.magic import (
        fix_request,
        kernel_history,
        last_failure,
        namespace_variables,
        proposed_fix,
    )

    shell.reset(new_session=True)
    sys.last_value = None
    with capture_output():
        for source in (case.setup, case.cell):
            if source:
                shell.run_cell(source, store_history=True)
    failed = last_failure(shell)
    assert failed is not None, f"{case.name}: the cell did not raise"
    source, error = failed
    # The magic's own call, as if `%complete --fix` were the next input.
    shell.user_ns["In"].append("get_ipython().run_line_magic('complete', '--fix')")
    request = fix_request(source, error, kernel_history(shell),
                          service.settings.max_new_tokens_limit)
    reply = service.complete(request, namespace_variables(shell))
    fixed = proposed_fix([c.text for c in reply.completions], source)
    if fixed is None:
        return "no change", error, ""
    with capture_output():
        if not shell.run_cell(fixed).success:
            return "fails", error, fixed
    try:
        holds = bool(shell.ev(case.check))
    except Exception:  # the proposal renamed or dropped what the check reads
        holds = False
    return "fixed" if holds else "wrong", error, fixed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()

    from IPython.core.interactiveshell import InteractiveShell
    from rich.console import Console
    from rich.table import Table

    from jupyter_codecomp.completion.service import ServiceLoader
    from jupyter_codecomp.completion.settings import ServiceSettings

    settings = ServiceSettings(model=args.model, device="cpu", threads=args.threads)
    service = ServiceLoader(settings).wait()
    shell = InteractiveShell.instance()
    table = Table(title=f"%complete --fix, {service.name}: {len(CASES)} cases")
    for column in ("case", "error", "outcome", "proposed (first changed line)"):
        table.add_column(column, no_wrap=True, overflow="ellipsis")
    outcomes = Counter()
    for case in CASES:
        outcome, error, fixed = run_case(shell, service, case)
        outcomes[outcome] += 1
        changed = next((ln for ln in fixed.splitlines() if ln not in case.cell.splitlines()), "")
        table.add_row(case.name, error[:32], outcome, changed[:56])
    Console(width=120).print(table)
    print("  ".join(f"{k}: {outcomes[k]}" for k in ("fixed", "wrong", "fails", "no change")),
          f"(fixed {100 * outcomes['fixed'] / len(CASES):.0f} %)")


if __name__ == "__main__":
    main()
