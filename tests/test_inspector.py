"""The probe, in-process: what it lists, that it never runs user code, its bounds, and the kernel
expression's hygiene. (Reply parsing and the prompt block: test_variables.py; the probe in a real
kernel: test_hostile_objects.py, test_kernel_variables.py.)"""

from __future__ import annotations

import ast
import dis
import json
import math
import sys
import time
import types

import numpy as np
import pandas as pd
import pytest

from jupyter_codecomp.kernel import inspector, signatures
from jupyter_codecomp.kernel.variables import (
    KERNEL_EXPRESSION,
    PROBE_SOURCE,
    SIGNATURES_SOURCE,
    InspectorError,
    Variable,
    format_variables,
    inspect_namespace,
    parse_variables,
)

TOUCHED: list[str] = []


class Trap:
    """Every way of looking at it that could run its code records the fact."""

    @property
    def boom(self):
        TOUCHED.append("property")
        raise RuntimeError("touched")

    @property
    def slow(self):
        TOUCHED.append("slow")
        time.sleep(10)

    @property
    def __class__(self):
        TOUCHED.append("__class__")
        return Trap

    def __getattr__(self, name):
        TOUCHED.append(f"getattr {name}")
        raise AttributeError(name)

    def __repr__(self):
        TOUCHED.append("repr")
        return "Trap()"

    def __str__(self):
        TOUCHED.append("str")
        return "Trap"

    def __len__(self):
        TOUCHED.append("len")
        return 1


class Sleeper:
    @property
    def shape(self):  # looks like an array; reading it would hang
        TOUCHED.append("shape")
        time.sleep(10)
        return (1,)

    def __getattribute__(self, name):
        TOUCHED.append(f"getattribute {name}")
        time.sleep(10)


class SneakyList(list):
    def __len__(self):
        TOUCHED.append("list len")
        raise RuntimeError

    def __repr__(self):
        TOUCHED.append("list repr")
        return "[]"


class Meta(type):
    def __eq__(cls, other):
        TOUCHED.append("meta eq")
        return False

    __hash__ = type.__hash__

    def __getattribute__(cls, name):
        if name not in ("__dict__", "__mro__"):
            TOUCHED.append(f"meta getattribute {name}")
        return super().__getattribute__(name)


class Weird(metaclass=Meta):
    def __init__(self, a, b=3):
        pass


class Label:
    def __str__(self):
        TOUCHED.append("label str")
        return "label"

    __hash__ = object.__hash__


for _cls in (Trap, Sleeper, SneakyList, Meta, Weird, Label):
    _cls.__module__ = "__main__"  # as if defined in a notebook


def load(path, sep=",", *, rows=None, **options):
    return path


@pytest.fixture(autouse=True)
def clear_touched():
    TOUCHED.clear()
    yield
    TOUCHED.clear()


def by_name(variables):
    return {v.name: v for v in variables}


def test_lists_data_science_namespace():
    import numpy as numpy_alias

    df = pd.DataFrame({
        "date": pd.to_datetime(["2024-01-01", "2024-01-02"]),
        "sales": [1.0, 2.5],
        "region": ["n", "s"],
    })
    ns = {
        "__builtins__": __builtins__, "_": 3, "_i1": "x", "In": [], "Out": {},
        "get_ipython": lambda: None, "exit": None, "quit": None,
        "pd": pd, "np": numpy_alias, "math": math,
        "df": df, "X": np.zeros((100, 3), dtype=np.float32), "total": df["sales"],
        "load": load, "square": lambda x, y=2: x ** y, "Weird": Weird,
        "n": 42, "ratio": 0.5, "name": "sales", "flags": [1, 2, 3], "table": {"a": 1},
        "trap": Trap(), "sleeper": Sleeper(), "sneaky": SneakyList([1, 2]), "weird": Weird(1),
    }
    started = time.monotonic()
    variables = inspect_namespace(ns)
    assert time.monotonic() - started < 5  # nothing slept
    assert TOUCHED == []
    found = by_name(variables)
    assert list(found) == [k for k in ns if not k.startswith("_") and k not in (
        "In", "Out", "get_ipython", "exit", "quit")]  # definition order, hidden names left out

    assert found["df"].type == "DataFrame" and found["df"].shape == "(2, 3)"
    assert found["df"].columns == (("date", "datetime64[us]"), ("sales", "float64"),
                                   ("region", "str"))
    assert found["X"] == Variable("X", "ndarray", shape="(100, 3)", dtype="float32")
    assert found["total"].type == "Series" and found["total"].length == 2
    assert found["total"].dtype == "float64" and found["total"].value == "sales"
    assert found["np"] == Variable("np", "module", module="numpy")
    assert found["math"].module == "math"
    assert found["load"] == Variable(
        "load", "function", signature="(path, sep=',', *, rows=None, **options)")
    assert found["square"].signature == "(x, y=2)"
    assert found["Weird"] == Variable("Weird", "class", signature="(a, b=3)")  # no metaclass hook
    assert found["n"].value == "42" and found["ratio"].value == "0.5"
    assert found["name"].value == "'sales'" and found["name"].length == 5
    assert found["flags"].length == 3 and found["table"].length == 1
    # Listed by type only: nothing of theirs was read.
    assert found["trap"] == Variable("trap", "Trap")
    assert found["sleeper"] == Variable("sleeper", "Sleeper")
    assert found["weird"] == Variable("weird", "Weird")
    assert found["sneaky"] == Variable("sneaky", "SneakyList", length=2)  # list's own length


