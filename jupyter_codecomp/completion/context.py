"""The context stage: what of the notebook and the kernel goes with a request to the prompt.

The cells themselves come with the request; the kernel's variables arrive already formatted (the
server reads them from the kernel, the magic from its own namespace) as `Variables`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .postprocess import is_empty_line
from .protocol import Cell, CompletionRequest


@dataclass(frozen=True)
class Variables:
    """The kernel's variables as the prompt shows them, and what became of the kernel lookup."""

    block: str = ""
    count: int = 0
    kernel: str | None = None  # "fresh", "cached", "dead", "unknown", ... (None: no kernel named)


def cells_below_shown(request: CompletionRequest, rule: str) -> tuple[Cell, ...]:
    """The cells below that the prompt shows under `rule` (`PromptLayout.below`): "never", the
    product's, or the evaluation's alternatives "not_on_empty_line" (on an empty line the model
    chooses what comes next, and copied the lines below instead) and "always"."""
    if rule == "never" or (rule == "not_on_empty_line"
                           and is_empty_line(request.prefix, request.suffix)):
        return ()
    return request.cells_below
