"""The hostile-object catalogue: set-up code for a kernel namespace whose objects write a marker
file (through `_touch`, defined by PRELUDE) whenever something runs their code. Used by
tests/test_hostile_objects.py and benchmarks/hostile_probe.py."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Case:
    setup: str
    teardown: str = ""
    shown: tuple[str, ...] = ()  # names the inspection must still list


PRELUDE = """
import pathlib as _pathlib, sys as _sys, time as _time, types as _types
def _touch(tag):
    _pathlib.Path({marks!r}, tag).write_text(tag)
"""

TRAPS = """
class Trap:
    @property
    def shape(self):
        _touch('shape'); return (1,)
    @property
    def __class__(self):
        _touch('__class__'); return int
    def __getattr__(self, name):
        _touch('getattr-' + name)
    def __repr__(self):
        _touch('repr'); return 'Trap()'
    def __str__(self):
        _touch('str'); return 'Trap'
    def __format__(self, spec):
        _touch('format'); return 'Trap'
    def __len__(self):
        _touch('len'); return 1
    def __iter__(self):
        _touch('iter'); return iter(())
    def __eq__(self, other):
        _touch('eq'); return False
    def __hash__(self):
        _touch('hash'); return 1
    def __bool__(self):
        _touch('bool'); return True
"""

BUILTIN_NAMES = ("getattr", "exec", "eval", "compile", "__import__", "json", "type", "len",
                 "repr", "str", "int", "list", "dict", "tuple", "iter", "next", "globals",
                 "isinstance", "issubclass", "vars", "print", "open", "object", "sys", "time")

CASES = {
    # --- found in issue 12 ---
    "numpy scalar subclass whose __str__ writes a file": Case("""
import numpy as np
class Loud(np.float64):
    __module__ = 'numpy'
    def __str__(self):
        _touch('str'); return 'x'
    def __repr__(self):
        _touch('repr'); return 'x'
    def __format__(self, spec):
        _touch('format'); return 'x'
price = Loud(1.5)
""", shown=("price",)),
    "numpy scalar subclass whose __str__ sleeps 30 s": Case("""
import numpy as np
class Slow(np.int64):
    def __str__(self):
        _touch('str'); _time.sleep(30); return '1'
    __repr__ = __str__
count = Slow(3)
""", shown=("count",)),
    "DataFrame subclass claiming pandas.core.frame": Case("""
import pandas as pd
class Frame(pd.DataFrame):
    __module__ = 'pandas.core.frame'
    @property
    def shape(self):
        _touch('shape'); return (1, 1)
    @property
    def dtypes(self):
        _touch('dtypes')
    def __len__(self):
        _touch('len'); return 1
    def __getattr__(self, name):
        _touch('getattr-' + name)
df = Frame({'a': [1]})
Frame.columns = property(lambda self: _touch('columns'))
""", shown=("df",)),
    "real DataFrame whose column label claims numpy": Case(TRAPS + """
import pandas as pd
Trap.__module__ = 'numpy'
Trap.__qualname__ = 'float64'
label = Trap()
df = pd.DataFrame({label: [1], ('x', label): [2.0], 'plain': ['s']})
series = pd.Series([1.0], name=label)
index = pd.Index([label, Trap()])
multi = pd.DataFrame([[1]], columns=pd.MultiIndex.from_tuples([(label, 1)]))
""", shown=("df", "series", "index", "multi")),
    "user variables named like the builtins the inspector needs": Case(
        "".join(f"{name} = lambda *a, **k: _touch('{name}')\n" for name in BUILTIN_NAMES)
        + "getattr.__name__ = 'getattr'\n",
        teardown="".join(f"del {name}\n" for name in BUILTIN_NAMES),
        shown=tuple(n for n in BUILTIN_NAMES if not n.startswith("_"))),
    "__builtins__ rebound to a dict of traps": Case(
        "__builtins__ = {name: (lambda name: lambda *a, **k: _touch(name))(name)"
        " for name in dir(__builtins__)}\nvalue = 1\n",
        teardown="del __builtins__\n", shown=("value",)),
    "__builtins__ rebound to an object that traps every lookup": Case(TRAPS + """
__builtins__ = Trap()
value = 1
""", teardown="del __builtins__\n", shown=("value",)),
    # --- held before the fix, and must keep holding ---
    "properties, __getattr__, __getattribute__, __class__, __repr__, __len__": Case(TRAPS + """
class Sleeper:
    def __getattribute__(self, name):
        _touch('getattribute-' + name); _time.sleep(30)
trap, sleeper = Trap(), Sleeper()
""", shown=("trap", "sleeper")),
    "__eq__ and __hash__ traps, as values and as namespace keys": Case(TRAPS + """
globals()[Trap()] = 1
class Key(str):
    def __eq__(self, other):
        _touch('key-eq'); return False
    def __hash__(self):
        _touch('key-hash'); return hash('x')
