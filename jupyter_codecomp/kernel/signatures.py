"""The probe's second file: call signatures and small values, rebuilt without running user code.

Like `inspector.py`, this is sent to kernels as text, imports nothing and runs in a fresh globals
dict with the interpreter's own builtins; the inspector receives its namespace as an argument.
A signature comes from the function's code object, read through `FunctionType`'s own slots
(never `inspect.signature`, which honours `__signature__`, `__wrapped__` and evaluates
annotations). Defaults are shown only when they are small builtin scalars, annotations only when
they are strings or classes and reading them evaluates nothing (functions without `__annotate__`,
that is before Python 3.14).
"""

FUNCTION = type(lambda: 0)
_TYPE = type.__dict__
type_qualname = _TYPE["__qualname__"].__get__
type_mro = _TYPE["__mro__"].__get__
type_dict = _TYPE["__dict__"].__get__
function_attr = {name: FUNCTION.__dict__[name].__get__
                 for name in ("__code__", "__defaults__", "__kwdefaults__", "__annotations__")}
LAZY_ANNOTATIONS = "__annotate__" in FUNCTION.__dict__
# The builtin scalars whose repr is shown, and the longest shown (None: any).
SCALARS = ((int, None), (float, None), (complex, None), (str, 60), (bytes, 60))


def clip(value, n):
    return value if len(value) <= n else value[: n - 1] + "\u2026"


def exact_str_keys(mapping):
    """The exact-`str` keys of an exact dict, read by iteration (no key's `__eq__` runs)."""
    return {k: v for k, v in dict.items(mapping) if type(k) is str} if type(mapping) is dict else {}


def small_value(value):
    """repr of a small builtin scalar, through the builtin's own method (a subclass's override
    never runs); None when not shown."""
    kind = type(value)
    if value is None or kind is bool:
        return repr(value)
    for klass in type_mro(kind):
        for base, limit in SCALARS:
            if klass is not base:
                continue
            if base is int and int.bit_length(value) > 64:
                return None
            if limit is not None and base.__len__(value) > limit:
                return None
            return base.__repr__(value)
    return None


def annotation_text(annotation):
    if type(annotation) is str:
        return clip(annotation, 40)
    for klass in type_mro(type(annotation)):
        if klass is type:
            name = type_qualname(annotation)
            return clip(name, 40) if type(name) is str else None
    return None


def parameter(name, annotations, default):
    """`name: note = default`; `default` is a 1-tuple when there is one."""
    note = annotation_text(annotations[name]) if name in annotations else None
    shown = name + ": " + note if note else name
    if default:
        value = small_value(default[0])
        shown += (" = " if note else "=") + (clip(value, 30) if value else "...")
    return shown


def function_signature(fn, drop_first=False):
    code = function_attr["__code__"](fn)
    defaults = function_attr["__defaults__"](fn)
    defaults = defaults if type(defaults) is tuple else ()
    kwdefaults = exact_str_keys(function_attr["__kwdefaults__"](fn))
    annotations = {} if LAZY_ANNOTATIONS else exact_str_keys(function_attr["__annotations__"](fn))
    names, flags = code.co_varnames, code.co_flags
    npos, nposonly, nkw = code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount
    parts = []
    first_default = npos - len(defaults)
    for i in range(npos):
        default = (defaults[i - first_default],) if i >= first_default else ()
        parts.append(parameter(names[i], annotations, default))
        if nposonly and i == nposonly - 1:
            parts.append("/")
    rest = npos + nkw
    if flags & 0x04:  # *args
        parts.append("*" + names[rest])
        rest += 1
    elif nkw:
        parts.append("*")
    for name in names[npos:npos + nkw]:
        default = (kwdefaults[name],) if name in kwdefaults else ()
        parts.append(parameter(name, annotations, default))
    if flags & 0x08:  # **kwargs
        parts.append("**" + names[rest])
    if drop_first and parts and not parts[0].startswith(("/", "*")):
        parts = parts[2:] if parts[1:2] == ["/"] else parts[1:]
    shown = "(" + ", ".join(parts) + ")"
    note = annotation_text(annotations["return"]) if "return" in annotations else None
    if note:
        shown += " -> " + note
    if flags & 0x80 or flags & 0x200:  # coroutine, async generator
        shown = "async " + shown
    return clip(shown, 160)


def class_signature(cls):
    """What calling the class takes: its `__init__` or `__new__`, the first in the MRO."""
    for meta in type_mro(type(cls)):  # a metaclass with its own __call__: unknown
        if meta is type:
            break
        if "__call__" in type_dict(meta):
            return None
    for klass in type_mro(cls):
        if klass is object:
            return "()"
        attrs = type_dict(klass)  # a class's own dict: its keys are exact str
        for special in ("__init__", "__new__"):
            if special in attrs:
                value = attrs[special]
                if type(value) is staticmethod:
                    value = staticmethod.__dict__["__func__"].__get__(value)
                if type(value) is not FUNCTION:
                    return None
                shown = function_signature(value, drop_first=True)
                return shown[:-8] if shown.endswith(" -> None") else shown
    return None
