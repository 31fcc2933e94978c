"""The variables block: what a kernel's namespace holds, read without running user code.

The kernel side (`_kernel_side`, below) is plain Python that imports only the standard library, so
it runs in any Python kernel, with or without this package installed. The server sends its source
text inside one fixed `user_expressions` entry (`KERNEL_EXPRESSION`); text from a request is never
executed. The `%complete` magic calls the same function in-process (`inspect_namespace`).

Never trigger user code:
- an object's type comes from `type(obj)` and the type's own slots (`type.__dict__` descriptors),
  never from `obj.__class__`, `isinstance` or attribute access that a class could override;
- attributes are read only on known types: numpy arrays through `ndarray`'s own C descriptors,
  torch tensors of the exact base types, pandas objects whose class lives in pandas;
- `len` and `repr` only through the builtin base type (`list.__len__(obj)`, `str.__repr__(obj)`),
  so a subclass's override is never called; `repr` only of small scalars and short strings;
- function signatures are rebuilt from the code object, defaults shown only when they are small
  builtin scalars, annotations only when they are strings or types (and never on Python >= 3.14,
  where reading annotations may evaluate them).
Output is bounded: at most `max_vars` entries (the most recent), clipped strings, capped columns,
and a time budget after which the remaining names are listed by type only.
"""

from __future__ import annotations

import ast
import inspect
import json
import sys
from dataclasses import asdict, dataclass, field

MAX_VARIABLES = 60
MAX_COLUMNS = 30
BLOCK_MAX_CHARS = 1500
LINE_MAX_CHARS = 300


# --- kernel side: self-contained, standard library only, sent to kernels as source text --------


