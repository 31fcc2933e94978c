"""The trimmer's rules, one per role. Each looks at one position of the generated text, during
the trimmer's one lexer pass, and says where the completion ends (an index to cut at) or None.

The lists are the order they are tried in; `PRODUCT_RULES` is the product's, `NAIVE_RULES` only
what is needed to end a line or a block at all (the evaluation's baseline).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..prompt import CELL_MARKER, VARIABLES_HEADER
from .lexer import CLOSERS, LexState

if TYPE_CHECKING:
    from .trimmer import Trimmer

BLOCK_MAX_LINES = 24
# Prompt scaffolding: models end a cell with a new cell marker, copy the variables block's header,
# and the cell-only context sometimes opens a markdown fence; none of it is code to insert.
SCAFFOLDING_STARTS = (CELL_MARKER, "```", VARIABLES_HEADER.rstrip(":"))
SCAFFOLDING = re.compile(r"[ \t]*(" + "|".join(map(re.escape, SCAFFOLDING_STARTS)) + ")")


@dataclass
class Position:
    """The trimmer's pass at text[i], before the lexer consumes it."""

    text: str
    i: int
    line_start: int  # where the generated line holding i starts
    state: LexState
    depth0: int  # brackets open at the cursor
    lines: int  # newlines passed, in block mode

    @property
    def at_line_start(self) -> bool:
        return self.i == self.line_start and not self.state.quote

    @property
    def opened(self) -> bool:
        """Inside a bracket the completion opened."""
        return len(self.state.stack) > self.depth0


Rule = Callable[["Trimmer", Position], "int | None"]


def closes_supplied_bracket(t: Trimmer, p: Position) -> int | None:
    """A closing bracket of one the prefix opened, once the suffix supplies the rest."""
    ch = p.text[p.i]
    if p.state.at_code and ch in CLOSERS and len(p.state.stack) <= p.depth0:
        if p.depth0 - len(p.state.stack) >= t.closable:
            return p.i
    return None


def line_end(t: Trimmer, p: Position) -> int | None:
    """Line mode: a newline outside brackets and strings the completion opened (mid-line: any
    newline) ends it, once there is content (or the cursor's line has some). Inside a string the
    cell opened before the cursor (prose in a docstring) a newline ends the line too."""
    if t.mode != "line" or p.text[p.i] != "\n":
        return None
    if p.state.quote and p.state.quote != t.start.quote:
        return None
    has_content = p.text[:p.i].strip() or t.prefix_line.strip()
    if (t.mid_line or not p.opened) and has_content:
        return p.i
    return None


def block_line_cap(t: Trimmer, p: Position) -> int | None:
    if t.mode == "block" and p.text[p.i] == "\n" and not p.state.quote:
        if p.lines + 1 >= BLOCK_MAX_LINES:
            return p.i
    return None


def leaves_code(t: Trimmer, p: Position) -> int | None:
    """A line of prompt scaffolding ends the completion."""
    if p.at_line_start and SCAFFOLDING.match(p.text, p.i):
        return p.i
    return None


def block_end(t: Trimmer, p: Position) -> int | None:
    """Block mode: a dedent below the cursor's indentation, or a blank line at top level."""
    if t.mode != "block" or not p.at_line_start or p.i == 0 or p.opened:
        return None
    line = p.text[p.i:].split("\n", 1)[0]
    if not line.strip():
        # A blank line ends a top-level block once it is followed by more text.
        if t.base_indent == 0 and "\n" in p.text[p.i:] and p.text[:p.i].strip():
            return p.i
        return None
    return p.i if indent_of(line) < t.base_indent else None


def repeats_suffix(t: Trimmer, p: Position) -> int | None:
    """Text that repeats the suffix adds nothing."""
    if t.mid_line:
        # The rest of the line repeated, at a point where the completion is balanced with
        # respect to the cursor (so `)` inside `head()` is not mistaken for the suffix's).
        at_cursor_level = p.state.stack == t.start.stack and p.state.quote == t.start.quote
        if at_cursor_level and p.text.startswith(t.suffix_line.strip(), p.i):
            return p.i
        return None
    # At the end of a line, or on an empty one: a generated line equal to the suffix's next.
    new_line = p.i > 0 or not t.prefix_line.strip()
    if p.i == p.line_start and new_line and t.suffix_lines:
        rest = p.text[p.i:]
        nxt = t.suffix_lines[0]
        if "\n" in rest and rest.split("\n", 1)[0].strip() == nxt and len(nxt) >= 3:
            return p.i
    return None


def indent_of(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


# --- before the pass, on an empty line: what the completion starts with --------------------------

Lead = Callable[["Trimmer", str], str]


def drop_blank_lines(t: Trimmer, text: str) -> str:
    return text.lstrip("\n")


def drop_word_space(t: Trimmer, text: str) -> str:
    """A one-space "indent" is the tokenizer's word boundary, never an indentation."""
    if not t.prefix_line and text.startswith(" ") and not text.startswith("  "):
        return text[1:]
    return text


def drop_comment_lines(t: Trimmer, text: str) -> str:
    """Line mode: a code line is not answered by a comment or a markdown heading (measured on the
    corpus: `# Integer array`); the code the model writes after them is the suggestion. Scaffolding
    stays, for `leaves_code` to end the completion there."""
    if t.mode != "line" or t.start.quote:
        return text
    dropped = False
    while text.lstrip(" \t").startswith("#") and not SCAFFOLDING.match(text):
        if "\n" not in text:
            return ""  # a comment still being written: nothing yet
        text, dropped = text.split("\n", 1)[1].lstrip("\n"), True
    if dropped and t.prefix_line and text.startswith(t.prefix_line):
        text = text[len(t.prefix_line):]  # the cursor is after the indentation already
    return text


@dataclass(frozen=True)
class Rules:
    lead: tuple[Lead, ...]  # applied in order to the text on an empty line
    cut: tuple[Rule, ...]  # tried in order at each position of the pass


NAIVE_RULES = Rules(
    lead=(drop_blank_lines, drop_word_space),
    cut=(closes_supplied_bracket, line_end, block_line_cap, block_end),
)
PRODUCT_RULES = Rules(
    lead=(drop_blank_lines, drop_word_space, drop_comment_lines),
    cut=(closes_supplied_bracket, line_end, block_line_cap, leaves_code, block_end, repeats_suffix),
)