globals()[Key('x')] = 2
x = Trap()
""", teardown=(  # IPython's %reset compares keys: the hostile ones go first
        "for _k in [k for k in globals() if type(k) is not str]:\n"
        "    dict.pop(globals(), _k)\n"), shown=("x",)),
    "builtin subclasses with their methods overridden": Case(TRAPS + """
class L(list):
    __len__ = Trap.__len__
    __repr__ = Trap.__repr__
    __iter__ = Trap.__iter__
class S(str):
    __len__ = Trap.__len__
    __repr__ = Trap.__repr__
    __str__ = Trap.__str__
class I(int):
    __repr__ = Trap.__repr__
    def bit_length(self):
        _touch('bit_length'); return 1
class D(dict):
    __len__ = Trap.__len__
    def items(self):
        _touch('items'); return []
    def get(self, *a):
        _touch('get')
items, name, number, table = L([1, 2]), S('abc'), I(5), D(a=1)
""", shown=("items", "name", "number", "table")),
    "metaclasses with __eq__, __getattribute__, __call__, __instancecheck__": Case("""
class Meta(type):
    def __eq__(cls, other):
        _touch('meta-eq'); return False
    def __hash__(cls):
        _touch('meta-hash'); return 1
    def __getattribute__(cls, name):
        _touch('meta-getattribute-' + name); return type.__getattribute__(cls, name)
    def __instancecheck__(cls, obj):
        _touch('instancecheck'); return True
    def __subclasscheck__(cls, sub):
        _touch('subclasscheck'); return True
    def __repr__(cls):
        _touch('meta-repr'); return 'Meta'
class Weird(metaclass=Meta):
    def __init__(self, a, b=3):
        pass
class Called(type):
    def __call__(cls, *a):
        _touch('meta-call')
class Made(metaclass=Called):
    pass
weird = object.__new__(Weird)
""", shown=("Weird", "Made", "weird")),
    "huge and recursive objects": Case("""
loop = []
loop.append(loop)
nest = {}
nest['self'] = nest
text = 'x' * 20_000_000
digits = 10 ** 100_000
many = list(range(1_000_000))
import numpy as np
big = np.zeros((2000, 2000))
""", shown=("loop", "nest", "text", "digits", "many", "big")),
    "100k names": Case("globals().update({f'v{i}': i for i in range(100_000)})\nlast = 1\n",
                       shown=("last",)),
    # --- new ones ---
    "__init_subclass__, __set_name__, __class_getitem__, descriptors on a metaclass": Case("""
class Base:
    def __init_subclass__(cls, **kw):
        _touch('init_subclass')
    def __class_getitem__(cls, item):
        _touch('class_getitem')
class Named:
    def __set_name__(self, owner, name):
        _touch('set_name')
    def __get__(self, obj, owner=None):
        _touch('get')
class MetaDescr(type):
    @property
    def __mro__(cls):
        _touch('mro'); return (object,)
    @property
    def __dict__(cls):
        _touch('meta-dict'); return {}
    @property
    def __module__(cls):
        _touch('meta-module'); return 'numpy'
class Child(Base, metaclass=MetaDescr):
    attr = Named()
""", shown=("Base", "Named", "Child")),
    "a class whose __dict__ and __slots__ are odd": Case("""
class OddDict:
    @property
    def __dict__(self):
        _touch('dict'); return {}
class Slotted:
    __slots__ = ('a',)
    def __getattr__(self, name):
        _touch('slot-' + name)
odd, slotted = OddDict(), Slotted()
""", shown=("odd", "slotted")),
    "functions with hostile defaults, annotations and wrappers": Case(TRAPS + """
import functools
class Defaults(tuple):
    def __getitem__(self, i):
        _touch('defaults'); return 1
class Annotations(dict):
    def __contains__(self, key):
        _touch('annotations'); return True
    def get(self, *a):
        _touch('annotations-get')
def f(a=Trap(), *, b=Trap()) -> Trap:
    pass
f.__defaults__ = Defaults((Trap(),))
f.__annotations__ = Annotations(a=Trap())
f.__signature__ = Trap()
f.__wrapped__ = Trap()
def g(x: 'Trap' = 1):
    pass
g.__kwdefaults__ = {Trap(): 1}
partial = functools.partial(f, 1)
method = Trap().__eq__
class WithInit:
    __init__ = Trap()
""", shown=("f", "g", "partial", "method", "WithInit")),
    "ndarray subclass and object arrays of traps": Case(TRAPS + """
import numpy as np
class Arr(np.ndarray):
    @property
    def shape(self):
        _touch('arr-shape'); return (1,)
    def __array_finalize__(self, obj):
        _touch('finalize')