def _kernel_side(ns, hidden=(), max_vars=60, max_columns=30, budget_s=1.0):  # pragma: no cover
    import json as _json
    import sys as _sys
    import time as _time
    import types as _types

    start = _time.monotonic()
    tdict = type.__dict__
    type_qualname = tdict["__qualname__"].__get__
    type_module = tdict["__module__"].__get__
    type_mro = tdict["__mro__"].__get__
    type_ns = tdict["__dict__"].__get__
    module_dict = _types.ModuleType.__dict__["__dict__"].__get__
    function = _types.FunctionType
    fdict = function.__dict__
    skip = ("In", "Out", "exit", "quit", "get_ipython")

    def clip(text, n=80):
        return text if len(text) <= n else text[: n - 1] + "\u2026"

    def sub(kind, base):  # issubclass without any user hook (identity over the MRO)
        for klass in type_mro(kind):
            if klass is base:
                return True
        return False

    def modname(kind):
        mod = type_module(kind)
        return mod if type(mod) is str else ""

    def from_pandas(kind):
        mod = modname(kind)
        return mod == "pandas" or mod.startswith("pandas.")

    def lookup(module, name):  # a known module's global, read from its dict
        mod = _sys.modules.get(module)
        if mod is None or not sub(type(mod), _types.ModuleType):
            return None
        try:
            return module_dict(mod).get(name)
        except Exception:
            return None

    np_ndarray = lookup("numpy", "ndarray")
    np_generic = lookup("numpy", "generic")
    np_number = lookup("numpy", "number")
    np_bool = lookup("numpy", "bool_")
    pd_frame = lookup("pandas", "DataFrame")
    pd_series = lookup("pandas", "Series")
    pd_index = lookup("pandas", "Index")
    torch_tensor = lookup("torch", "Tensor")
    torch_param = None
    torch_nn = _sys.modules.get("torch.nn.parameter")
    if torch_nn is not None:
        torch_param = lookup("torch.nn.parameter", "Parameter")

    def type_label(kind):
        qual = type_qualname(kind)
        mod = modname(kind)
        top = mod.split(".")[0]
        if top in ("builtins", "__main__", "numpy", "pandas", "") or mod.startswith("__"):
            return clip(qual, 60)
        return clip(top + "." + qual, 60)

    def small_value(value):  # repr only of small builtin scalars; None when not shown
        kind = type(value)
        if value is None or kind is bool:
            return repr(value)
        if sub(kind, int):
            return int.__repr__(value) if int.bit_length(value) <= 64 else None
        if sub(kind, float):
            return float.__repr__(value)
        if sub(kind, complex):
            return complex.__repr__(value)
        if sub(kind, str):
            return str.__repr__(value) if str.__len__(value) <= 60 else None
        if sub(kind, bytes):
            return bytes.__repr__(value) if bytes.__len__(value) <= 60 else None
        return None

    def label(value):  # a column or series name as text, without calling a user __str__
        kind = type(value)
        if kind is str:
            return clip(value, 40)
        if kind is int or kind is float or kind is bool or value is None:
            return repr(value)
        if kind is tuple:
            return clip("(" + ", ".join(label(v) for v in value[:4]) + ")", 40)
        top = modname(kind).split(".")[0]
        if top in ("numpy", "pandas"):
            return clip(str(value), 40)
        return "<" + type_label(kind) + ">"

    def dtype_text(dtype):
        top = modname(type(dtype)).split(".")[0]
        if top in ("numpy", "pandas", "torch"):
            return clip(str(dtype), 40)
        return type_label(type(dtype))

    def annotation_text(annotation):
        if _sys.version_info >= (3, 14):
            return None
        kind = type(annotation)
        if kind is str:
            return clip(annotation, 40)
        if sub(kind, type):
            return type_label(annotation)
        return None

    def function_signature(fn, drop_first=False):
        code = fdict["__code__"].__get__(fn)
        defaults = fdict["__defaults__"].__get__(fn) or ()
        kwdefaults = fdict["__kwdefaults__"].__get__(fn) or {}
        annotations = {}
        if _sys.version_info < (3, 14):
            annotations = fdict["__annotations__"].__get__(fn) or {}
            if type(annotations) is not dict:
                annotations = {}
        names = code.co_varnames
        npos, nposonly, nkw = code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount
        flags = code.co_flags

        def param(name, default_index=None, kwonly=False):
            text = name
            note = annotation_text(annotations.get(name)) if name in annotations else None
            if note:
                text += ": " + note
            has_default, default = False, None
            if kwonly and name in kwdefaults:
                has_default, default = True, kwdefaults[name]
            elif default_index is not None and default_index >= 0:
                has_default, default = True, defaults[default_index]
            if has_default:
                shown = small_value(default)
                text += (" = " if note else "=") + (clip(shown, 30) if shown else "...")
            return text

        parts = []
        first_default = npos - len(defaults)
        for i in range(npos):
            parts.append(param(names[i], i - first_default if i >= first_default else None))
            if nposonly and i == nposonly - 1:
                parts.append("/")
        rest = npos + nkw
        if flags & 0x04:
            parts.append("*" + names[rest])
            rest += 1
        elif nkw:
            parts.append("*")
        for i in range(npos, npos + nkw):
            parts.append(param(names[i], kwonly=True))
        if flags & 0x08:
            parts.append("**" + names[rest])
        if drop_first and parts and parts[0] not in ("/", "*") and not parts[0].startswith("*"):
            parts = parts[1:]
            if parts and parts[0] == "/":
                parts = parts[1:]
        text = "(" + ", ".join(parts) + ")"
        if "return" in annotations:
            note = annotation_text(annotations["return"])
            if note:
                text += " -> " + note
        if flags & 0x80 or flags & 0x200:  # coroutine / async generator
            text = "async " + text
        return clip(text, 160)

    def class_signature(cls):
        for meta in type_mro(type(cls)):  # a metaclass with its own __call__: unknown
            if meta is type:
                break
            if "__call__" in type_ns(meta):
                return None
        for klass in type_mro(cls):
            if klass is object:
                return "()"
            attrs = type_ns(klass)
            for special in ("__init__", "__new__"):
                if special in attrs:
                    value = attrs[special]
                    if type(value) is staticmethod:
                        value = staticmethod.__dict__["__func__"].__get__(value)
                    if type(value) is function:
                        text = function_signature(value, drop_first=True)
                        return text[:-8] if text.endswith(" -> None") else text
                    return None
        return None

    def describe(name, obj):
        kind = type(obj)
        entry = {"name": clip(name, 60), "type": type_label(kind)}
        if _time.monotonic() - start > budget_s:
            return entry
        if sub(kind, _types.ModuleType):
            entry["type"] = "module"
            mod = module_dict(obj).get("__name__")
            entry["module"] = clip(mod, 80) if type(mod) is str else clip(name, 80)
        elif np_ndarray is not None and sub(kind, np_ndarray):
            attrs = type_ns(np_ndarray)
            entry["shape"] = clip(str(attrs["shape"].__get__(obj)), 60)
            entry["dtype"] = dtype_text(attrs["dtype"].__get__(obj))
        elif torch_tensor is not None and (kind is torch_tensor or kind is torch_param):
            entry["shape"] = clip(str(tuple(obj.shape)), 60)
            entry["dtype"] = dtype_text(obj.dtype)
        elif pd_frame is not None and sub(kind, pd_frame) and from_pandas(kind):
            rows, ncols = obj.shape
            entry["shape"] = str((int(rows), int(ncols)))
            columns = list(obj.columns[:max_columns])
            dtypes = list(obj.dtypes.iloc[:max_columns])
            entry["columns"] = [[label(c), dtype_text(d)] for c, d in zip(columns, dtypes)]
        elif pd_series is not None and sub(kind, pd_series) and from_pandas(kind):
            entry["length"] = int(obj.shape[0])
            entry["dtype"] = dtype_text(obj.dtype)
            if obj.name is not None:
                entry["value"] = label(obj.name)
        elif pd_index is not None and sub(kind, pd_index) and from_pandas(kind):
            entry["length"] = int(obj.shape[0])
            entry["dtype"] = dtype_text(obj.dtype)
        elif np_generic is not None and sub(kind, np_generic):
            if (np_number is not None and sub(kind, np_number)) or kind is np_bool:
                entry["value"] = clip(str(obj), 40)
        elif kind is function:
            entry["type"] = "function"
            entry["signature"] = function_signature(obj)
        elif kind is _types.MethodType:
            entry["type"] = "method"
            inner = _types.MethodType.__dict__["__func__"].__get__(obj)
            if type(inner) is function:
                entry["signature"] = function_signature(inner, drop_first=True)
        elif kind is _types.BuiltinFunctionType:
            entry["type"] = "function"
            text = kind.__dict__["__text_signature__"].__get__(obj)
            if type(text) is str:
                text = text.replace("($module, ", "(").replace("($module)", "()")
                entry["signature"] = clip(text.replace("($self, ", "("), 160)
        elif sub(kind, type):
            entry["type"] = "class"
            signature = class_signature(obj)
            if signature is not None:
                entry["signature"] = signature
        else:
            for base in (str, bytes, bytearray, list, tuple, dict, set, frozenset):
                if sub(kind, base):
                    entry["length"] = base.__len__(obj)
                    break
            value = small_value(obj)
            if value is not None:
                entry["value"] = clip(value, 70)
        return entry

    hidden_is_dict = type(hidden) is dict
    names = []
    for name in list(ns):
        if type(name) is not str or name.startswith("_") or name in skip:
            continue
        if hidden_is_dict:
            if name in hidden and hidden[name] is ns.get(name):
                continue
        elif name in hidden:
            continue
        names.append(name)
    out = []
    for name in names[-max_vars:] if max_vars > 0 else []:  # the most recent are most relevant
        try:
            out.append(describe(name, ns[name]))
        except Exception:  # an odd object, or a name deleted meanwhile: the name still counts
            out.append({"name": clip(name, 60), "type": "object"})
    return _json.dumps(out)


