"""How many tokens the product's prompts take, with room for their completion: what an engine's
context per request (`jupyter codecomp serve --ctx-size`, vLLM `--max-model-len`) must hold.

    python benchmarks/prompt_sizes.py [--model qwen2.5-coder-0.5b] [--contexts 1536 2048 3072]
                                      [PATH ...]

Tasks are the evaluation's (`tools/eval_tasks.py`: 10 line and mid-line tasks and 3 block tasks a
notebook, seeded), from the corpora and the project's notebooks by default; each prompt is built
by the product's layout, unfitted, and counted with the completion's default cap. No kernel runs,
so no variables block (up to about 500 tokens more).
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from tokenizers import Tokenizer

from jupyter_codecomp.completion.prompt import PromptBuilder
from jupyter_codecomp.completion.settings import ServiceSettings
from jupyter_codecomp.models.store import ModelStore
from jupyter_codecomp.tools.eval_tasks import (
    collect_notebooks,
    make_block_tasks,
    make_tasks,
    notebook_cells,
)

ROOT = Path(__file__).parent.parent
DEFAULT_PATHS = [str(ROOT.parent / "shared" / "corpora"), str(ROOT / "benchmarks" / "notebooks")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="*", default=DEFAULT_PATHS)
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--contexts", type=int, nargs="+", default=[1536, 2048, 3072])
    args = parser.parse_args()

    model = ModelStore().resolve(args.model, only=("tokenizer.json",))
    tokenizer = Tokenizer.from_file(str(model.path / "tokenizer.json"))
    builder = PromptBuilder.for_tokenizer(tokenizer, model.manifest.prompt)
    settings = ServiceSettings()
    sizes = []
    for path in collect_notebooks(args.paths):
        cells = notebook_cells(path)
        rng = random.Random(0)
        for task in make_tasks(path, cells, rng, 10) + make_block_tasks(path, cells, rng, 3):
            cap = settings.block_max_new_tokens if task.kind == "block" else settings.max_new_tokens
            sizes.append(len(builder.build(task.prefix, task.suffix, cells[:task.cell]).ids) + cap)
    sizes.sort()
    n = len(sizes)
    print(f"{n} prompts with their completion's cap, tokens: p50 {sizes[n // 2]}, "
          f"p90 {sizes[int(n * 0.9)]}, p99 {sizes[int(n * 0.99)]}, max {sizes[-1]}")
    for context in args.contexts:
        over = sum(size > context for size in sizes)
        print(f"  over {context}: {over} ({100 * over / n:.1f} %)")


if __name__ == "__main__":
    main()
