"""Moving on to the next cell: how much of the prompt the KV cache keeps, and what that saves.

    python benchmarks/next_cell.py [--model qwen2.5-coder-0.5b] [--notebook PATH]

A student works down a notebook: in each code cell, the first suggestion is asked at the start of
the cell's last line, with the cells above as the editor sends them. Two layouts of the cells
above take turns on the same requests, in one run, each with its own KV cache: the window sliding
by one cell at every move (`above_step = 1`) and the window starting at a multiple of 4 cells (the
default). Printed per layout: the share of prompt tokens reused from the cache, prefill and total
p50 in ms, and the ratio between the two.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from jupyter_codecomp.completion.protocol import CompletionRequest  # noqa: E402
from jupyter_codecomp.completion.service import ServiceLoader  # noqa: E402
from jupyter_codecomp.completion.settings import ServiceSettings  # noqa: E402
from jupyter_codecomp.tools.evaluation import notebook_cells  # noqa: E402

NOTEBOOK = Path(__file__).parent / "notebooks" / "01_pandas_basics_sales.ipynb"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--notebook", type=Path, default=NOTEBOOK)
    args = parser.parse_args()

    service = ServiceLoader(ServiceSettings(model=args.model)).wait()
    default_step = service.prompts.above_step
    layouts = {}
    for step in (1, default_step):
        layouts[step] = copy.copy(service.prompts)
        layouts[step].above_step = step
    cells = notebook_cells(args.notebook)
    figures: dict[int, dict[str, list[float]]] = {s: {"reused": [], "prefill": [], "total": []}
                                                   for s in layouts}
    for index, cell in enumerate(cells):
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        lines = cell.source.rstrip().split("\n")
        prefix = "\n".join(lines[:-1]) + ("\n" if len(lines) > 1 else "")
        for step, builder in layouts.items():
            service.prompts = builder
            request = CompletionRequest(prefix=prefix, cells=tuple(cells[:index]), mode="line",
                                        path=f"{args.notebook.name}#step{step}")
            reply = service.complete(request)
            context = reply.context
            figures[step]["reused"].append(context.cached_tokens / context.prompt_tokens)
            figures[step]["prefill"].append(reply.timings_ms.prefill)
            figures[step]["total"].append(reply.timings_ms.total)

    print(f"{service.name} on {service.engine.device}, {args.notebook.name}: "
          f"{len(figures[1]['total'])} cells, the first suggestion in each")
    print(f"{'cells above':<28}{'reused %':>10}{'prefill p50':>13}{'prefill sum':>13}"
          f"{'total p50':>11}")
    for step, f in figures.items():
        name = "slide by one cell" if step == 1 else f"start at a multiple of {step}"
        print(f"{name:<28}{100 * statistics.mean(f['reused']):>10.0f}"
              f"{statistics.median(f['prefill']):>13.0f}{sum(f['prefill']):>13.0f}"
              f"{statistics.median(f['total']):>11.0f}")
    slide, stepped = figures[1]["prefill"], figures[default_step]["prefill"]
    p50 = statistics.median(slide) / statistics.median(stepped)
    print(f"prefill, slide / stepped: p50 {p50:.1f}x,"
          f" sum {sum(slide) / sum(stepped):.1f}x")


if __name__ == "__main__":
    main()