# The source sent to kernels, and the expression the server evaluates there. Everything lives
# inside a lambda and a fresh dict, so no name reaches the user's namespace; the hidden names are
# IPython's `user_ns_hidden` (a name is hidden while it still holds the value IPython put there).
try:
    KERNEL_SNIPPET = inspect.getsource(_kernel_side)
except (OSError, TypeError):  # pragma: no cover - installed without sources
    KERNEL_SNIPPET = ""

KERNEL_EXPRESSION = (
    "(lambda g, ip: (exec({src!r}, g), g['_kernel_side']("
    "ip.user_ns if ip is not None else globals(), "
    "ip.user_ns_hidden if ip is not None else ()))[1])"
    "({{}}, getattr(__import__('sys').modules.get('IPython'), 'get_ipython', lambda: None)())"
).format(src=KERNEL_SNIPPET)
KERNEL_SNIPPET_EXPR = KERNEL_EXPRESSION


# --- server side -----------------------------------------------------------------------------


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

    def to_json(self) -> dict:
        data = {k: v for k, v in asdict(self).items() if v not in (None, ())}
        if self.columns:
            data["columns"] = [list(c) for c in self.columns]
        return data

    def describe(self) -> str:
        """One line, without the comment marker: `df: DataFrame shape=(100, 3) columns: ...`."""
        if self.module is not None:
            return f"{self.name}: module {self.module}"
        if self.signature is not None:
            return f"{self.name}: {self.type} {self.signature}"
        text = f"{self.name}: {self.type}"
        if self.shape:
            text += f" shape={self.shape}"
        if self.length is not None and (self.value is None or self.type in ("Series",)):
            text += f" len={self.length}"
        if self.dtype:
            text += f" dtype={self.dtype}"
        if self.value is not None:
            text += f" name={self.value}" if self.type == "Series" else f" = {self.value}"
        if self.columns:
            total = _column_count(self.shape) or len(self.columns)
            shown = []
            room = LINE_MAX_CHARS - len(text) - 40
            for c, d in self.columns:
                room -= len(c) + len(d) + 4
                if room < 0 and shown:
                    break
                shown.append(f"{c}({d})")
            text += " columns: " + ", ".join(shown)
            if total > len(shown):
                text += f", ... ({total} columns)"
        return text


