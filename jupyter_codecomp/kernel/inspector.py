"""The probe: a kernel namespace described without running any of the user's code.

This file and `signatures.py` are sent to kernels as their text (`variables.py` builds the
expression). They import nothing and run in fresh globals dicts whose `__builtins__` is the
interpreter's own, so no name here resolves from the user's namespace or a rebound `__builtins__`
(an `import` would read `sys.modules`, which user code can fill). The namespace, `sys` and the
limits come in as arguments. The rules that keep user code from running:
- a class is `type(value)`, read through `type`'s own slots (`__mro__`, `__dict__`,
  `__qualname__`), never through attribute access a metaclass could intercept; `in` and `==` are
  never applied to user objects (a metaclass `__eq__` would run): identity only;
- a library class is trusted by identity: numpy's when compiled (non-heap, which Python code cannot
  make); pandas's when its module is a plain module whose `DataFrame.columns` has a compiled
  `__get__`, and then only for objects of pandas's exact classes whose arrays and axes are numpy's
  or pandas's own (a user ExtensionArray is never called). A module assembled from the real
  libraries' parts to impersonate them is out of reach, as is a patched `builtins` module;
- labels and values are shown only when their exact class is a builtin scalar; dicts user code can
  fill (the namespace, `sys.modules`, module and instance dicts) are read by iterating their items
  and keeping exact-`str` keys, so no key's `__eq__`/`__hash__` runs; lengths come from the
  builtin base (`list.__len__(obj)`).
Every step is bounded (the last `max_vars` names, `max_columns` columns, clipped text): nothing
waits. A time budget (when the real clock is found) lists the rest by type."""

HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: set on every class that Python code creates
SKIP = ("In", "Out", "exit", "quit", "get_ipython")

FUNCTION = type(lambda: 0)
METHOD = type((lambda: 0).__get__(0))
BUILTIN = type(len)
GETSET = type(type.__dict__["__dict__"])
SLOT = type(object.__dict__["__init__"])  # a compiled slot method (wrapper_descriptor)
_TYPE = type.__dict__
type_qualname = _TYPE["__qualname__"].__get__
type_module = _TYPE["__module__"].__get__
type_mro = _TYPE["__mro__"].__get__
MODULE = type_mro(type(len.__self__))[-2]  # ModuleType, even if the builtins module's class moved
type_dict = _TYPE["__dict__"].__get__
type_flags = _TYPE["__flags__"].__get__
module_dict = MODULE.__dict__["__dict__"].__get__
builtin_self = BUILTIN.__dict__["__self__"].__get__
ESCAPES = {i: f"\\u{i:04x}" for i in range(32)}
ESCAPES.update({34: '\\"', 92: "\\\\"})
ESCAPES.update({i: "\ufffd" for i in range(0xD800, 0xE000)})  # lone surrogates are not UTF-8


# --- reading without hooks -------------------------------------------------------------------


def one_of(kind, classes):
    """`kind in classes` by identity: `in` would call a metaclass's `__eq__`."""
    return any(klass is kind for klass in classes)


def sub(kind, base):
    """issubclass without `__subclasscheck__`: identity over the MRO."""
    return one_of(base, type_mro(kind))


def compiled_class(value):
    """`value` when it is a class made by compiled code (Python code cannot make one), else None."""
    return value if sub(type(value), type) and not type_flags(value) & HEAPTYPE else None


def text(value):  # an exact `str` copy of a str (a subclass's methods never run), else None
    return str.__str__(value) if sub(type(value), str) else None


def clip(value, n=80):
    return value if len(value) <= n else value[: n - 1] + "\u2026"


def str_items(mapping):
    """A plain dict of the exact-`str` keys of a dict, read by iteration: no key is hashed or
    compared, so a key object's `__eq__`/`__hash__` never runs."""
    if not sub(type(mapping), dict):
        return {}
    return {key: value for key, value in dict.items(mapping) if type(key) is str}


def instance_dict(obj):
    """The instance's `__dict__` through the compiled descriptor of its class, or {}."""
    for klass in type_mro(type(obj)):
        descriptor = type_dict(klass).get("__dict__")
        if descriptor is not None:
            return str_items(descriptor.__get__(obj)) if type(descriptor) is GETSET else {}
    return {}


def exports(modules, name):
    """A module's globals when `modules[name]` is a plain module object (not a subclass)."""
    module = modules.get(name)
    return str_items(module_dict(module)) if type(module) is MODULE else {}


