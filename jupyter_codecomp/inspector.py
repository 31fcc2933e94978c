"""The variables block: what a kernel's namespace holds, read without running user code.

The kernel side (`_kernel_side`, below) is plain Python with no imports outside the standard
library, so it runs in any Python kernel, with or without this package installed. The server
sends its source text as a fixed `user_expressions` entry (`KERNEL_EXPRESSION`); text from a
request is never executed. The `%complete` magic calls the same function in-process.

Never trigger user code: no attribute access on arbitrary objects (only on the exact types
numpy.ndarray, pandas.DataFrame and pandas.Series, whose attributes are known), no `repr` of
anything but small scalars, no `len` of anything but builtin containers. Output is bounded.
"""

from __future__ import annotations

import ast
import inspect
import json
from dataclasses import dataclass, field

MAX_VARIABLES = 60
MAX_COLUMNS = 30
BLOCK_MAX_CHARS = 1500


def _kernel_side(ns, hidden=(), max_vars=60, max_columns=30):  # pragma: no cover - runs in kernels
    import inspect as _inspect
    import json as _json
    import sys as _sys
    import types as _types

    skip = {"In", "Out", "exit", "quit", "get_ipython"}
    np_ = _sys.modules.get("numpy")
    pd_ = _sys.modules.get("pandas")
    ndarray = getattr(np_, "ndarray", None)
    frame = getattr(pd_, "DataFrame", None)
    series = getattr(pd_, "Series", None)

    def clip(text, n=80):
        text = str(text)
        return text if len(text) <= n else text[: n - 1] + "…"

    def describe(name, obj):
        kind = type(obj)
        entry = {"name": name, "type": kind.__name__}
        if kind is _types.ModuleType:
            entry["module"] = clip(obj.__dict__.get("__name__", name))
        elif ndarray is not None and kind is ndarray:
            entry["shape"] = str(tuple(obj.shape))
            entry["dtype"] = str(obj.dtype)
        elif frame is not None and kind is frame:
            entry["shape"] = str(tuple(obj.shape))
            columns = list(obj.columns[:max_columns])
            dtypes = list(obj.dtypes.iloc[:max_columns])
            entry["columns"] = [[clip(c, 40), str(d)] for c, d in zip(columns, dtypes)]
        elif series is not None and kind is series:
            entry["length"] = int(obj.shape[0])
            entry["dtype"] = str(obj.dtype)
            if obj.name is not None:
                entry["value"] = clip(obj.name, 40)
        elif kind in (_types.FunctionType, _types.BuiltinFunctionType, type) or (
            isinstance(obj, type)
        ):
            try:
                entry["signature"] = clip(str(_inspect.signature(obj)), 120)
            except (TypeError, ValueError):
                pass
            if isinstance(obj, type):
                entry["type"] = "class"
        elif kind in (list, tuple, dict, set, frozenset, bytes, bytearray):
            entry["length"] = len(obj)
        elif kind is str:
            entry["length"] = len(obj)
            if len(obj) <= 60:
                entry["value"] = repr(obj)
        elif kind in (int, float, bool, complex, type(None)):
            entry["value"] = clip(repr(obj), 40)
        else:
            entry["type"] = clip(f"{kind.__module__}.{kind.__qualname__}", 80).replace(
                "builtins.", "")
        return entry

    names = [n for n in list(ns) if not n.startswith("_") and n not in skip and n not in hidden]
    out = []
    for name in names[-max_vars:]:  # the most recently defined are the most relevant
        try:
            out.append(describe(name, ns[name]))
        except Exception:  # an odd object: its name is still worth listing
            out.append({"name": name, "type": "object"})
    return _json.dumps(out)


# The expression the server evaluates in the kernel. Everything lives inside a lambda and a fresh
# dict, so no name reaches the user's namespace.
KERNEL_EXPRESSION = (
    "(lambda g: (exec({src!r}, g), g['_kernel_side']("
    "__import__('IPython').get_ipython().user_ns, "
    "set(__import__('IPython').get_ipython().user_ns_hidden)))[1])({{}})"
).format(src=inspect.getsource(_kernel_side))


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
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["columns"] = tuple(tuple(c) for c in known.get("columns", ()))
        return cls(**known)

    def describe(self) -> str:
        if self.module:
            return f"{self.name}: module {self.module}"
        if self.signature is not None:
            kind = "class" if self.type == "class" else "function"
            return f"{self.name}: {kind} {self.name}{self.signature}"
        text = f"{self.name}: {self.type}"
        if self.shape:
            text += f" shape={self.shape}"
        if self.length is not None:
            text += f" len={self.length}"
        if self.dtype:
            text += f" dtype={self.dtype}"
        if self.value is not None:
            text += f" name={self.value}" if self.type == "Series" else f" = {self.value}"
        if self.columns:
            text += " columns: " + ", ".join(f"{c}({d})" for c, d in self.columns)
        return text


class InspectorError(ValueError):
    """The kernel's answer could not be read."""


def inspect_namespace(ns: dict, *, hidden=(), max_vars: int = MAX_VARIABLES) -> list[Variable]:
    """In-process: the same inspection the server runs in kernels."""
    return _parse(_kernel_side(ns, hidden, max_vars, MAX_COLUMNS))


def variables_from_reply(reply_content: dict, key: str = "codecomp") -> list[Variable]:
    """The variables from an execute_reply whose user_expressions ran `KERNEL_EXPRESSION`."""
    try:
        result = reply_content["user_expressions"][key]
        if result.get("status") != "ok":
            raise InspectorError(f"{result.get('ename')}: {result.get('evalue')}")
        return _parse(ast.literal_eval(result["data"]["text/plain"]))
    except (KeyError, TypeError, ValueError, SyntaxError) as exc:
        raise InspectorError(f"unreadable inspector reply: {exc}") from None


def _parse(payload: str) -> list[Variable]:
    return [Variable.from_json(item) for item in json.loads(payload)]


def format_variables(variables: list[Variable], max_chars: int = BLOCK_MAX_CHARS) -> str:
    """Comment lines for the prompt, most recent last, bounded in size."""
    lines: list[str] = []
    size = 0
    for variable in reversed(variables):
        line = f"# {variable.describe()}"
        if size + len(line) + 1 > max_chars:
            break
        lines.append(line)
        size += len(line) + 1
    return "\n".join(reversed(lines))