def _column_count(shape: str | None) -> int | None:
    try:
        parsed = ast.literal_eval(shape) if shape else None
    except (ValueError, SyntaxError):
        return None
    if isinstance(parsed, tuple) and len(parsed) == 2 and isinstance(parsed[1], int):
        return parsed[1]
    return None


class InspectorError(ValueError):
    """The kernel's answer could not be read."""


def _ipython_hidden(ns: dict):
    """IPython's hidden names when `ns` is the running shell's namespace; else nothing."""
    ipython = sys.modules.get("IPython")
    get = getattr(ipython, "get_ipython", None)
    try:
        shell = get() if get is not None else None
    except Exception:  # pragma: no cover
        return ()
    if shell is not None and getattr(shell, "user_ns", None) is ns:
        return getattr(shell, "user_ns_hidden", ())
    return ()


def inspect_namespace(
    ns: dict, *, hidden=None, max_vars: int = MAX_VARIABLES, max_columns: int = MAX_COLUMNS
) -> list[Variable]:
    """In-process: the same inspection the server runs in kernels.

    `hidden` is a set of names to leave out, or IPython's `user_ns_hidden` dict (a name is left out
    while it still holds that value); by default the running IPython's, when `ns` is its namespace.
    """
    if hidden is None:
        hidden = _ipython_hidden(ns)
    return _parse(_kernel_side(ns, hidden, max_vars, max_columns))


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
        return _parse(payload)
    except InspectorError:
        raise
    except (KeyError, TypeError, ValueError, SyntaxError, AttributeError, MemoryError,
            RecursionError) as exc:
        raise InspectorError(f"unreadable inspector reply: {type(exc).__name__}: {exc}") from None


def _parse(payload: str) -> list[Variable]:
    try:
        items = json.loads(payload)
    except ValueError as exc:
        raise InspectorError(f"not JSON: {exc}") from None
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