def to_json(value):
    kind = type(value)
    if kind is str:
        return '"' + str.translate(value, ESCAPES) + '"'
    if kind is int:
        return int.__repr__(value)
    if kind is list:
        return "[" + ",".join([to_json(item) for item in value]) + "]"
    if kind is dict:
        return "{" + ",".join([to_json(k) + ":" + to_json(v) for k, v in value.items()]) + "}"
    return "null"


# --- the libraries the probe trusts ----------------------------------------------------------


def numpy_classes(modules):
    names = exports(modules, "numpy")
    ndarray, generic = compiled_class(names.get("ndarray")), compiled_class(names.get("generic"))
    dtype = compiled_class(names.get("dtype"))
    if ndarray is None or generic is None or dtype is None:
        return {}
    number = compiled_class(names.get("number"))
    scalars = [v for v in names.values() if compiled_class(v) is not None and sub(v, generic)]
    numeric = [k for k in scalars if (number is not None and sub(k, number)) or
               type_qualname(k) == "bool"]
    dtypes = [v for v in exports(modules, "numpy.dtypes").values()
              if compiled_class(v) is not None and sub(v, dtype)]
    return {"ndarray": ndarray, "dtype": dtype, "scalars": scalars, "numeric": numeric,
            "dtypes": dtypes}


def pandas_classes(modules, ndarray):
    names = exports(modules, "pandas")
    frame = names.get("DataFrame")
    if ndarray is None or not sub(type(frame), type):
        return {}
    axis = type_dict(frame).get("columns")  # pandas's AxisProperty: a compiled `__get__`
    if type(type_dict(type(axis)).get("__get__")) is not SLOT:
        return {}
    managers = exports(modules, "pandas.core.internals.managers")
    arrays = [v for v in exports(modules, "pandas.arrays").values() if sub(type(v), type)]
    return {
        "DataFrame": frame, "Series": names.get("Series"),
        "indexes": [v for k, v in names.items() if k.endswith("Index") and sub(type(v), type)],
        "RangeIndex": names.get("RangeIndex"), "MultiIndex": names.get("MultiIndex"),
        "Categorical": names.get("Categorical"),
        "managers": [managers.get("BlockManager"), managers.get("SingleBlockManager")],
        "arrays": [ndarray] + arrays,
        "dtypes": [v for k, v in names.items() if k.endswith("Dtype") and sub(type(v), type)
                   and k not in ("DatetimeTZDtype", "SparseDtype", "ArrowDtype")],
        "DatetimeTZDtype": names.get("DatetimeTZDtype"),
        "timezones": [c for c in (exports(modules, "datetime").get("timezone"),
                                  exports(modules, "zoneinfo").get("ZoneInfo"))
                      if compiled_class(c) is not None],
    }


def torch_classes(modules):
    base = compiled_class(exports(modules, "torch._C").get("TensorBase"))
    names = exports(modules, "torch")
    tensor, parameter = names.get("Tensor"), exports(modules, "torch.nn.parameter").get("Parameter")
    exact = [] if base is None else [
        k for k in (tensor, parameter) if sub(type(k), type) and sub(k, base)]
    return {"base": base, "exact": exact} if exact else {}


def library_classes(system):
    modules = str_items(str_items(module_dict(system)).get("modules"))
    numpy = numpy_classes(modules)
    pandas = pandas_classes(modules, numpy.get("ndarray"))
    return {"numpy": numpy, "pandas": pandas, "torch": torch_classes(modules)}


def array_ok(array, pandas, depth=0):
    kind = type(array)
    if kind is pandas["Categorical"]:
        return depth < 2 and index_ok(array.categories, pandas, depth + 1)
    return one_of(kind, pandas["arrays"])


def index_ok(index, pandas, depth=0):
    kind = type(index)
    if not one_of(kind, pandas["indexes"]) or depth > 2:
        return False
    if kind is pandas["RangeIndex"]:
        return True
    attrs = instance_dict(index)
    if kind is pandas["MultiIndex"]:
        levels = attrs.get("_levels")
        return sub(type(levels), list) and all(
            index_ok(level, pandas, depth + 1) for level in list.__iter__(levels))
    return array_ok(attrs.get("_data"), pandas, depth)


def pandas_parts_ok(obj, pandas):
    """Every array and axis of a DataFrame or Series is numpy's or pandas's own."""
    manager = instance_dict(obj).get("_mgr")
    if not one_of(type(manager), pandas["managers"]):
        return False
    return (all(array_ok(a, pandas) for a in manager.arrays)
            and all(index_ok(axis, pandas) for axis in manager.axes))


