"""The trimmer: where a generated completion ends, and what of it may go in at the cursor.

`Trimmer.trim(text)` returns the part of `text` worth inserting and whether the completion is
complete; the engine's `TextComplete` criterion stops generation as soon as it is, and a stream
shows `Trimmer.shown(text)`, which holds back what may still be cut. One lexer pass over the
text, from the state at the cursor (the whole cell before it), tries the rules of `rules.py` at
each position: the first that cuts ends the completion. Before the pass, on an empty line, the
rules' `lead` steps drop leading blank lines, a one-space "indent" and comment lines. After it,
a completion cut by the token cap is taken back to its last balanced point (outside strings and
outside brackets it opened), so an unbalanced fragment is never returned.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from .lexer import CLOSERS, lex_prefix
from .rules import PRODUCT_RULES, SCAFFOLDING, SCAFFOLDING_STARTS, Position, Rules, indent_of

_DANGLING_ATTRIBUTE = re.compile(r"(?<=\S)\.\w*$")


@dataclass(frozen=True)
class Trimmed:
    text: str
    complete: bool
    cut_by: str = ""  # the rule that ended it ("" when none did: the cap, or still growing)


class Trimmer:
    def __init__(self, prefix: str, suffix: str, mode: Literal["line", "block"],
                 rules: Rules = PRODUCT_RULES):
        self.mode = mode
        self.rules = rules
        self.prefix_line = prefix.rsplit("\n", 1)[-1]
        self.suffix_line = suffix.split("\n", 1)[0]
        self.mid_line = bool(self.suffix_line.strip())
        self.empty_line = is_empty_line(prefix, suffix)
        self.base_indent = indent_of(self.prefix_line)
        self.start = lex_prefix(prefix)
        # Closers at the start of the suffix belong to brackets the prefix opened: the completion
        # may close only the others.
        leading = len(self.suffix_line) - len(self.suffix_line.lstrip(")]} \t"))
        supplied = sum(c in CLOSERS for c in self.suffix_line[:leading])
        self.closable = max(0, len(self.start.stack) - supplied)
        self.suffix_lines = [ln.strip() for ln in suffix.split("\n") if ln.strip()]

    def trim(self, text: str) -> Trimmed:
        text = self._lead(text)
        state = self.start.copy()
        depth0 = len(state.stack)
        safe = 0  # last index where the completion is balanced and outside strings
        line_start = 0
        lines = 0
        i = 0
        while i < len(text):
            position = Position(text, i, line_start, state, depth0, lines)
            for rule in self.rules.cut:
                cut = rule(self, position)
                if cut is not None:
                    return self._done(text[:cut], rule.__name__)
            if text[i] == "\n" and not state.quote:
                lines += 1
            i = min(state.feed(text, i), len(text))  # an escape may step past the end
            if text[i - 1] == "\n":
                line_start = i
            in_prose = len(state.quote) == 3 and state.quote == self.start.quote
            if (not state.quote or in_prose) and len(state.stack) <= depth0:
                safe = i
        if safe == len(text):
            return Trimmed(text.rstrip(), False)
        # Cut by the token cap: keep the balanced part, without a dangling `.method` whose call
        # was cut off.
        return Trimmed(_DANGLING_ATTRIBUTE.sub("", text[:safe].rstrip()), False)

    def _lead(self, text: str) -> str:
        if self.empty_line:
            for step in self.rules.lead:
                text = step(self, text)
        return text

    def shown(self, text: str) -> str:
        """What a stream may show of a growing text: the trimmed text, less a last line that may
        still be cut (it could yet become the suffix's next line or a cell marker), so that a
        suggestion on screen is never taken back to nothing when the text is complete."""
        trimmed = self.trim(text)
        head, newline, last = trimmed.text.rpartition("\n")
        starts_line = bool(newline) or not self.prefix_line.strip()
        line = last.strip()
        if trimmed.complete or not (starts_line and line):
            return trimmed.text
        ends = (*SCAFFOLDING_STARTS, *self.suffix_lines[:1])
        if any(end.startswith(line) for end in ends):
            return head
        return trimmed.text

    def is_complete(self, text: str) -> bool:
        return self.trim(text).complete

    def _done(self, text: str, rule: str) -> Trimmed:
        return Trimmed(text.rstrip() if text.strip() else "", True, rule)


def is_scaffolding(text: str) -> bool:
    return bool(SCAFFOLDING.match(text))


def is_empty_line(prefix: str, suffix: str) -> bool:
    """Whether the cursor's line holds nothing but whitespace."""
    return not (prefix.rsplit("\n", 1)[-1] + suffix.split("\n", 1)[0]).strip()


def resolve_mode(prefix: str, suffix: str, mode: str) -> Literal["line", "block"]:
    """`auto`: a block after a line that opens one (`def f():`), or after a comment or docstring
    at the start of a line that asks for code; otherwise the rest of the line."""
    if mode in ("line", "block"):
        return mode  # type: ignore[return-value]
    if not is_empty_line(prefix, suffix):
        return "line"
    prefix_line = prefix.rsplit("\n", 1)[-1]
    previous = prefix[: len(prefix) - len(prefix_line)].rstrip("\n").rsplit("\n", 1)[-1].strip()
    if previous.endswith(":") or previous.startswith("#") or previous.endswith(('"""', "'''")):
        return "block"
    return "line"
