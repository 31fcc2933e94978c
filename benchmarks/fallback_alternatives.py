"""How many alternatives to ask for when the first is cut to nothing (issue 13).

    python benchmarks/fallback_alternatives.py OUT/results.json [OUT2/results.json]
                                               [--variant product] [--counts 3 5] [--threads 2]

Takes an eval run's tasks whose first alternative was cut (`first_emptied_by`), answers each
again through the product with each count of fallback alternatives, and prints how many stay
empty and how many are exact. Only these tasks can change: the fallback runs on no others.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from quality_tables import load

import jupyter_codecomp.completion.service as service_module
from jupyter_codecomp.completion.service import CompletionService
from jupyter_codecomp.completion.settings import ServiceSettings
from jupyter_codecomp.models.store import ModelStore
from jupyter_codecomp.tools.eval_tasks import notebook_cells, score
from jupyter_codecomp.tools.evaluation import parse_variant, request_for


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, nargs="+")
    parser.add_argument("--variant", default="product", help="the run's variant to redo")
    parser.add_argument("--counts", type=int, nargs="+", default=[3, 5])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()

    cut = [r for r in load(args.results) if r.variant == args.variant and r.first_emptied_by]
    print(f"{len(cut)} tasks whose first alternative was cut; {sum(r.empty for r in cut)} were "
          f"left empty in the run")
    service = CompletionService.load(ModelStore().resolve(args.model),
                                     ServiceSettings(threads=args.threads))
    variant = parse_variant(args.variant)
    for count in args.counts:
        service_module.FALLBACK_ALTERNATIVES = count
        empty = exact = 0
        for result in cut:
            task = result.task
            reply = service.complete(request_for(task, notebook_cells(Path(task.notebook)),
                                                 variant))
            text = reply.completions[0].text if reply.completions else ""
            empty += not text.strip()
            exact += score(task, args.variant, text, 0.0).exact
        print(f"{count} alternatives: {empty} empty, {exact} exact, of {len(cut)}", flush=True)


if __name__ == "__main__":
    main()