def dtype_text(dtype, libraries):
    kind = type(dtype)
    numpy, pandas = libraries["numpy"], libraries["pandas"]
    if numpy and one_of(kind, numpy["dtypes"]):
        if type_dict(numpy["dtype"])["names"].__get__(dtype) is None:  # not a record dtype
            return clip(str(dtype), 40)
    elif pandas and one_of(kind, pandas["dtypes"]):
        return clip(str(dtype), 40)
    elif pandas and kind is pandas["DatetimeTZDtype"]:
        zone = instance_dict(dtype).get("_tz")
        shown = str(zone) if one_of(type(zone), pandas["timezones"]) else "tz"
        return clip("datetime64[" + (text(instance_dict(dtype).get("_unit")) or "ns") + ", "
                    + shown + "]", 40)
    return type_label(kind)


def label(value):
    """A column or series name as text, only when its exact class is a builtin scalar."""
    kind = type(value)
    if kind is str:
        return clip(value, 40)
    if kind is bool or value is None or kind is float:
        return repr(value)
    if kind is int:
        return int.__repr__(value) if int.bit_length(value) <= 64 else "<int>"
    if kind is tuple and len(value) <= 4:
        return clip("(" + ", ".join([label(v) for v in value]) + ")", 40)
    return "<" + type_label(kind) + ">"


def describe_pandas(entry, obj, kind, libraries, max_columns):
    pandas = libraries["pandas"]
    if one_of(kind, pandas["indexes"]):
        if index_ok(obj, pandas):
            entry["length"] = len(obj)
            entry["dtype"] = dtype_text(obj.dtype, libraries)
        return
    if not pandas_parts_ok(obj, pandas):
        return
    if kind is pandas["DataFrame"]:
        rows, ncols = obj.shape
        entry["shape"] = "(" + int.__repr__(rows) + ", " + int.__repr__(ncols) + ")"
        labels = list(obj.columns[:max_columns])
        dtypes = list(obj.dtypes.iloc[:max_columns])
        shown = {}  # one text per distinct dtype object: numpy's str() is Python code
        entry["columns"] = [[label(c), shown[id(d)] if id(d) in shown else
                             shown.setdefault(id(d), dtype_text(d, libraries))]
                            for c, d in zip(labels, dtypes)]
    else:
        entry["length"] = len(obj)
        entry["dtype"] = dtype_text(obj.dtype, libraries)
        name = instance_dict(obj).get("_name")
        if name is not None:
            entry["value"] = label(name)


def type_label(kind):
    qualname = text(type_qualname(kind)) or "object"
    module = text(type_module(kind)) or ""
    top = module.split(".")[0]
    if top in ("builtins", "__main__", "numpy", "pandas", "") or module.startswith("__"):
        return clip(qualname, 60)
    return clip(top + "." + qualname, 60)


def describe_other(entry, obj, kind, signatures):
    if sub(kind, MODULE):
        entry["type"] = "module"
        module = text(str_items(module_dict(obj)).get("__name__"))
        entry["module"] = clip(module or entry["name"], 80)
    elif kind is FUNCTION:
        entry["type"] = "function"
        entry["signature"] = signatures["function_signature"](obj)
    elif kind is METHOD:
        entry["type"] = "method"
        inner = METHOD.__dict__["__func__"].__get__(obj)
        if type(inner) is FUNCTION:
            entry["signature"] = signatures["function_signature"](inner, drop_first=True)
    elif kind is BUILTIN:
        entry["type"] = "function"
        shown = text(BUILTIN.__dict__["__text_signature__"].__get__(obj))
        if shown:
            shown = shown.replace("($module, ", "(").replace("($module)", "()")
            entry["signature"] = clip(shown.replace("($self, ", "("), 160)
    elif sub(kind, type):
        entry["type"] = "class"
        signature = signatures["class_signature"](obj)
        if signature is not None:
            entry["signature"] = signature
    else:
        for base in (str, bytes, bytearray, list, tuple, dict, set, frozenset):
            if sub(kind, base):
                entry["length"] = base.__len__(obj)
                break
        value = signatures["small_value"](obj)
        if value is not None:
            entry["value"] = clip(value, 70)