def test_signatures_and_classes():
    class Point:
        def __init__(self, x: int, y: float = 0.0) -> None:
            pass

    async def fetch(url, /, retries=3, *args, timeout=None):
        pass

    def big_default(x=list(range(1000)), y=Trap(), z=10 ** 100):  # noqa: B006 - on purpose
        pass

    found = by_name(inspect_namespace({
        "Point": Point, "fetch": fetch, "big_default": big_default, "len": len,
        "method": Point(1).__init__, "Frame": pd.DataFrame,
    }))
    assert found["Point"] == Variable("Point", "class", signature="(x: int, y: float = 0.0)")
    assert found["fetch"].signature == "async (url, /, retries=3, *args, timeout=None)"
    assert found["big_default"].signature == "(x=..., y=..., z=...)"
    assert found["len"].signature == "(obj, /)"
    assert found["method"].type == "method" and found["method"].signature.startswith("(x: int")
    assert found["Frame"].signature.startswith("(data=None, index")
    assert TOUCHED == []


def test_column_labels_and_dtypes_are_never_stringified_by_user_code():
    df = pd.DataFrame({Label(): [1], ("a", 1): [2.0], 7: ["x"]})
    wide = pd.DataFrame(np.zeros((2, 100)))
    found = by_name(inspect_namespace({"df": df, "wide": wide}))
    assert found["df"].columns == (("<Label>", "int64"), ("(a, 1)", "float64"), ("7", "str"))
    assert TOUCHED == []
    assert len(found["wide"].columns) == 30 and found["wide"].shape == "(2, 100)"
    line = format_variables([found["wide"]])
    assert line.endswith(", ... (100 columns)")


def test_hidden_names():
    value = object()
    ns = {"a": 1, "b": value, "c": 3}
    assert [v.name for v in inspect_namespace(ns, hidden={"a"})] == ["b", "c"]
    # IPython's user_ns_hidden: hidden while the name still holds the value IPython put there.
    assert [v.name for v in inspect_namespace(ns, hidden={"b": value, "c": 0})] == ["a", "c"]


def test_output_is_bounded():
    ns = {f"v{i}": i for i in range(10_000)}
    ns["huge"] = "x" * 10_000_000
    ns["blob"] = b"y" * 1_000_000
    ns["digits"] = 10 ** 10_000  # repr would be slow, or raise
    ns["many"] = list(range(100_000))
    ns["long_name_" + "n" * 500] = 1
    started = time.monotonic()
    variables = inspect_namespace(ns)
    assert time.monotonic() - started < 5
    assert len(variables) == 60 and variables[-1].name.startswith("long_name_")
    found = by_name(variables)
    assert found["huge"].value is None and found["huge"].length == 10_000_000
    assert found["blob"].value is None and found["digits"].value is None
    assert found["many"].length == 100_000 and found["v9999"].value == "9999"
    assert all(len(v.name) <= 60 for v in variables)
    assert len(inspect_namespace(ns, max_vars=5)) == 5
    block = format_variables(variables)
    assert len(block) <= 1500 and block.endswith("# long_name_" + "n" * 49 + "\u2026: int = 1")
    assert len(format_variables(variables, max_chars=200)) <= 200


def probe(ns: dict, modules: dict | None = None, budget_s: float = 1.0) -> list[Variable]:
    """The probe in-process, seeing `modules` as sys.modules (the real sys is left alone)."""
    system = types.ModuleType("sys")
    system.modules = dict(sys.modules) if modules is None else modules
    return parse_variables(
        inspector.namespace_json(ns, (), system, vars(signatures), 60, 30, budget_s))


class LoudFloat(np.float64):
    __module__ = "numpy"

    def __str__(self):
        TOUCHED.append("scalar str")
        return "x"


class LoudFrame(pd.DataFrame):
    __module__ = "pandas.core.frame"

    @property
    def shape(self):
        TOUCHED.append("frame shape")
        return (1, 1)


