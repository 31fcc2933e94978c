"""The server's half of kernel variables: the probe's reply parsed into `Variable`s (malformed
replies are an InspectorError, never evaluated) and the block of comment lines the prompt shows."""

from __future__ import annotations

import ast
import json

import pytest

from jupyter_codecomp.kernel.variables import (
    InspectorError,
    Variable,
    format_variables,
    variables_from_reply,
)


def test_format_variables():
    variables = [
        Variable("np", "module", module="numpy"),
        Variable("df", "DataFrame", shape="(100, 3)",
                 columns=(("date", "datetime64[ns]"), ("sales", "float64"), ("region", "object"))),
        Variable("f", "function", signature="(x, y=2)"),
        Variable("X", "ndarray", shape="(100, 3)", dtype="float64"),
        Variable("s", "Series", length=100, dtype="float64", value="sales"),
        Variable("n", "int", value="3"),
        Variable("names", "list", length=4),
        Variable("model", "sklearn.LinearRegression"),
    ]
    assert format_variables(variables) == (
        "# np: module numpy\n"
        "# df: DataFrame shape=(100, 3) columns: date(datetime64[ns]), sales(float64), "
        "region(object)\n"
        "# f: function (x, y=2)\n"
        "# X: ndarray shape=(100, 3) dtype=float64\n"
        "# s: Series len=100 dtype=float64 name=sales\n"
        "# n: int = 3\n"
        "# names: list len=4\n"
        "# model: sklearn.LinearRegression"
    )
    # Over budget, the oldest go first.
    assert format_variables(variables, max_chars=60) == (
        "# names: list len=4\n# model: sklearn.LinearRegression")
    assert format_variables([]) == ""


def reply_of(text: str, status: str = "ok") -> dict:
    return {"status": "ok", "user_expressions": {"codecomp": {
        "status": status, "data": {"text/plain": text}, "metadata": {}}}}


def test_variables_from_reply():
    payload = json.dumps([{"name": "df", "type": "DataFrame", "shape": "(2, 1)",
                           "columns": [["a", "int64"]], "unknown_field": 1}])
    variables = variables_from_reply(reply_of(repr(payload)))
    assert variables == [Variable("df", "DataFrame", shape="(2, 1)", columns=(("a", "int64"),))]
    assert ast.literal_eval(repr(payload)) == payload


@pytest.mark.parametrize("content", [
    {},
    {"status": "error", "ename": "X", "evalue": "y"},
    {"status": "ok", "user_expressions": {}},
    {"status": "ok", "user_expressions": {"codecomp": {"status": "error", "ename": "NameError",
                                                       "evalue": "x"}}},
    reply_of("__import__('os').system('true')"),  # never evaluated: not a literal
    reply_of("'not json'"),
    reply_of(repr('{"a": 1}')),
    reply_of(repr('[{"type": "int"}]')),
    reply_of(repr('[{"name": "x", "columns": 5}]')),
    reply_of("42"),
    reply_of("'unterminated"),
])
def test_malformed_replies_raise_inspector_error(content):
    with pytest.raises(InspectorError):
        variables_from_reply(content)
