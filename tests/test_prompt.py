"""Golden tests of prompt building, with the test model's real tokenizer and FIM tokens added."""

import pytest
from tokenizers import AddedToken, Tokenizer

from jupyter_codecomp.completion.prompt import PromptBuilder, cell_text
from jupyter_codecomp.completion.protocol import Cell
from jupyter_codecomp.models.recipes import PromptFormat

FIM = PromptFormat(
    fim=True, fim_prefix="<|fim_prefix|>", fim_suffix="<|fim_suffix|>",
    fim_middle="<|fim_middle|>", file_separator="<|file_sep|>",
)


@pytest.fixture(scope="module")
def tokenizer(test_model):
    tok = Tokenizer.from_file(str(test_model.path / "tokenizer.json"))
    tok.add_special_tokens([AddedToken(t, special=True) for t in
                            (FIM.fim_prefix, FIM.fim_suffix, FIM.fim_middle, FIM.file_separator)])
    return tok


def builder(tok, fmt=FIM, **budgets):
    texts = tok.decode_batch([[i] for i in range(tok.get_vocab_size())], skip_special_tokens=False)
    return PromptBuilder(lambda s: tok.encode(s, add_special_tokens=False).ids, tok.token_to_id,
                         texts.__getitem__, fmt, **budgets)


def text_of(tok, prompt):
    return tok.decode(prompt.ids, skip_special_tokens=False)


def test_fim_layout_with_cells_variables_and_healing(tokenizer):
    cells = [Cell("markdown", "# Sales\nWe load the data.\n\nMore text"),
             Cell("code", "import pandas as pd\nsales = pd.read_csv('sales.csv')")]
    below = [Cell("code", "sales.plot()")]
    prompt = builder(tokenizer).build(
        "total = sales.", "\nprint(total)", cells, below,
        variables="# sales: DataFrame shape=(3, 2) columns: date(object), amount(float64)",
    )
    assert prompt.heal == "."
    assert text_of(tokenizer, prompt) == (
        "<|fim_prefix|># %% [markdown]\n# # Sales\n# We load the data.\n# More text\n\n"
        "# %%\nimport pandas as pd\nsales = pd.read_csv('sales.csv')\n\n"
        "# %%\n# Variables in the running kernel:\n"
        "# sales: DataFrame shape=(3, 2) columns: date(object), amount(float64)\n\n"
        "# %%\ntotal = sales"
        "<|fim_suffix|>\nprint(total)\n\n# %%\nsales.plot()\n\n<|fim_middle|>"
    )
    assert [p.kind for p in prompt.parts] == [
        "cell_above", "cell_above", "variables", "prefix", "suffix", "cell_below"]
    assert prompt.cells_used == 3


def test_cells_above_nearest_first_within_budget(tokenizer):
    cells = [Cell("code", f"x{i} = {i}  # " + "pad " * 20) for i in range(30)]
    prompt = builder(tokenizer, budget_above=120).build("y = ", cells=cells)
    used = [p.index for p in prompt.parts if p.kind == "cell_above"]
    assert used and used == list(range(30 - len(used), 30))  # a contiguous run ending at the cursor
    assert prompt.tokens_of("cell_above") <= 120
    assert prompt.dropped_cells == 30 - len(used)


@pytest.mark.parametrize("max_tokens", [600, 300, 120, 40])
def test_a_prompt_is_fitted_into_the_engines_context(tokenizer, max_tokens):
    """The cells farthest above go first, then the variables, then the start of the cell; the
    text at the cursor stays."""
    cells = [Cell("code", f"x{i} = {i}  # " + "pad " * 20) for i in range(30)]
    prefix = "".join(f"step_{i} = run({i})\n" for i in range(30)) + "total = step_"
    variables = "# sales: DataFrame shape=(3, 2) columns: date(object), amount(float64)"
    whole = builder(tokenizer).build(prefix, "\nprint(total)", cells, variables=variables)
    fitted = builder(tokenizer).build(prefix, "\nprint(total)", cells, variables=variables,
                                      max_tokens=max_tokens)
    assert len(whole.ids) > 600 >= max_tokens >= len(fitted.ids)
    used = [p.index for p in fitted.parts if p.kind == "cell_above"]
    assert used == list(range(30 - len(used), 30))  # the nearest ones, if any
    assert fitted.dropped_cells == 30 - len(used)
    text = text_of(tokenizer, fitted)
    assert text.endswith("total = step<|fim_suffix|>\nprint(total)\n<|fim_middle|>")
    assert fitted.heal == "_"
    if max_tokens <= 120:  # nothing above fits: no variables, and the cell's start is cut
        assert not used and "Variables" not in text and "step_0 = " not in text
    if max_tokens == 600:
        assert used and "Variables" in text and "step_0 = " in text


