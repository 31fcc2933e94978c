"""Kernel variables on our side of the wire: the expression that runs the probe in a kernel, the
reply parsed into `Variable`s, and the block of comment lines the prompt shows.

The probe itself (`inspector.py`) is sent as its file's text inside one fixed `user_expressions`
entry; text from a request is never executed. The `%complete` magic runs the same probe in-process
(`inspect_namespace`).
"""

from __future__ import annotations

import ast
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from . import inspector, signatures

MAX_VARIABLES = 60
MAX_COLUMNS = 30
# Everything the probe does is bounded and calls no user code; the budget only stops describing
# (the rest are listed by type) on a namespace of thousands of wide frames.
BUDGET_SECONDS = 1.0
BLOCK_MAX_CHARS = 1500
LINE_MAX_CHARS = 300

# The probe's two files, sent as their text: the inspector and the signatures it uses.
PROBE_SOURCE = Path(inspector.__file__).read_text(encoding="utf-8")
SIGNATURES_SOURCE = Path(signatures.__file__).read_text(encoding="utf-8")

# How the expression reaches the interpreter's own builtins without resolving a single name:
# `user_expressions` evaluates it with the user's namespace as globals, where any name (`exec`,
# `getattr`, `__import__`, even `__builtins__`) may be the user's. So every step starts from a
# literal: `type` and `object` from `()`, then the first subclass of object named
# `_frozen_importlib.BuiltinImporter` (made at interpreter start-up, before any class of the
# user's; names are read through `type`'s own slots and compared with `str.__eq__`), whose module
# globals hold the real builtins dict and `sys`. Each probe file runs in a fresh dict with those
# builtins; `(lambda: 0).__globals__` is the namespace being described. Nothing is left behind.
_TEMPLATE = (
    "(lambda T, O, E: (lambda g: (lambda B, S, G: (B['exec'](SIGNATURES, S), B['exec'](SOURCE, G),"
    " G['kernel_json']((lambda: 0).__globals__, g['sys'], S, MAX_VARS, MAX_COLUMNS, BUDGET))[2])"
    "(g['__builtins__'], {'__builtins__': g['__builtins__'], '__name__': 'codecomp_signatures'},"
    " {'__builtins__': g['__builtins__'], '__name__': 'codecomp_probe'}))"
    "(T.__dict__['__dict__'].__get__([c for c in O.__subclasses__()"
    " if E(T.__dict__['__qualname__'].__get__(c), 'BuiltinImporter')"
    " and E(T.__dict__['__module__'].__get__(c), '_frozen_importlib')][0])"
    "['find_spec'].__func__.__globals__))"
    "(().__class__.__class__, ().__class__.__base__,"
    " lambda a, b: ''.__class__.__eq__(b, a) is True)"
)
_FILLED = {"SIGNATURES": SIGNATURES_SOURCE, "SOURCE": PROBE_SOURCE, "MAX_VARS": MAX_VARIABLES,
           "MAX_COLUMNS": MAX_COLUMNS, "BUDGET": BUDGET_SECONDS}
# One pass: the inserted texts are never searched again.
KERNEL_EXPRESSION = re.sub(r"\b(?:" + "|".join(_FILLED) + r")\b",
                           lambda match: repr(_FILLED[match.group()]), _TEMPLATE)


class InspectorError(ValueError):
    """The kernel's answer could not be read."""


