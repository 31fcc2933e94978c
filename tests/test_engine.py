"""The engine and the whole pipeline on SmolLM2, built from its real package file."""

import threading
from dataclasses import replace

import pytest

from jupyter_codecomp.completion.context import cells_below_shown
from jupyter_codecomp.completion.engine import continues_heal
from jupyter_codecomp.completion.onnx_engine import OnnxEngine
from jupyter_codecomp.completion.prompt import PromptLayout
from jupyter_codecomp.completion.protocol import Cell, CompletionRequest
from jupyter_codecomp.completion.stopping import MaxNewTokens, StopTokens
from jupyter_codecomp.errors import Cancelled

PROMPT = ("import numpy as np\nimport pandas as pd\n\ndef mean(values):\n"
          "    return sum(values) / len(values)\n\nprint(")


@pytest.fixture(scope="module")
def engine(test_model):
    return OnnxEngine(test_model.path, device="cpu", threads=2)


def greedy(engine, text, tokens=12, **kw):
    return engine.generate(engine.encode(text), criteria=[MaxNewTokens(tokens)], **kw)


def test_reports_device_and_providers(engine):
    assert engine.device == "cpu" and engine.providers == ["cpu"]


def test_prefix_reuse_gives_the_same_tokens_as_a_cold_run(engine):
    engine.reset()
    cold = greedy(engine, PROMPT + "mean")
    assert cold.cached_tokens == 0
    greedy(engine, PROMPT)  # another prompt shares all but the last token
    warm = greedy(engine, PROMPT + "mean")
    assert warm.cached_tokens >= len(engine.encode(PROMPT)) - 1
    assert warm.candidates[0].token_ids == cold.candidates[0].token_ids
    again = greedy(engine, PROMPT + "mean")  # identical prompt: all but one token reused
    assert again.cached_tokens == again.prompt_tokens - 2
    assert again.candidates[0].token_ids == cold.candidates[0].token_ids


def test_streaming_sends_growing_text_ending_in_the_result(engine):
    seen = []
    result = greedy(engine, PROMPT, tokens=10, streamer=seen.append)
    assert len(seen) >= 3
    assert all(b.startswith(a) for a, b in zip(seen, seen[1:]))
    assert result.candidates[0].text.startswith(seen[-1])


def test_alternatives_differ_and_branch_on_the_first_token(engine):
    result = greedy(engine, PROMPT, tokens=6, n=3)
    firsts = [c.token_ids[0] for c in result.candidates]
    assert len(result.candidates) == 3 and len(set(firsts)) == 3
    assert result.candidates[0].score >= result.candidates[1].score - 1.0  # greedy first


def test_cancellation_between_tokens(engine):
    cancel = threading.Event()
    count = []

    def streamer(text):
        count.append(text)
        if len(count) == 2:
            cancel.set()

    with pytest.raises(Cancelled):
        greedy(engine, PROMPT, tokens=40, streamer=streamer, cancel=cancel)
    assert len(count) == 2
    # The engine is usable afterwards and still agrees with a cold run.
    after = greedy(engine, PROMPT, tokens=5)
    engine.reset()
    assert greedy(engine, PROMPT, tokens=5).candidates[0].token_ids == after.candidates[0].token_ids


def test_token_cap_and_stop_tokens(engine):
    capped = greedy(engine, PROMPT, tokens=3)
    assert len(capped.candidates[0].token_ids) == 3
    # Declare the greedy second token a stop token: generation ends right there.
    second = capped.candidates[0].token_ids[1]
    stopped = engine.generate(engine.encode(PROMPT),
                              criteria=[MaxNewTokens(10), StopTokens(frozenset({second}))])
    assert stopped.candidates[0].token_ids == capped.candidates[0].token_ids[:2]
    assert stopped.candidates[0].finished_by == "criteria"


def test_token_healing_regenerates_the_removed_text(engine):
    result = engine.generate(engine.encode("import numpy as np\nx = np"), heal=".",
                             criteria=[MaxNewTokens(4)])
    candidate = result.candidates[0]
    assert engine.tokenizer.decode(candidate.token_ids).startswith(".")
    assert not candidate.text.startswith(".")  # the healed text is not returned twice


@pytest.mark.parametrize("token, heal, ok", [
    (" return", " ", True), ("   ", " ", False), (" \n", " ", False), ("\t\t", "\t", False),
    ("return", " ", False), (".", ".", True), ("..", ".", True), (".append", ".", True),
])
def test_a_healed_indentation_goes_on_with_code(token, heal, ok):
    assert continues_heal(token, heal) is ok


def test_no_more_indentation_after_a_healed_space(engine):
    """After `:\n` and three spaces with the fourth held back, no first token adds spaces: every
    candidate is the fourth space and the code (measured: runs of spaces came out indented 7)."""
    prompt = "def mean(values):\n   "
    result = engine.generate(engine.encode(prompt), heal=" ", n=5, criteria=[MaxNewTokens(3)])
    for candidate in result.candidates:
        first = engine.tokenizer.decode(candidate.token_ids[:1])
        assert first.startswith(" ") and not first[1:2].isspace(), first
        assert candidate.text[:1].strip()
    allowed = {engine.vocab.texts[i] for i in engine.vocab.allowed(" ")}
    assert " return" in allowed and not {"  ", "   ", " \n"} & allowed


