"""Request and reply types of the completion API (see ../shared/API.md).

One definition serves the HTTP handlers, the WebSocket, the `%complete` magic, the CLI and the
benchmarks. `CompletionRequest.from_json` is the only place that validates client input: it
raises `RequestError` naming the failing field, which the handlers turn into a 400.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

CellType = Literal["code", "markdown", "raw"]
Mode = Literal["line", "block", "auto"]

# Documented limits (README, "API"): they bound memory per request and the work of one prompt.
MAX_BODY_BYTES = 2 * 1024 * 1024
MAX_CELLS = 500
MAX_CELL_CHARS = 100_000
MAX_TEXT_CHARS = 200_000  # prefix and suffix each
MAX_NEW_TOKENS = 512  # the ceiling of any configuration; the server's own limit may be lower
MAX_ALTERNATIVES = 5
MAX_ID_CHARS = 256  # WebSocket request ids and keys
# In the API contract, checked, and not kept: the prompt is Python's whatever a client sends.
ACCEPTED_UNUSED = ("language",)
SHOWN_NAME_CHARS = 40  # an unknown field name quoted in an error message is cut to this

# A lone UTF-16 surrogate (JSON allows "\ud800") cannot be encoded as UTF-8: the tokenizer and
# the log would fail on it far from the request. It is refused here, naming the field.
_SURROGATE = re.compile("[\ud800-\udfff]")


class RequestError(ValueError):
    """Invalid client input; `field` names the offending field (dotted path)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Cell:
    cell_type: CellType
    source: str


@dataclass(frozen=True)
class CompletionRequest:
    prefix: str
    suffix: str = ""
    cells: tuple[Cell, ...] = ()
    cells_below: tuple[Cell, ...] = ()
    kernel_id: str | None = None
    path: str | None = None
    max_new_tokens: int | None = None
    n: int = 1
    mode: Mode = "auto"

    @classmethod
    def from_json(cls, body: Any, *, max_new_tokens: int = MAX_NEW_TOKENS,
                  where: str = "body") -> CompletionRequest:
        """`max_new_tokens` is the server's limit: a request over it is refused, not capped.
        `where` names the body in messages ("request" inside a WebSocket message)."""
        if not isinstance(body, dict):
            raise RequestError(where, "expected a JSON object")
        unknown = [name for name in body
                   if name not in cls.__dataclass_fields__ and name not in ACCEPTED_UNUSED]
        if unknown:
            raise RequestError(shown_name(sorted(map(str, unknown))[0]), "unknown field")
        _string(body, "language", limit=64)
        return cls(
            prefix=_string(body, "prefix", required=True, limit=MAX_TEXT_CHARS),
            suffix=_string(body, "suffix", limit=MAX_TEXT_CHARS),
            cells=_cells(body, "cells"),
            cells_below=_cells(body, "cells_below"),
            kernel_id=_optional_string(body, "kernel_id"),
            path=_optional_string(body, "path"),
            max_new_tokens=_optional_int(body, "max_new_tokens", 1,
                                         min(max_new_tokens, MAX_NEW_TOKENS)),
            n=_optional_int(body, "n", 1, MAX_ALTERNATIVES) or 1,
            mode=_choice(body, "mode", ("line", "block", "auto"), "auto"),
        )


@dataclass(frozen=True)
class Completion:
    text: str
    score: float = 0.0
    # In [0, 1], from the model's token probabilities (postprocess.confidence): the frontend
    # shows ghost text at or above its minConfidence (default: /codecomp/status min_confidence).
    confidence: float = 0.0

    def __post_init__(self) -> None:
        # JSON has no NaN: a figure from broken weights is sent as 0 (the service drops
        # candidates whose score is not finite; this holds for any other producer too).
        for name in ("score", "confidence"):
            if not math.isfinite(getattr(self, name)):
                object.__setattr__(self, name, 0.0)


@dataclass
class ContextInfo:
    prompt_tokens: int = 0
    cached_tokens: int = 0
    cells: int = 0
    variables: int = 0
    # Why no variables were used, when a kernel was named ("dead", "unknown", "busy-cache", ...).
    kernel: str | None = None


@dataclass
class Timings:
    context: float = 0.0
    prefill: float = 0.0
    decode: float = 0.0
    total: float = 0.0
    first_token: float = 0.0


