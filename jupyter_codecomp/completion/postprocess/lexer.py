"""Just enough of Python's lexer for brackets: string and comment state, bracket stack."""

from __future__ import annotations

from dataclasses import dataclass

OPENERS = {"(": ")", "[": "]", "{": "}"}
CLOSERS = {v: k for k, v in OPENERS.items()}


@dataclass
class LexState:
    stack: list[str]
    quote: str = ""  # the open string's delimiter ("'", '"', "'''", '"""'), or ""
    comment: bool = False

    def copy(self) -> LexState:
        return LexState(list(self.stack), self.quote, self.comment)

    @property
    def at_code(self) -> bool:
        return not self.quote and not self.comment

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


def lex(text: str, state: LexState | None = None) -> LexState:
    state = state.copy() if state else LexState([])
    i = 0
    while i < len(text):
        i = state.feed(text, i)
    return state


def lex_prefix(prefix: str) -> LexState:
    """The state at the cursor, from the whole cell before it: a bracket opened on an earlier line
    (`x = foo(a,\\n    b`) is still open. A stray closer of the prefix is not an open bracket."""
    state = LexState([])
    i = 0
    while i < len(prefix):
        i = state.feed(prefix, i)
        if state.stack and state.stack[-1] in CLOSERS:
            state.stack.pop()
    return state
