"""Golden tests of post-processing: what goes in at the cursor, and when generation stops."""

import math

import pytest

from jupyter_codecomp.completion.fake_engine import FakeEngine
from jupyter_codecomp.completion.postprocess import NAIVE_RULES, Trimmer, resolve_mode

CASES = [
    # (prefix, suffix, mode, generated, expected text, complete)
    ("print(df.", ")", "line", "head())\nx = 1", "head()", True),
    ("print(df.", "", "line", "head())\nx = 1", "head())", True),
    ("x = ", "", "line", "train_test_split(X,\n    y, test_size=0.2)\nprint(x)",
     "train_test_split(X,\n    y, test_size=0.2)", True),
    ("x = ", "", "line", "foo(a, [1, 2", "foo", False),
    ("df.", "", "line", "groupby('a').sum().rename(columns={'a", "groupby('a').sum()", False),
    ('df["sa', '"]', "line", 'les"]', "les", True),
    ("a = ", " + 1", "line", "b + 1", "b", True),
    ('s = "', "", "line", 'hello ( world"\nx', 'hello ( world"', True),
    ("def f(x):\n    ", "", "block", "y = x + 1\n    return y\n\nprint(f(2))",
     "y = x + 1\n    return y", True),
    ("", "", "block", "for i in range(3):\n    print(i)\n\nx = 1",
     "for i in range(3):\n    print(i)", True),
    ("total = ", "\nprint(total)", "block", "sum(xs)\nprint(total)\n", "sum(xs)", True),
    ("x = 1  ", "", "line", "# a comment (with bracket\ny", "# a comment (with bracket", True),
    ("y = ", "", "line", "   \n", "", True),
    ('path = "C:', "", "line", "\\", "", False),  # an escape at the very end of the text
    ("for row in rows:\n    print(", ")", "line", "row)", "row", True),
    # The model leaves the code: a new cell marker, a markdown fence.
    ("x = 1\n", "", "line", "\n# %% [markdown]\n# Next", "", True),
    ("x = 1\n", "", "block", "y = 2\nprint(y)\n# %%\nz = 3", "y = 2\nprint(y)", True),
    ("", "", "line", "```python\nimport pandas as pd", "", True),
    # On an empty line: no leading blank line, no one-space "indent"; real indentation stays.
    ("x = 1\n", "", "line", "\n\ny = x + 1\n", "y = x + 1", True),
    ("", "\nprint(total)", "line", " total = sum(xs)\n", "total = sum(xs)", True),
    ("def f(x):\n", "", "block", "    return x\n\n", "    return x", True),
    # An empty line whose completion is the suffix's next line adds nothing.
    ("a = 1\n", "\nprint(a)", "line", "print(a)\n", "", True),
    # Brackets opened on earlier lines of the cell (the whole cell prefix is lexed).
    ("x = foo(a,\n    b", "", "line", ")\nprint(x)", ")", True),
    ("x = foo(a,\n    b", ")", "line", ")\nprint(x)", "", True),
    ("data = {\n    'a': [1,\n", "", "line", "    2]}\nprint(data)", "    2]}", True),
    ("s = '''a (\n", "", "line", "b'''\nx", "b'''", True),  # inside a string: no bracket
    ("x = 1)\ny = (", "", "line", "2)\n", "2)", True),  # a stray closer above is no bracket
    # A code line is not answered by a comment or a heading; the code after it is the answer.
    ("x = 1\n", "", "line", "# Integer array\ny = np.arange(3)\n", "y = np.arange(3)", True),
    ("x = 1\n", "", "line", "# ## A Dictionary\n\n# more\nd = {}\n", "d = {}", True),
    ("x = 1\n", "", "line", "# Integer array", "", False),
    ("x = 1\n# plot the ", "", "line", "mean\nplt.plot(x)", "mean", True),  # a comment line
    ("def f():\n", "", "block", "    # the sum\n    return 1\n\nf()", "    # the sum\n    return 1",
     True),
    ("for x in xs:\n    ", "", "line", "# one step\n    y = f(x)\n", "y = f(x)", True),
    # Inside a string the cell opened before the cursor, the line ends at the newline.
    ('text = """The river rose\nand the road', "", "line", " was gone.\n\n# %% [markdown]",
     " was gone.", True),
    ('text = """The river rose\nand the road', "", "line", " was gone", " was gone", False),
    # Scaffolding of the prompt is never returned.
    ("", "", "line", "# Variables in the running kernel:\n# df: DataFrame", "", True),
    ("x = 1\n", "", "line", "# note\n# %%\ny = 2", "", True),
]


@pytest.mark.parametrize("prefix,suffix,mode,generated,expected,complete", CASES)
def test_trim(prefix, suffix, mode, generated, expected, complete):
    trimmed = Trimmer(prefix, suffix, mode).trim(generated)
    assert trimmed.text == expected
    assert trimmed.complete is complete


def test_completion_never_repeats_suffix_mid_line():
    trimmer = Trimmer("value = compute(", ", axis=1)", "line")
    assert trimmer.trim("df, axis=1)").text == "df"