def test_library_classes_by_exact_identity():
    found = by_name(probe({
        "price": np.float64(2.5), "loud": LoudFloat(1.5), "flag": np.bool_(True),
        "frame": LoudFrame({"a": [1]}), "shaped": np.zeros((1, 2)).view(ShapedArray),
    }))
    assert found["price"] == Variable("price", "float64", value="2.5")
    assert found["flag"].value == "True"
    # A subclass is not numpy's: its value through float's own repr (a builtin base), not __str__.
    assert found["loud"] == Variable("loud", "LoudFloat", value="1.5")
    assert found["frame"] == Variable("frame", "LoudFrame")
    assert found["shaped"].shape == "(1, 2)"  # ndarray's own slots, whatever the subclass
    assert TOUCHED == []


class FakeFrame:
    __module__ = "__main__"

    @property
    def shape(self):
        TOUCHED.append("fake shape")


class NumpyModule(types.ModuleType):
    def __getattr__(self, name):
        TOUCHED.append(f"numpy {name}")


class ShapedArray(np.ndarray):
    __module__ = "__main__"

    @property
    def shape(self):
        TOUCHED.append("array shape")
        return (1,)


def test_fake_library_modules_are_not_trusted():
    fake_pandas = types.ModuleType("pandas")
    fake_pandas.DataFrame = FakeFrame
    modules = {**sys.modules, "pandas": fake_pandas, "numpy": NumpyModule("numpy")}
    found = by_name(probe({"df": FakeFrame(), "real": pd.DataFrame({"a": [1]}),
                           "arr": np.zeros(2)}, modules))
    assert found["df"] == Variable("df", "FakeFrame") and TOUCHED == []
    assert found["real"] == Variable("real", "DataFrame")  # pandas unknown: listed by type
    assert found["arr"] == Variable("arr", "ndarray")


def test_hostile_keys_and_odd_names():
    class Key:
        def __eq__(self, other):
            TOUCHED.append("key eq")
            return False

        def __hash__(self):
            TOUCHED.append("key hash")
            return hash("x")

    ns = {"x": 1, "\ud800y": 2, "with space": 3}
    ns[Key()] = 4  # hashes once, here
    TOUCHED.clear()
    names = [v.name for v in probe(ns)]
    assert names == ["x", "\ufffdy", "with space"] and TOUCHED == []


def test_time_budget_lists_the_rest_by_type():
    found = probe({"df": pd.DataFrame({"a": [1]}), "n": 3}, budget_s=-1.0)
    assert found == [Variable("df", "DataFrame"), Variable("n", "int")]


def test_a_failing_probe_answers_with_an_error_not_a_traceback():
    # IPython's verbose tracebacks repr each frame's locals: the probe must never raise.
    answer = inspector.kernel_json({"x": 1}, object(), vars(signatures), 60, 30, 1.0)
    with pytest.raises(InspectorError, match="the probe failed: TypeError"):
        parse_variables(answer)


def test_kernel_expression_leaves_the_namespace_alone():
    ns = {"__builtins__": __builtins__, "df": pd.DataFrame({"a": [1]}), "trap": Trap()}
    before = dict(ns)
    result = eval(KERNEL_EXPRESSION, ns)  # what the kernel's user_expressions does
    assert ns == before and TOUCHED == []
    assert [v["name"] for v in json.loads(result)] == ["df", "trap"]


def test_the_probe_runs_from_its_text_alone():
    probe: dict = {"__builtins__": __builtins__}
    signatures: dict = {"__builtins__": __builtins__}
    exec(PROBE_SOURCE, probe)
    exec(SIGNATURES_SOURCE, signatures)
    assert json.loads(probe["namespace_json"]({"x": 1}, (), sys, signatures, 60, 30, 1.0)) == [
        {"name": "x", "type": "int", "value": "1"}]
    # No import statement: an import reads sys.modules, which user code can fill.
    for source in (PROBE_SOURCE, SIGNATURES_SOURCE):
        tree = ast.parse(source)
        assert not [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]


def _names_loaded(code) -> set[str]:
    """Every name a code object (and the code objects inside it) resolves from globals or
    builtins."""
    found = {i.argval for i in dis.get_instructions(code)
             if i.opname in ("LOAD_NAME", "LOAD_GLOBAL", "IMPORT_NAME",
                             "LOAD_FROM_DICT_OR_GLOBALS")}
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            found |= _names_loaded(const)
    return found


def test_kernel_expression_resolves_no_name():
    # The user's namespace is the expression's globals: any name could be theirs.
    assert _names_loaded(compile(KERNEL_EXPRESSION, "<expr>", "eval")) == set()
