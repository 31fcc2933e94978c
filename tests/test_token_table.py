"""The token table decodes as the test model's real tokenizer does, and declines what it cannot."""

import pytest
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

from jupyter_codecomp.completion.token_table import EngineTokenizer, TokenTable

SAMPLES = ["naïve = 'café'  # 数据 🐍🐼\r\n\tx  =   1\u0301", "<|endoftext|> and <|im_start|>",
           "def f(a, b):\n        return a ** b\n\n\n", "", "   ", "\x00\x7f\u2028"]


@pytest.fixture(scope="module")
def tokenizer_json(test_model, tmp_path_factory):
    """The test model's tokenizer with two added tokens, one special, one not."""
    tok = Tokenizer.from_file(str(test_model.path / "tokenizer.json"))
    tok.add_special_tokens([AddedToken("<|fim_middle|>", special=True)])
    tok.add_tokens([AddedToken("<plain added>", special=False)])
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    tok.save(str(path))
    return path, tok


def test_every_token_and_text_decodes_as_the_tokenizer_does(tokenizer_json):
    path, tok = tokenizer_json
    table = TokenTable.read(path)
    assert table.get_vocab_size() == tok.get_vocab_size()
    for i in range(tok.get_vocab_size()):
        assert table.decode([i]) == tok.decode([i], skip_special_tokens=False), i
    for text in SAMPLES + ["x <|fim_middle|> y <plain added> z"]:
        ids = tok.encode(text, add_special_tokens=False).ids
        for cut in (ids, ids[:-1], ids[1:]):  # a character cut between tokens: U+FFFD alike
            for skip in (False, True):
                assert table.decode(cut, skip) == tok.decode(cut, skip_special_tokens=skip)
    assert table.token_to_id("<|fim_middle|>") == tok.token_to_id("<|fim_middle|>")
    assert table.token_to_id("<plain added>") == tok.token_to_id("<plain added>")
    assert table.token_to_id("<|no such token|>") is None
    beyond = [tok.get_vocab_size() + 7, 5]  # an id an engine's padded vocabulary may send
    assert table.decode(beyond) == tok.decode(beyond, skip_special_tokens=False)


def test_a_tokenizer_that_is_not_byte_level_keeps_the_whole_tokenizer(tmp_path):
    tok = Tokenizer(models.WordPiece({"[UNK]": 0, "a": 1, "##b": 2}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece()
    tok.save(str(tmp_path / "tokenizer.json"))
    assert TokenTable.read(tmp_path / "tokenizer.json") is None


@pytest.mark.parametrize("content", [
    b"\x00garbage", b"[1, 2]", b'{"decoder": {"type": "ByteLevel"}, "model": {"type": "BPE"}}'])
def test_a_file_that_is_no_tokenizer_is_a_readable_error(tmp_path, content):
    (tmp_path / "tokenizer.json").write_bytes(content)
    with pytest.raises(ValueError, match="not a readable tokenizer.json"):
        TokenTable.read(tmp_path / "tokenizer.json")


def test_the_engine_tokenizer_asks_the_engine_once_per_text(tokenizer_json):
    """Cells come back at every keystroke: their ids are kept, the oldest dropped first."""
    path, tok = tokenizer_json
    asked: list[str] = []

    def tokenize(text: str) -> list[int]:  # the engine's /tokenize, as HttpEngine calls it
        asked.append(text)
        return tok.encode(text, add_special_tokens=False).ids

    engine_tokenizer = EngineTokenizer(TokenTable.read(path), tokenize)
    engine_tokenizer.CACHED_TEXTS = 2
    for text in ["import pandas", "import pandas", "", "x = 1", "y = 2", "import pandas"]:
        ids = engine_tokenizer.encode(text, add_special_tokens=False).ids
        assert ids == tok.encode(text, add_special_tokens=False).ids
        assert engine_tokenizer.decode(ids) == text
    assert asked == ["import pandas", "x = 1", "y = 2", "import pandas"]