def test_a_stream_never_shows_what_may_still_be_cut():
    new_line = Trimmer("a = 1\n", "\nprint(a)", "line")
    assert new_line.shown("print(a)") == ""  # may yet be the suffix's next line, cut to nothing
    assert new_line.shown("print(b)") == "print(b)"
    assert new_line.trim("print(a)\n").text == ""
    assert Trimmer("x = 1\n", "", "line").shown("# %") == ""  # may yet be a cell marker
    assert Trimmer("x = 1\n", "", "line").shown("# total") == ""  # a comment is not the answer
    assert Trimmer("x = 1\n", "", "line").shown("# total\ntotal = 1") == "total = 1"
    block = Trimmer("def f(x):\n    ", "", "block")
    assert block.shown("y = x\n    ``") == "y = x"
    assert Trimmer("print(df.", ")", "line").shown("he") == "he"  # mid-line: shown at once


@pytest.mark.parametrize(
    "prefix,suffix,expected",
    [
        ("def f():\n", "", "block"),
        ("# plot the monthly mean\n", "", "block"),
        ("x = ", "", "line"),
        ("df.", ")", "line"),
        ('def g():\n    """Return 1."""\n', "", "block"),
        ("import numpy as np\n", "", "line"),
    ],
)
def test_auto_mode(prefix, suffix, expected):
    assert resolve_mode(prefix, suffix, "auto") == expected


def test_the_naive_rules_only_end_the_line():
    """The evaluation's baseline keeps what the product's rules cut: scaffolding, comments."""
    naive = Trimmer("x = 1\n", "", "line", NAIVE_RULES)
    assert naive.trim("# %% [markdown]\n# Next").text == "# %% [markdown]"
    assert naive.trim("# Integer array\ny = 2\n").text == "# Integer array"
    assert Trimmer("x = 1\n", "", "line").trim("# Integer array\ny = 2\n").text == "y = 2"


def test_kept_logprobs_cover_the_kept_text_and_the_token_after_it():
    from jupyter_codecomp.completion.postprocess import confidence, kept_logprobs

    tokens = ["# Int", " array", "\n", "y", " =", " 2", "\n", "z"]
    decode = lambda ids: "".join(tokens[i] for i in ids)  # noqa: E731
    logprobs = [-3.0, -2.0, -1.0, -0.1, -0.2, -0.3, -0.4, -5.0]
    raw = "".join(tokens)
    # The comment line was dropped: its tokens do not count; the newline after `y = 2` does.
    kept = kept_logprobs(raw, "y = 2", list(range(8)), logprobs, decode)
    assert kept == [-0.1, -0.2, -0.3, -0.4]
    assert confidence(kept) == pytest.approx(math.exp(-1.0), abs=1e-4)  # joint: the whole text
    assert confidence(kept, "mean") == pytest.approx(math.exp(-0.25), abs=1e-4)
    assert confidence([]) == 0.0 and kept_logprobs(raw, "", list(range(8)), logprobs, decode) == []
    assert confidence([-50.0]) == 0.0 and confidence([0.0]) == 1.0  # rounded to 4 places


class _Alternatives(FakeEngine):
    """Scripted alternatives: `texts[k]` is the k-th alternative (the fake engine has one)."""

    def __init__(self, texts):
        super().__init__(lambda prompt: texts[0])
        self.texts = texts
        self.asked: list[int] = []

    def generate(self, prompt_ids, *, criteria, heal="", n=1, **kwargs):
        self.asked.append(n)
        result = super().generate(prompt_ids, criteria=criteria, heal=heal, n=1, **kwargs)
        for text in self.texts[1:n]:
            ids = self.tokenizer.encode(heal + text, add_special_tokens=False).ids
            result.candidates.append(self._decode(ids, heal, criteria, None, None))
        return result


def _service(engine):
    from jupyter_codecomp.completion.fake_engine import FIM_TOKENS
    from jupyter_codecomp.completion.service import CompletionService
    from jupyter_codecomp.models.recipes import PromptFormat

    fmt = PromptFormat(fim=True, fim_prefix=FIM_TOKENS[0], fim_suffix=FIM_TOKENS[1],
                       fim_middle=FIM_TOKENS[2], stop_tokens=("<|endoftext|>",))
    return CompletionService(engine, fmt, "fake")


def test_an_alternative_replaces_a_first_one_cut_to_nothing():
    from jupyter_codecomp.completion.protocol import CompletionRequest
    from jupyter_codecomp.completion.service import FALLBACK_ALTERNATIVES

    # The first alternative repeats the line below (cut to nothing), the second is code.
    engine = _Alternatives(["print(a)\n", "b = a + 1\n", "c = 3\n"])
    request = CompletionRequest(prefix="a = 1\n", suffix="\nprint(a)", mode="line")
    reply = _service(engine).complete(request)
    assert [c.text for c in reply.completions] == ["b = a + 1"]
    assert engine.asked == [1, FALLBACK_ALTERNATIVES]
    # A first alternative with text: one generation, no fallback.
    engine = _Alternatives(["b = 2\n", "c = 3\n"])
    assert _service(engine).complete(request).completions[0].text == "b = 2"
    assert engine.asked == [1]
    # Nothing usable anywhere: an empty suggestion, not an error.
    engine = _Alternatives(["print(a)\n", "# %%\n"])
    assert [c.text for c in _service(engine).complete(request).completions] == [""]


def test_the_status_carries_the_default_confidence_threshold():
    """The frontend's minConfidence default is the server's, from one place."""
    from jupyter_codecomp.completion.service import ServiceLoader
    from jupyter_codecomp.completion.settings import ServiceSettings

    engine = _Alternatives(["b = 2\n"])
    settings = ServiceSettings(min_confidence=0.35)
    assert ServiceLoader.serving(_service(engine), settings).status()["min_confidence"] == 0.35
    assert 0.0 < ServiceSettings().min_confidence < 1.0