def describe(name, obj, libraries, max_columns):
    kind = type(obj)
    entry = {"name": clip(name, 60), "type": type_label(kind)}
    numpy, pandas, torch = libraries["numpy"], libraries["pandas"], libraries["torch"]
    if numpy and sub(kind, numpy["ndarray"]):  # subclasses too: read through ndarray's own slots
        attrs = type_dict(numpy["ndarray"])
        entry["shape"] = clip(tuple.__repr__(attrs["shape"].__get__(obj)), 60)
        entry["dtype"] = dtype_text(attrs["dtype"].__get__(obj), libraries)
    elif numpy and one_of(kind, numpy["scalars"]):
        if one_of(kind, numpy["numeric"]):
            entry["value"] = clip(str(obj), 40)
    elif pandas and (kind is pandas["DataFrame"] or kind is pandas["Series"]
                     or one_of(kind, pandas["indexes"])):
        describe_pandas(entry, obj, kind, libraries, max_columns)
    elif torch and one_of(kind, torch["exact"]):
        attrs = type_dict(torch["base"])
        entry["shape"] = clip(repr(tuple(attrs["shape"].__get__(obj))), 60)
        entry["dtype"] = clip(str(attrs["dtype"].__get__(obj)), 40)
    else:
        describe_other(entry, obj, kind, libraries["signatures"])
    return entry


# --- entry points ----------------------------------------------------------------------------


def recent_names(ns, hidden, max_vars):
    """The `max_vars` most recently bound public names, oldest first; the walk starts at the end,
    so a namespace of 100k names costs what its last few do."""
    names = []
    hidden_values = str_items(hidden) if sub(type(hidden), dict) else None
    hidden_names = hidden_values or {k: None for k in hidden if type(k) is str}
    for name, value in reversed(dict.items(ns)):
        if len(names) >= max_vars:
            break
        if type(name) is not str or name.startswith("_") or name in SKIP:
            continue
        if name in hidden_names and (hidden_values is None or hidden_values[name] is value):
            continue
        names.append((name, value))
    names.reverse()
    return names


def real_clock(system):
    """time.monotonic when `time` in sys.modules is the real module (its compiled function is
    bound to it); else None, and the caps alone bound the work."""
    module = str_items(str_items(module_dict(system)).get("modules")).get("time")
    clock = str_items(module_dict(module)).get("monotonic") if type(module) is MODULE else None
    return clock if type(clock) is BUILTIN and builtin_self(clock) is module else None


def namespace_json(ns, hidden, system, signatures, max_vars, max_columns, budget_s):
    """The variables of `ns` as a JSON list. `hidden`: names to leave out, or IPython's
    `user_ns_hidden` dict (a name is left out while it still holds the value IPython put there);
    `signatures`: the namespace of `signatures.py`, the probe's other file."""
    libraries = library_classes(system)
    libraries["signatures"] = signatures
    clock = real_clock(system)
    deadline = clock() + budget_s if clock is not None else None
    out = []
    for name, value in recent_names(ns, hidden, max_vars) if sub(type(ns), dict) else ():
        if deadline is not None and clock() > deadline:
            out.append({"name": clip(name, 60), "type": type_label(type(value))})
            continue
        try:
            out.append(describe(name, value, libraries, max_columns))
        except Exception:  # an odd object: the name still counts
            out.append({"name": clip(name, 60), "type": "object"})
    return to_json(out)


def shell_hidden(ns, system):
    """IPython's `user_ns_hidden`, found from the call stack: the frame that evaluates the
    expression (IPython's `user_expressions`) holds the shell as `self` and the namespace as
    `user_ns`. The shell's attribute is read from its instance dict, never through its class."""
    getframe = str_items(module_dict(system)).get("_getframe")
    if type(getframe) is not BUILTIN or builtin_self(getframe) is not system:
        return ()
    frame = getframe(1)
    while frame is not None and frame.f_globals is not ns:  # this probe's own frames
        frame = frame.f_back
    while frame is not None and frame.f_globals is ns:  # the expression's frames
        frame = frame.f_back
    if frame is None or frame.f_code.co_name != "user_expressions":
        return ()
    local = frame.f_locals  # a dict, or (Python >= 3.13) a compiled proxy
    local = str_items(local) if type(local) is dict else {
        k: local[k] for k in ("self", "user_ns") if k in local}
    hidden = instance_dict(local.get("self")).get("user_ns_hidden")
    return hidden if local.get("user_ns") is ns and sub(type(hidden), dict) else ()


def kernel_json(ns, system, signatures, max_vars, max_columns, budget_s):
    """What the kernel expression calls."""
    try:
        hidden = shell_hidden(ns, system)
    except Exception:  # not IPython, or an unexpected stack: only the fixed names are left out
        hidden = ()
    try:
        return namespace_json(ns, hidden, system, signatures, max_vars, max_columns, budget_s)
    except Exception as exc:  # an answer, not a traceback: IPython's verbose mode reprs locals
        return to_json({"error": type_label(type(exc))})
