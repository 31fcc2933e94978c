"""The prompt: a notebook seen as one Python file, in the model's fill-in-the-middle format.

    <|fim_prefix|># %% cells above, nearest last ...
    # %%
    # Variables in the running kernel:          (when the kernel has variables)
    # df: DataFrame shape=(120, 3) columns: ...
    # %%
    current cell before the cursor<|fim_suffix|>current cell after the cursor
    # %% cells below ...<|fim_middle|>

The current cell's prefix and suffix are always kept (up to hard caps). Cells above and below go
in whole, nearest first, within their token budgets; markdown becomes short comments. A
`PromptLayout` names each of these choices, so that the evaluation can set them side by side
(`NAIVE` is the baseline every figure is read against: the cells above as plain code). The first
cell above starts at a multiple of `above_step` cells, so that moving to the next cell keeps
the start of the prompt, and the engine's KV cache with it, most of the time. The text
before the cursor is tokenized as one piece and its last token is held back for token healing.
The layout keeps everything before the cursor stable while a user types, so the engine's prefix
reuse applies.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal, get_args, get_type_hints

from ..models.recipes import PromptFormat
from .protocol import Cell
from .settings import ServiceSettings

if TYPE_CHECKING:
    from .engine import TextTokenizer

MARKDOWN_MAX_LINES = 3
MARKDOWN_MAX_CHARS = 240
PREFIX_MAX_TOKENS = 1536
SUFFIX_MAX_TOKENS = 256
# Tokens the healing step may hold back: only "word-like" tails, never a whole line.
HEAL_MAX_CHARS = 12
VARIABLES_HEADER = "# Variables in the running kernel:"
CELL_MARKER = "# %%"


@dataclass(frozen=True)
class PromptLayout:
    """How the notebook is laid out as one file; each field is a decision of RESULTS.md."""

    markdown: Literal["comments", "drop"] = "comments"  # markdown cells as short comments, or out
    separator: Literal["marker", "blank"] = "marker"  # `# %%` before each cell, or a blank line
    variables: Literal["beside", "top", "none"] = "beside"  # before the current cell, or the prompt
    # The cells below: measured on the corpus, mid-line the model copied from them (RESULTS.md).
    below: Literal["never", "not_on_empty_line", "always"] = "never"
    heal: bool = True  # token healing of the prefix's last token
    budget_above: int = ServiceSettings.context_tokens  # tokens of cells above
    budget_below: int = 256  # tokens of cells below, where `below` shows them

    def with_options(self, options: dict[str, str]) -> PromptLayout:
        """A copy with `options` (from the evaluation's variant names) applied; ValueError names
        a bad one."""
        values: dict = {}
        for name, value in options.items():
            if name not in self.__dataclass_fields__:
                raise ValueError(name)
            current = getattr(self, name)
            if isinstance(current, bool):
                values[name] = value in ("1", "true", "yes", "on")
            elif isinstance(current, int):
                values[name] = int(value)
            elif value in get_args(get_type_hints(PromptLayout)[name]):
                values[name] = value
            else:
                raise ValueError(f"{name}={value}")
        return replace(self, **values)


# The baseline of every comparison (issue 13): the cells above as plain code in FIM, a 1500-token
# budget, token healing, nothing else.
NAIVE = PromptLayout(markdown="drop", separator="blank", variables="none", below="never",
                     budget_above=1500)


@dataclass(frozen=True)
class PromptPart:
    kind: str  # "variables", "cell_above", "prefix", "suffix", "cell_below"
    text: str
    tokens: int
    index: int | None = None  # cell index in the notebook order, for cells


@dataclass
class Prompt:
    ids: list[int]
    heal: str  # text held back from the prefix; the completion must start with it
    parts: list[PromptPart] = field(default_factory=list)
    dropped_cells: int = 0

    @property
    def cells_used(self) -> int:
        return sum(p.kind in ("cell_above", "cell_below") for p in self.parts)

    def tokens_of(self, kind: str) -> int:
        return sum(p.tokens for p in self.parts if p.kind == kind)


class PromptBuilder:
    def __init__(
        self,
        encode: Callable[[str], list[int]],
        token_id: Callable[[str], int | None],
        decode_one: Callable[[int], str],
        fmt: PromptFormat,
        *,
        budget_above: int | None = None,
        budget_below: int | None = None,
        above_step: int = 4,
        layout: PromptLayout = PromptLayout(),
    ):
        self.encode = encode
        self.fmt = fmt
        self.decode_one = decode_one
        if budget_above is not None:
            layout = replace(layout, budget_above=budget_above)
        if budget_below is not None:
            layout = replace(layout, budget_below=budget_below)
        self.layout = layout
        self.above_step = above_step
        self._special = {
            name: token_id(tok)
            for name, tok in (
                ("prefix", fmt.fim_prefix),
                ("suffix", fmt.fim_suffix),
                ("middle", fmt.fim_middle),
            )
            if tok
        }
        self.fim = fmt.fim and all(self._special.get(k) is not None
                                   for k in ("prefix", "suffix", "middle"))

    @classmethod
    def for_tokenizer(cls, tokenizer: TextTokenizer, fmt: PromptFormat, **options) -> PromptBuilder:
        """A builder over a tokenizer (`tokenizers.Tokenizer`, or a shared engine's)."""
        return cls(lambda text: tokenizer.encode(text, add_special_tokens=False).ids,
                   tokenizer.token_to_id,
                   lambda i: tokenizer.decode([i], skip_special_tokens=False), fmt, **options)

    def build(
        self,
        prefix: str,
        suffix: str = "",
        cells: Sequence[Cell] = (),
        cells_below: Sequence[Cell] = (),
        variables: str = "",
        max_tokens: int | None = None,
    ) -> Prompt:
        """The prompt; with `max_tokens` (what the engine holds, less the completion), one that
        fits: the cells farthest above go first, then the variables and the cells below, then
        the start of the current cell (a shared engine started with a small context)."""
        prompt = self._build(prefix, suffix, cells, cells_below, variables, self.layout)
        if max_tokens is None or len(prompt.ids) <= max_tokens:
            return prompt
        excess = len(prompt.ids) - max_tokens
        fewer = replace(self.layout, budget_above=max(0, prompt.tokens_of("cell_above") - excess))
        prompt = self._build(prefix, suffix, cells, cells_below, variables, fewer)
        if len(prompt.ids) <= max_tokens:
            return prompt
        bare = replace(fewer, budget_above=0, budget_below=0)
        prompt = self._build(prefix, suffix, cells, cells_below, "", bare)
        for _ in range(8):  # by whole lines, then within the line: a few steps at most
            if len(prompt.ids) <= max_tokens:
                break
            room = prompt.tokens_of("prefix") - (len(prompt.ids) - max_tokens)
            prefix = self._tail(prefix, max(1, room))
            prompt = self._build(prefix, suffix, cells, cells_below, "", bare)
        return prompt

    def _build(self, prefix: str, suffix: str, cells: Sequence[Cell],
               cells_below: Sequence[Cell], variables: str, layout: PromptLayout) -> Prompt:
        parts: list[PromptPart] = []
        above, above_parts = self._select(cells, layout.budget_above, "cell_above", above=True)
        below, below_parts = self._select(cells_below, layout.budget_below, "cell_below",
                                          above=False)
        # "beside": between the cells above and the current cell: near the cursor, and after the
        # part of the prompt that running a cell leaves unchanged, so the engine still reuses the
        # cells above when the kernel state changes.
        if variables and layout.variables != "none":
            block = self._separator() + f"{VARIABLES_HEADER}\n{variables.rstrip()}\n\n"
            part = PromptPart("variables", variables, self._count(block))
            if layout.variables == "top":
                above, above_parts = block + above, [part, *above_parts]
            else:
                above, above_parts = above + block, [*above_parts, part]
        parts += above_parts
        if above:
            above += self._separator()
        prefix = self._tail(prefix, PREFIX_MAX_TOKENS)
        before_ids = self.encode(above + prefix)
        heal = ""
        last = self.decode_one(before_ids[-1]) if before_ids and prefix and layout.heal else ""
        if last and prefix.endswith(last) and _healable(last):
            if len(last) > 1 and last.endswith(" ") and not last.strip():
                # Indentation: in code its last space goes with the word after it (`:\n`
                # `       ` ` return`), so hold back only that space. Holding back the whole run
                # made the model pick a shorter run first and then spell out the rest one
                # improbable space at a time (measured: block tasks at 8 spaces).
                before_ids = before_ids[:-1] + self.encode(last[:-1])
                heal = " "
            elif len(last) <= HEAL_MAX_CHARS:
                before_ids = before_ids[:-1]
                heal = last
        parts.append(PromptPart("prefix", prefix, len(before_ids) - self._count(above)))

        suffix_text = self._head(suffix, SUFFIX_MAX_TOKENS)
        # The current cell ends with a newline, as it does in the notebook-as-a-file; measured:
        # without it the model more often ends a line early (`df.` -> `columns`, not a call).
        after = suffix_text.rstrip("\n") + "\n" + ("\n" + below if below else "")
        parts.append(PromptPart("suffix", suffix_text, self._count(suffix_text)))
        parts += below_parts

        if self.fim:
            ids = [self._special["prefix"], *before_ids, self._special["suffix"],
                   *self.encode(after), self._special["middle"]]
        else:
            ids = before_ids
        dropped = len(cells) + len(cells_below) - sum(
            p.kind in ("cell_above", "cell_below") for p in parts)
        return Prompt(ids, heal, parts, dropped)

    # --- pieces -------------------------------------------------------------------------------

    def _select(self, cells: Sequence[Cell], budget: int, kind: str, above: bool):
        """Whole cells, nearest to the current one first, until the budget is spent. Above the
        cursor, the first cell kept is at a multiple of `above_step`: as the window slides down
        a cell at a time, its start (and the KV cache behind it) moves every `above_step` cells."""
        order = range(len(cells) - 1, -1, -1) if above else range(len(cells))
        chosen: list[tuple[int, str, int]] = []
        spent = 0
        for index in order:
            text = cell_text(cells[index], self.layout)
            if not text:
                continue
            tokens = self._count(text)
            if spent + tokens > budget:
                if above:
                    start = math.ceil((index + 1) / self.above_step) * self.above_step
                    chosen = [c for c in chosen if c[0] >= start]
                break
            spent += tokens
            chosen.append((index, text, tokens))
        chosen.sort()
        parts = [PromptPart(kind, text, tokens, index) for index, text, tokens in chosen]
        return "".join(text for _, text, _ in chosen), parts

    def _separator(self) -> str:
        return CELL_MARKER + "\n" if self.layout.separator == "marker" else ""

    def _count(self, text: str) -> int:
        return len(self.encode(text)) if text else 0

    def _tail(self, text: str, max_tokens: int) -> str:
        """The last lines of `text` that fit `max_tokens` (approximately, by whole lines)."""
        if self._count(text) <= max_tokens:
            return text
        lines = text.split("\n")
        kept: list[str] = []
        spent = 0
        for line in reversed(lines):
            spent += self._count(line + "\n")
            if spent > max_tokens and kept:
                break
            kept.append(line)
        if spent > max_tokens and len(kept) == 1:  # one line over the budget: keep its end
            return self._line_end(kept[0], max_tokens)
        return "\n".join(reversed(kept))

    def _line_end(self, line: str, max_tokens: int) -> str:
        """The end of a line too long for the budget (a minified line, a long literal): the text
        at the cursor matters, its start does not. Rarely over 4 characters a token in code."""
        end = line[-4 * max_tokens:]
        while end and self._count(end) > max_tokens:
            end = end[len(end) // 8 + 1:]
        return end

    def _head(self, text: str, max_tokens: int) -> str:
        if self._count(text) <= max_tokens:
            return text
        kept: list[str] = []
        spent = 0
        for line in text.split("\n"):
            spent += self._count(line + "\n")
            if spent > max_tokens:
                break
            kept.append(line)
        return "\n".join(kept)


def _healable(token: str) -> bool:
    """A token worth regenerating: a word-like tail, or the indentation of the cursor's line.
    Never one that ends a line of code (`)\n`): measured on the corpus, a model made to start
    with it writes a blank line and a new cell marker instead of the next line."""
    if "\n" not in token:
        return True
    return not token.strip() and not token.endswith("\n")


def cell_text(cell: Cell, layout: PromptLayout = PromptLayout()) -> str:
    """A cell as it appears in the notebook-as-a-file, after its `# %%` marker (or a blank line)."""
    source = cell.source.rstrip()
    marker = layout.separator == "marker"
    if not source or cell.cell_type == "raw":
        return ""
    if cell.cell_type == "markdown":
        if layout.markdown == "drop":
            return ""
        lines = [ln.strip() for ln in source.splitlines() if ln.strip()][:MARKDOWN_MAX_LINES]
        text = "\n".join(f"# {ln}" for ln in lines)[:MARKDOWN_MAX_CHARS]
        return f"{CELL_MARKER} [markdown]\n{text}\n\n" if marker else f"{text}\n\n"
    return f"{CELL_MARKER}\n{source}\n\n" if marker else f"{source}\n\n"