def test_the_window_above_moves_in_steps_of_cells(tokenizer):
    cells = [Cell("code", f"x{i} = {i}  # " + "pad " * 20) for i in range(40)]

    def starts(step):
        firsts = []
        for end in range(20, 40):  # the cursor moves down one cell at a time
            parts = builder(tokenizer, budget_above=300, above_step=step).build(
                "y = ", cells=cells[:end]).parts
            used = [p.index for p in parts if p.kind == "cell_above"]
            assert used == list(range(used[0], end))
            firsts.append(used[0])
        return firsts

    assert len(set(starts(1))) == 20  # the prompt's start changes at every move
    stepped = starts(4)
    assert all(first % 4 == 0 for first in stepped) and len(set(stepped)) <= 20 // 4 + 1


def test_prefix_and_suffix_always_kept(tokenizer):
    prompt = builder(tokenizer, budget_above=0, budget_below=0).build(
        "a = 1\nb = ", "\nc = 3", [Cell("code", "z = 0")], [Cell("code", "w = 1")])
    text = text_of(tokenizer, prompt)
    assert "a = 1\nb" in text and "c = 3" in text and "z = 0" not in text and "w = 1" not in text


@pytest.mark.parametrize("indent", [4, 8, 12])
def test_indentation_holds_back_only_the_space_that_goes_with_the_next_word(tokenizer, indent):
    # ` return` carries its own space: holding back the whole run made the model spell it out.
    prefix = "def f(x):\n    if x:\n" + " " * indent
    prompt = builder(tokenizer).build(prefix)
    assert prompt.heal == " "
    assert text_of(tokenizer, prompt).endswith(prefix[:-1] + "<|fim_suffix|>\n<|fim_middle|>")


def test_a_token_that_ends_a_line_is_not_healed(tokenizer):
    prompt = builder(tokenizer).build("print(passed)\n")
    assert prompt.heal == ""
    assert text_of(tokenizer, prompt).startswith("<|fim_prefix|>print(passed)\n<|fim_suffix|>")


def test_left_to_right_format_without_fim_tokens(tokenizer):
    prompt = builder(tokenizer, PromptFormat()).build("x = 1\ny = ", "\nz = 2")
    assert text_of(tokenizer, prompt) + prompt.heal == "x = 1\ny = "


def test_cell_text_markdown_is_short_comments_and_raw_is_dropped():
    long_md = Cell("markdown", "\n".join(f"line {i}" for i in range(10)))
    assert cell_text(long_md).count("\n# line") == 3
    assert cell_text(Cell("raw", "anything")) == ""
    assert cell_text(Cell("code", "   ")) == ""


def test_the_naive_layout_is_the_cells_above_as_plain_code(tokenizer):
    from jupyter_codecomp.completion.prompt import NAIVE

    cells = [Cell("markdown", "# Sales"), Cell("code", "import pandas as pd"),
             Cell("code", "sales = pd.read_csv('s.csv')")]
    prompt = builder(tokenizer, layout=NAIVE).build(
        "total = sales.", "\nprint(total)", cells, variables="# sales: DataFrame")
    assert prompt.heal == "."
    assert text_of(tokenizer, prompt) == (
        "<|fim_prefix|>import pandas as pd\n\nsales = pd.read_csv('s.csv')\n\ntotal = sales"
        "<|fim_suffix|>\nprint(total)\n<|fim_middle|>")
    assert builder(tokenizer, layout=NAIVE).layout.budget_above == 1500


def test_layout_options_each_change_one_thing(tokenizer):
    from jupyter_codecomp.completion.prompt import PromptLayout

    cells = [Cell("code", "x = 1")]
    top = builder(tokenizer, layout=PromptLayout(variables="top")).build(
        "y = x", cells=cells, variables="# x: int")
    assert text_of(tokenizer, top).startswith(
        "<|fim_prefix|># %%\n# Variables in the running kernel:\n# x: int\n\n"
        "# %%\nx = 1\n\n# %%\ny")
    assert [p.kind for p in top.parts][:2] == ["variables", "cell_above"]
    none = builder(tokenizer, layout=PromptLayout(variables="none")).build(
        "y = x", cells=cells, variables="# x: int")
    assert "Variables" not in text_of(tokenizer, none)
    unhealed = builder(tokenizer, layout=PromptLayout(heal=False)).build("y = np.")
    assert unhealed.heal == "" and text_of(tokenizer, unhealed).startswith("<|fim_prefix|>y = np.<")
    layout = PromptLayout().with_options({"budget_above": "1500", "markdown": "drop", "heal": "0"})
    assert (layout.budget_above, layout.markdown, layout.heal) == (1500, "drop", False)
    for bad in ({"budget": "1"}, {"markdown": "html"}, {"budget_above": "many"}):
        with pytest.raises(ValueError):
            PromptLayout().with_options(bad)