arr = np.zeros(3).view(Arr)
cells = np.empty(2, dtype=object)
cells[0], cells[1] = Trap(), Trap()
matrix = np.matrix([[1, 2]])
""", shown=("arr", "cells", "matrix")),
    "pandas objects holding user ExtensionArrays, objects and timezones": Case(TRAPS + """
import datetime
import pandas as pd
from pandas.api.extensions import ExtensionArray, ExtensionDtype
class TrapDtype(ExtensionDtype):
    name, type, kind = 'trap', object, 'O'
    @classmethod
    def construct_array_type(cls):
        return TrapArray
    def __str__(self):
        _touch('dtype-str'); return 'trap'
class TrapArray(ExtensionArray):
    def __init__(self, values):
        self.values = list(values)
    @property
    def dtype(self):
        _touch('ea-dtype'); return TrapDtype()
    def __len__(self):
        _touch('ea-len'); return len(self.values)
    def __getitem__(self, i):
        _touch('ea-getitem'); return self.values[i]
    def isna(self):
        return [False] * len(self.values)
    def copy(self):
        return TrapArray(self.values)
    @classmethod
    def _from_sequence(cls, scalars, dtype=None, copy=False):
        return cls(scalars)
class Zone(datetime.tzinfo):
    def utcoffset(self, dt):
        return datetime.timedelta(0)
    def tzname(self, dt):
        _touch('tzname'); return 'Z'
    def __str__(self):
        _touch('tz-str'); return 'Z'
    __repr__ = __str__
custom = pd.DataFrame({'t': TrapArray([1, 2])})
on_ea = pd.Series(TrapArray([1]))
index_ea = pd.Index(TrapArray([1]))
objects = pd.DataFrame({'o': [Trap(), Trap()]})
zoned = pd.Series(pd.DatetimeIndex(['2024-01-01']).tz_localize(Zone()))
categories = pd.Series(pd.Categorical([Trap()]))
""", shown=("custom", "on_ea", "index_ea", "objects", "zoned", "categories")),
    "a module subclass named numpy in sys.modules": Case("""
_real_numpy = _sys.modules.get('numpy')
class FakeModule(_types.ModuleType):
    def __getattr__(self, name):
        _touch('module-getattr-' + name)
    @property
    def __dict__(self):
        _touch('module-dict'); return {}
_sys.modules['numpy'] = FakeModule('numpy')
import numpy as np
x = 1
""", teardown="_sys.modules['numpy'] = _real_numpy\n", shown=("np", "x")),
    "a fake pandas module in sys.modules": Case("""
_real_pandas = _sys.modules.get('pandas')
fake = _types.ModuleType('pandas')
class DataFrame:
    __module__ = 'pandas.core.frame'
    columns = property(lambda self: _touch('fake-columns'))
    shape = property(lambda self: _touch('fake-shape'))
    dtypes = property(lambda self: _touch('fake-dtypes'))
    _mgr = property(lambda self: _touch('fake-mgr'))
fake.DataFrame = fake.Series = DataFrame
_sys.modules['pandas'] = fake
import pandas as pd
df = pd.DataFrame()
""", teardown="_sys.modules['pandas'] = _real_pandas\n", shown=("pd", "df")),
    "a fake time module, and sys.modules replaced by a hostile dict": Case(TRAPS + """
_real_time, _real_modules = _sys.modules['time'], _sys.modules
fake_time = _types.ModuleType('time')
fake_time.monotonic = lambda: _touch('monotonic') or 0.0
_sys.modules['time'] = fake_time
class Modules(dict):  # IPython itself calls get(), so that one is left alone
    def items(self):
        _touch('modules-items'); return []
    def keys(self):
        _touch('modules-keys'); return []
    def values(self):
        _touch('modules-values'); return []
    def __iter__(self):
        _touch('modules-iter'); return iter(())
_sys.modules[Trap()] = 1
_sys.modules = Modules(_sys.modules)
value = 1
""", teardown=(
        "_sys.modules = _real_modules\n"
        "_sys.modules['time'] = _real_time\n"
        "for _k in [k for k in _sys.modules if type(k) is not str]:\n"
        "    dict.pop(_sys.modules, _k)\n"), shown=("value",)),
    "IPython's hidden names replaced by a hostile dict": Case(TRAPS + """
_shell = get_ipython()
_real_hidden = _shell.user_ns_hidden
class Hidden(dict):
    def __contains__(self, key):
        _touch('hidden-contains'); return False
    def __getitem__(self, key):
        _touch('hidden-getitem')
    def get(self, *a):
        _touch('hidden-get')
_shell.user_ns_hidden = Hidden(_real_hidden)
_shell.user_ns_hidden[Trap()] = 1
value = 1
""", teardown="_shell.user_ns_hidden = _real_hidden\n", shown=("value",)),
    "names that are not plain identifiers": Case("""
globals()['\\ud800lone'] = 1
globals()['with space'] = 2
globals()['é'] = 3
""", shown=("with space", "é")),
}