@dataclass(frozen=True)
class Variable:
    name: str
    type: str
    shape: str | None = None
    dtype: str | None = None
    length: int | None = None
    columns: tuple[tuple[str, str], ...] = field(default=())
    signature: str | None = None
    module: str | None = None
    value: str | None = None

    @classmethod
    def from_json(cls, data: dict) -> Variable:
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            raise InspectorError(f"not a variable: {str(data)[:80]}")
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known.setdefault("type", "object")
        try:
            known["columns"] = tuple((str(c[0]), str(c[1])) for c in known.get("columns") or ())
        except (TypeError, IndexError, KeyError):
            raise InspectorError(f"bad columns for {data['name']!r}") from None
        for key in ("type", "shape", "dtype", "signature", "module", "value"):
            if known.get(key) is not None:
                known[key] = str(known[key])
        if known.get("length") is not None and not isinstance(known["length"], int):
            raise InspectorError(f"bad length for {data['name']!r}")
        return cls(**known)

    def describe(self) -> str:
        """One line, without the comment marker: `df: DataFrame shape=(100, 3) columns: ...`."""
        if self.module is not None:
            return f"{self.name}: module {self.module}"
        if self.signature is not None:
            return f"{self.name}: {self.type} {self.signature}"
        text = f"{self.name}: {self.type}"
        if self.shape:
            text += f" shape={self.shape}"
        if self.length is not None and (self.value is None or self.type == "Series"):
            text += f" len={self.length}"
        if self.dtype:
            text += f" dtype={self.dtype}"
        if self.value is not None:
            text += f" name={self.value}" if self.type == "Series" else f" = {self.value}"
        if self.columns:
            text += " columns: " + self._columns_text(LINE_MAX_CHARS - len(text) - 40)
        return text

    def _columns_text(self, room: int) -> str:
        total = _column_count(self.shape) or len(self.columns)
        shown: list[str] = []
        for column, dtype in self.columns:
            room -= len(column) + len(dtype) + 4
            if room < 0 and shown:
                break
            shown.append(f"{column}({dtype})")
        more = f", ... ({total} columns)" if total > len(shown) else ""
        return ", ".join(shown) + more


def _column_count(shape: str | None) -> int | None:
    try:
        parsed = ast.literal_eval(shape) if shape else None
    except (ValueError, SyntaxError):
        return None
    if isinstance(parsed, tuple) and len(parsed) == 2 and isinstance(parsed[1], int):
        return parsed[1]
    return None


def inspect_namespace(
    ns: dict, *, hidden=(), max_vars: int = MAX_VARIABLES, max_columns: int = MAX_COLUMNS
) -> list[Variable]:
    """In-process: the probe the server runs in kernels. `hidden`: names to leave out, or
    IPython's `user_ns_hidden` dict (a name is left out while it still holds that value)."""
    return parse_variables(
        inspector.namespace_json(ns, hidden, sys, vars(signatures), max_vars, max_columns,
                                 BUDGET_SECONDS))


def variables_from_reply(reply_content: dict, key: str = "codecomp") -> list[Variable]:
    """The variables from an execute_reply whose user_expressions ran `KERNEL_EXPRESSION`."""
    try:
        if reply_content.get("status") not in (None, "ok"):
            raise InspectorError(
                f"execute failed: {reply_content.get('ename')}: {reply_content.get('evalue')}")
        result = reply_content["user_expressions"][key]
        if result.get("status") != "ok":
            raise InspectorError(f"{result.get('ename')}: {result.get('evalue')}")
        text = result["data"]["text/plain"]
        if not isinstance(text, str):
            raise InspectorError("text/plain is not a string")
        payload = ast.literal_eval(text)
        if not isinstance(payload, str):
            raise InspectorError("the expression did not give a string")
        return parse_variables(payload)
    except InspectorError:
        raise
    except (KeyError, TypeError, ValueError, SyntaxError, AttributeError, MemoryError,
            RecursionError) as exc:
        raise InspectorError(f"unreadable inspector reply: {type(exc).__name__}: {exc}") from None


def parse_variables(payload: str) -> list[Variable]:
    try:
        items = json.loads(payload)
    except ValueError as exc:
        raise InspectorError(f"not JSON: {exc}") from None
    if isinstance(items, dict) and "error" in items:
        raise InspectorError(f"the probe failed: {str(items['error'])[:80]}")
    if not isinstance(items, list):
        raise InspectorError("not a list of variables")
    return [Variable.from_json(item) for item in items]


def format_variables(variables: list[Variable], max_chars: int = BLOCK_MAX_CHARS) -> str:
    """Comment lines for the prompt, most recent last, each line and the block bounded in size;
    when the block is full the oldest variables are left out."""
    lines: list[str] = []
    size = 0
    for variable in reversed(variables):
        line = f"# {variable.describe()}"
        if len(line) > LINE_MAX_CHARS:
            line = line[: LINE_MAX_CHARS - 3] + "..."
        if size + len(line) + 1 > max_chars:
            break
        lines.append(line)
        size += len(line) + 1
    return "\n".join(reversed(lines))
