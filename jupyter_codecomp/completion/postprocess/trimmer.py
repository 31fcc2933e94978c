"""Post-processing: where a generated completion ends, and what of it may go in at the cursor.

`Trimmer.trim(text)` returns the part of `text` worth inserting and whether the completion is
complete; the engine's `TextComplete` criterion stops generation as soon as it is, and a stream
shows `Trimmer.shown(text)`, which holds back what may still be cut. The rules:
- line mode ends at the end of the statement (a newline outside brackets the completion opened);
  mid-line, at the end of the line;
- block mode ends at a dedent below the cursor's indentation, or a blank line at top level;
- a closing bracket that the suffix already supplies is never generated again;
- text that repeats the suffix is cut;
- a line that leaves the code (a `# %%` cell marker, a markdown fence) ends the completion;
- on an empty line, leading blank lines and a one-space "indent" (the tokenizer's word boundary,
  never an indentation) are dropped;
- a completion cut by the token cap is taken back to its last balanced point (outside strings and
  outside brackets it opened), so an unbalanced fragment is never returned.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

OPENERS = {"(": ")", "[": "]", "{": "}"}
_DANGLING_ATTRIBUTE = re.compile(r"(?<=\S)\.\w*$")
CLOSERS = {v: k for k, v in OPENERS.items()}
# Measured on the corpus: models end a cell with a new cell marker, and the cell-only context
# sometimes opens a markdown fence; neither is code to insert.
_LEAVES_CODE = re.compile(r"# %%|[ \t]*```")
BLOCK_MAX_LINES = 24


@dataclass
class _LexState:
    """Just enough of Python's lexer for brackets: string and comment state, bracket stack."""

    stack: list[str]
    quote: str = ""  # the open string's delimiter ("'", '"', "'''", '"""'), or ""
    comment: bool = False

    def copy(self) -> _LexState:
        return _LexState(list(self.stack), self.quote, self.comment)

    def feed(self, text: str, i: int) -> int:
        """Consume the lexical unit at text[i]; return the index after it."""
        ch = text[i]
        if ch == "\n":
            self.comment = False
            if self.quote in ("'", '"'):  # a one-line string cannot continue: drop it
                self.quote = ""
            return i + 1
        if self.comment:
            return i + 1
        if self.quote:
            if ch == "\\":
                return i + 2
            if text.startswith(self.quote, i):
                n = len(self.quote)
                self.quote = ""
                return i + n
            return i + 1
        if ch == "#":
            self.comment = True
        elif ch in "'\"":
            self.quote = ch * 3 if text.startswith(ch * 3, i) else ch
            return i + len(self.quote)
        elif ch in OPENERS:
            self.stack.append(ch)
        elif ch in CLOSERS:
            if self.stack and self.stack[-1] == CLOSERS[ch]:
                self.stack.pop()
            else:
                self.stack.append(ch)  # unmatched closer: recorded so callers can see it
        return i + 1


def lex(text: str, state: _LexState | None = None) -> _LexState:
    state = state.copy() if state else _LexState([])
    i = 0
    while i < len(text):
        i = state.feed(text, i)
    return state


@dataclass(frozen=True)
class Trimmed:
    text: str
    complete: bool


