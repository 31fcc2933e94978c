"""The tokenizer of a server whose shared engine tokenizes: the engine encodes, a table decodes.

A student's server on a shared engine holds Qwen's tokenizer only to encode the prompt and decode
what comes back. Its `tokenizers` structures take about 45 MB (measured: 41.5 MB of heap after
`Tokenizer.from_file` and `malloc_trim`), a third of that server. `EngineTokenizer` has the
engine's `/tokenize` encode, and `TokenTable`, each token's bytes (2 MB for Qwen's 151,936 ids),
decode. The table is read from tokenizer.json in a child process, so the JSON parse never lands
on the server's heap.

Only byte-level BPE tokenizers (GPT-2's scheme: Qwen, SmolLM2, StarCoder) decode by
concatenating their tokens' bytes; `read` returns None for any other, and the server keeps the
whole tokenizer.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
from array import array
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from .engine import Encoded


class TokenTable:
    """Each token's bytes; decodes as `tokenizers` decodes byte-level BPE."""

    def __init__(self, blob: bytes, offsets: array, added: dict[str, int], special: frozenset):
        self._blob = blob
        self._offsets = offsets  # token i is blob[offsets[i]:offsets[i + 1]]
        self._added = added  # added tokens (FIM and stop markers) by their text
        self._special = special  # the ids `skip_special_tokens` leaves out

    @classmethod
    def read(cls, tokenizer_json: Path) -> TokenTable | None:
        """The table of a tokenizer.json, built in a child process; None when it is not
        byte-level BPE. Raises `ValueError` for a file that is not a tokenizer."""
        child = subprocess.run([sys.executable, "-m", __name__, str(tokenizer_json)],
                               capture_output=True, text=True)
        if child.returncode:
            raise ValueError(child.stderr.strip().splitlines()[-1] if child.stderr.strip()
                             else f"cannot read {tokenizer_json}")
        table = json.loads(child.stdout)
        if table is None:
            return None
        offsets = array("I")
        offsets.frombytes(base64.b64decode(table["offsets"]))
        return cls(base64.b64decode(table["blob"]), offsets, table["added"],
                   frozenset(table["special"]))

    def get_vocab_size(self) -> int:
        return len(self._offsets) - 1

    def token_bytes(self, token: int) -> bytes:
        """A token's bytes; none for an id the vocabulary lacks, as `tokenizers` decodes it."""
        if not 0 <= token < len(self._offsets) - 1:
            return b""
        return self._blob[self._offsets[token]:self._offsets[token + 1]]

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        """As `tokenizers.Tokenizer.decode` decodes byte-level BPE: the tokens' bytes, joined,
        read as UTF-8 with U+FFFD for what is not (a character cut between two tokens)."""
        return b"".join(self.token_bytes(i) for i in ids
                        if not (skip_special_tokens and i in self._special)
                        ).decode("utf-8", "replace")

    def token_to_id(self, text: str) -> int | None:
        """An added token's id (the FIM and stop markers the prompt format names)."""
        return self._added.get(text)


class EngineTokenizer:
    """The tokenizer the prompt builder and the service use, on a server that holds none: the
    engine encodes, the table decodes. Whole cells come back at every keystroke, so their ids
    are kept (a few hundred texts, compact)."""

    CACHED_TEXTS = 256

    def __init__(self, table: TokenTable, tokenize: Callable[[str], list[int]]):
        self._tokenize = tokenize
        self._cache: OrderedDict[str, array] = OrderedDict()
        self._lock = threading.Lock()
        self.decode = table.decode
        self.token_to_id = table.token_to_id

    def encode(self, text: str, add_special_tokens: bool = False) -> Encoded:
        """`text`'s ids; special tokens are never added (the pipeline never asks for them)."""
        if not text:
            return Encoded([])
        with self._lock:
            ids = self._cache.get(text)
            if ids is not None:
                self._cache.move_to_end(text)
                return Encoded(list(ids))
        ids = self._tokenize(text)
        with self._lock:
            self._cache[text] = array("I", ids)
            while len(self._cache) > self.CACHED_TEXTS:
                self._cache.popitem(last=False)
        return Encoded(ids)


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet, inverted: each printable stand-in character to its byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    return {**{chr(b): b for b in printable}, **{chr(256 + n): b for n, b in enumerate(others)}}


def _table_json(path: Path) -> dict | None:
    spec = json.loads(path.read_text(encoding="utf-8"))
    if (spec.get("decoder") or {}).get("type") != "ByteLevel" or spec["model"]["type"] != "BPE":
        return None
    byte_of = _byte_decoder()
    tokens: dict[int, bytes] = {
        i: bytes(byte_of[c] for c in text) for text, i in spec["model"]["vocab"].items()}
    added = {t["content"]: t["id"] for t in spec.get("added_tokens", [])}
    tokens.update((i, text.encode("utf-8")) for text, i in added.items())
    size = max(tokens) + 1
    offsets, blob = array("I", [0]), bytearray()
    for i in range(size):
        blob += tokens.get(i, b"")
        offsets.append(len(blob))
    return {"blob": base64.b64encode(bytes(blob)).decode("ascii"),
            "offsets": base64.b64encode(offsets.tobytes()).decode("ascii"),
            "added": added,
            "special": [t["id"] for t in spec.get("added_tokens", []) if t.get("special")]}


if __name__ == "__main__":
    try:
        json.dump(_table_json(Path(sys.argv[1])), sys.stdout)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        sys.exit(f"{sys.argv[1]} is not a readable tokenizer.json ({exc.__class__.__name__})")