@dataclass
class CompletionReply:
    completions: list[Completion]
    model: str
    device: str
    # Set when policy turned completion off for this request ("disabled_paths", "notebook", ...).
    disabled: str | None = None
    context: ContextInfo = field(default_factory=ContextInfo)
    timings_ms: Timings = field(default_factory=Timings)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class StreamMessage:
    """One message a client sends on the WebSocket: a request (`id`, `request`, `key`?) or
    `{"cancel": id}`. An id is a non-empty string or an integer (0 included) and comes back as
    sent; a key is a string."""

    id: str | int | None = None
    request: Any = None  # validated by CompletionRequest.from_json once the id is known
    key: str | None = None
    cancel: str | int | None = None

    @classmethod
    def from_json(cls, data: Any) -> StreamMessage:
        if not isinstance(data, dict):
            raise RequestError("message", "expected a JSON object")
        unknown = [name for name in data if name not in cls.__dataclass_fields__]
        if unknown:
            raise RequestError(shown_name(sorted(map(str, unknown))[0]), "unknown field")
        if "cancel" in data:
            return cls(cancel=_stream_id(data, "cancel"))
        request_id = _stream_id(data, "id")
        key = data.get("key")
        if key is not None:
            key = _string(data, "key", limit=MAX_ID_CHARS)
        return cls(id=request_id, request=data.get("request"), key=key)


def shown_name(name: str) -> str:
    """A client's field name as an error message may quote it: short, and always encodable."""
    cut = name[:SHOWN_NAME_CHARS] + ("..." if len(name) > SHOWN_NAME_CHARS else "")
    return cut.encode("utf-8", "backslashreplace").decode("utf-8")


# --- validation helpers -------------------------------------------------------------------


def _stream_id(data: dict, name: str) -> str | int:
    value = data.get(name)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if value is None or value == "":
        raise RequestError(name, "is required (a string or an integer)")
    return _string(data, name, limit=MAX_ID_CHARS)


def _string(body: dict, name: str, *, required=False, default="", limit: int) -> str:
    if name not in body or body[name] is None:
        if required:
            raise RequestError(name, "is required")
        return default
    return _text(body[name], name, limit)


def _text(value: Any, name: str, limit: int) -> str:
    if not isinstance(value, str):
        raise RequestError(name, f"expected a string, got {_json_type(value)}")
    if len(value) > limit:
        raise RequestError(name, f"longer than {limit} characters")
    if _SURROGATE.search(value):
        raise RequestError(name, "contains an unpaired UTF-16 surrogate (not valid Unicode)")
    return value


def _json_type(value: Any) -> str:
    names = {bool: "boolean", int: "number", float: "number", list: "array", dict: "object"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _optional_string(body: dict, name: str) -> str | None:
    value = body.get(name)
    return None if value is None else _string(body, name, limit=1024)


def _optional_int(body: dict, name: str, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(name, f"expected an integer, got {_json_type(value)}")
    if not low <= value <= high:
        raise RequestError(name, f"must be between {low} and {high}")
    return value


def _choice(body: dict, name: str, choices: tuple[str, ...], default: str) -> Any:
    value = body.get(name, default)
    if not isinstance(value, str) or value not in choices:
        raise RequestError(name, f"must be one of {', '.join(choices)}")
    return value


def _cells(body: dict, name: str) -> tuple[Cell, ...]:
    value = body.get(name)
    if value is None:
        return ()
    if not isinstance(value, list):
        raise RequestError(name, "expected a list of cells")
    if len(value) > MAX_CELLS:
        raise RequestError(name, f"more than {MAX_CELLS} cells")
    cells = []
    for i, raw in enumerate(value):
        where = f"{name}[{i}]"
        if not isinstance(raw, dict):
            raise RequestError(where, "expected an object with cell_type and source")
        try:
            cell_type = _choice(raw, "cell_type", ("code", "markdown", "raw"), "code")
        except RequestError as e:
            raise RequestError(f"{where}.cell_type", e.message) from None
        source = raw.get("source", "")
        if isinstance(source, list):  # nbformat allows a list of lines
            if not all(isinstance(line, str) for line in source):
                raise RequestError(f"{where}.source", "expected a string or a list of strings")
            source = "".join(source)
        source = _text(source, f"{where}.source", MAX_CELL_CHARS)
        if raw.get("outputs") is not None:  # in the API contract, checked, not kept: no prompt
            _text(raw["outputs"], f"{where}.outputs", 10 * MAX_CELL_CHARS)  # shows outputs
        cells.append(Cell(cell_type, source))
    return tuple(cells)