def test_service_line_mode_gives_one_line(service):
    reply = service.complete(CompletionRequest(prefix="def add(a, b):\n    return ", mode="line"))
    assert reply.completions and "\n" not in reply.completions[0].text
    assert reply.model == "smollm2-135m-int4" and reply.device == "cpu"
    assert reply.timings_ms.total >= reply.timings_ms.prefill > 0


def test_service_mid_line_never_repeats_the_suffix(service):
    request = CompletionRequest(prefix="values = [1, 2, 3]\nprint(len(", suffix="))\n", n=3)
    reply = service.complete(request)
    for completion in reply.completions:
        assert not completion.text.endswith("))")
        assert "\n" not in completion.text


def test_service_uses_cells_above(service):
    cells = (Cell("code", "import pandas as pd"), Cell("markdown", "Load the data"))
    reply = service.complete(CompletionRequest(prefix="df = pd.", cells=cells))
    assert reply.context.cells == 2
    assert reply.context.prompt_tokens > len(service.engine.encode("df = pd."))


def test_the_cells_below_rules():
    below = (Cell("code", "print(total)"),)
    new_line = CompletionRequest(prefix="x = 1\n", suffix="\ny = 2", cells_below=below)
    started = replace(new_line, prefix="x = 1\nto")
    assert cells_below_shown(started, "never") == ()
    assert cells_below_shown(started, "always") == below
    rule = "not_on_empty_line"
    assert cells_below_shown(new_line, rule) == ()
    assert cells_below_shown(replace(new_line, prefix="for i in x:\n    "), rule) == ()  # a block
    assert cells_below_shown(started, rule) == below  # a started line
    assert cells_below_shown(replace(new_line, suffix="y = 2"), rule) == below  # text after


def test_the_service_prompt_shows_the_cells_below_only_under_another_layout(service):
    below = (Cell("code", "print(total)"),)

    def kinds(service, prefix):
        report = service.context_report(CompletionRequest(prefix=prefix, cells_below=below))
        return [part["kind"] for part in report["parts"]]
    assert "cell_below" not in kinds(service, "total = ")
    shown = service.variant(PromptLayout(below="not_on_empty_line"), service.rules)
    assert "cell_below" not in kinds(shown, "total = 1\n")
    assert "cell_below" in kinds(shown, "total = ")


def test_typing_one_more_character_reuses_the_prompt(service):
    cells = tuple(Cell("code", f"value_{i} = {i} * 2") for i in range(20))
    service.complete(CompletionRequest(prefix="total = value_1", cells=cells, max_new_tokens=4))
    reply = service.complete(CompletionRequest(prefix="total = value_1 ", cells=cells,
                                               max_new_tokens=4))
    assert reply.context.cached_tokens >= reply.context.prompt_tokens - 4


def test_each_notebook_keeps_its_own_kv_cache(test_model):
    engine = OnnxEngine(test_model.path, device="cpu", threads=2, cache_slots=2)
    a, b, c = (engine.encode(f"# notebook {name}\n" + PROMPT) for name in "abc")
    for key, ids in (("a.ipynb", a), ("b.ipynb", b)):
        engine.generate(ids, criteria=[MaxNewTokens(2)], cache_key=key)
    again = engine.generate(a, criteria=[MaxNewTokens(2)], cache_key="a.ipynb")
    assert again.cached_tokens == len(a) - 2  # b's request did not evict a's prefix
    engine.generate(c, criteria=[MaxNewTokens(2)], cache_key="c.ipynb")  # evicts b (LRU)
    assert engine.generate(b, criteria=[MaxNewTokens(2)], cache_key="b.ipynb").cached_tokens == 0


def test_a_long_prompt_goes_in_chunks_with_the_same_logits_and_stops_between_them(engine):
    """GenAI holds the GIL through one append: a prompt in chunks lets the server's event loop
    run between them, and a superseded request stops there, keeping what it filled."""
    from jupyter_codecomp.completion.kv_cache import PREFILL_CHUNK_TOKENS, KVCache

    ids = engine.encode(PROMPT * 12)
    assert len(ids) > 2 * PREFILL_CHUNK_TOKENS
    whole = KVCache(engine._og, engine.model, 4096)
    whole.restart()
    whole.append(ids)
    chunks: list[int] = []
    chunked = KVCache(engine._og, engine.model, 4096)
    chunked.sync(ids, between_chunks=lambda: chunks.append(len(chunked.sequence)))
    assert chunks[:2] == [PREFILL_CHUNK_TOKENS, 2 * PREFILL_CHUNK_TOKENS]
    assert (chunked.logits() == whole.logits()).all()

    def supersede():
        raise Cancelled()

    stopped = KVCache(engine._og, engine.model, 4096)
    with pytest.raises(Cancelled):
        stopped.sync(ids, between_chunks=supersede)
    assert stopped.sequence == ids[:PREFILL_CHUNK_TOKENS]