class Trimmer:
    def __init__(self, prefix: str, suffix: str, mode: Literal["line", "block"]):
        self.mode = mode
        self.prefix_line = prefix.rsplit("\n", 1)[-1]
        self.suffix_line = suffix.split("\n", 1)[0]
        self.mid_line = bool(self.suffix_line.strip())
        self.empty_line = is_empty_line(prefix, suffix)
        self.base_indent = _indent(self.prefix_line)
        self.start = lex(self.prefix_line)
        # Closers at the start of the suffix belong to brackets the prefix opened: the completion
        # may close only the others.
        leading = len(self.suffix_line) - len(self.suffix_line.lstrip(")]} \t"))
        supplied = sum(c in CLOSERS for c in self.suffix_line[:leading])
        self.closable = max(0, len(self.start.stack) - supplied)
        self.suffix_lines = [ln.strip() for ln in suffix.split("\n") if ln.strip()]

    def trim(self, text: str) -> Trimmed:
        if self.empty_line:
            text = text.lstrip("\n")
            if not self.prefix_line and text.startswith(" ") and not text.startswith("  "):
                text = text[1:]
        state = self.start.copy()
        depth0 = len(state.stack)
        safe = 0  # last index where the completion is balanced and outside strings
        line_start = 0
        lines = 0
        i = 0
        while i < len(text):
            ch = text[i]
            at_code = not state.quote and not state.comment
            closes_prefix_bracket = at_code and ch in CLOSERS and len(state.stack) <= depth0
            if closes_prefix_bracket and depth0 - len(state.stack) >= self.closable:
                return self._done(text[:i])
            if ch == "\n" and not state.quote:
                opened = len(state.stack) > depth0
                # A newline ends the line once there is content (or the cursor's line has some).
                has_content = text[:i].strip() or self.prefix_line.strip()
                if self.mode == "line" and (self.mid_line or not opened) and has_content:
                    return self._done(text[:i])
                if self.mode == "block":
                    lines += 1
                    if lines >= BLOCK_MAX_LINES:
                        return self._done(text[:i])
            if line_start == i and not state.quote and _LEAVES_CODE.match(text, i):
                return self._done(text[:i])
            if line_start == i and self.mode == "block" and i > 0:
                end = _block_end(text, i, self.base_indent, len(state.stack) > depth0)
                if end is not None:
                    return self._done(text[:end])
            repeat = self._suffix_repeat(text, i, line_start, state)
            if repeat is not None:
                return self._done(text[:repeat])
            i = min(state.feed(text, i), len(text))  # an escape may step past the end
            if text[i - 1] == "\n":
                line_start = i
            if not state.quote and len(state.stack) <= depth0:
                safe = i
        if safe == len(text):
            return Trimmed(text.rstrip(), False)
        # Cut by the token cap: keep the balanced part, without a dangling `.method` whose call
        # was cut off.
        return Trimmed(_DANGLING_ATTRIBUTE.sub("", text[:safe].rstrip()), False)

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
        if any(end.startswith(line) for end in ("# %%", "```", *self.suffix_lines[:1])):
            return head
        return trimmed.text

    def is_complete(self, text: str) -> bool:
        return self.trim(text).complete

    def _suffix_repeat(self, text: str, i: int, line_start: int, state: _LexState) -> int | None:
        if self.mid_line:
            # The rest of the line repeated, at a point where the completion is balanced with
            # respect to the cursor (so `)` inside `head()` is not mistaken for the suffix's).
            at_cursor_level = state.stack == self.start.stack and state.quote == self.start.quote
            if at_cursor_level and text.startswith(self.suffix_line.strip(), i):
                return i
            return None
        # At the end of a line, or on an empty one: a generated line equal to the suffix's next.
        new_line = i > 0 or not self.prefix_line.strip()
        if i == line_start and new_line and self.suffix_lines:
            line = text[i:].split("\n", 1)[0].strip()
            nxt = self.suffix_lines[0]
            if "\n" in text[i:] and line == nxt and len(nxt) >= 3:
                return i
        return None

    def _done(self, text: str) -> Trimmed:
        return Trimmed(text.rstrip() if text.strip() else "", True)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _block_end(text: str, i: int, base: int, in_brackets: bool) -> int | None:
    """At the start of a generated line: does the block end before it?"""
    if in_brackets:
        return None
    line = text[i:].split("\n", 1)[0]
    if not line.strip():
        # A blank line ends a top-level block once it is followed by more text.
        if base == 0 and "\n" in text[i:] and text[:i].strip():
            return i
        return None
    if _indent(line) < base:
        return i
    return None


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
