"""Request and reply types of the completion API (see ../shared/API.md).

One definition serves the HTTP handlers, the WebSocket, the `%complete` magic, the CLI and the
benchmarks. `CompletionRequest.from_json` is the only place that validates client input: it
raises `RequestError` naming the failing field, which the handlers turn into a 400.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

CellType = Literal["code", "markdown", "raw"]
Mode = Literal["line", "block", "auto"]

# Documented limits (README, "API"): they bound memory per request and the work of one prompt.
MAX_BODY_BYTES = 2 * 1024 * 1024
MAX_CELLS = 500
MAX_CELL_CHARS = 100_000
MAX_TEXT_CHARS = 200_000  # prefix and suffix each
MAX_OUTPUT_CHARS = 2_000
MAX_NEW_TOKENS = 512
MAX_ALTERNATIVES = 5


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
    outputs: str = ""


@dataclass(frozen=True)
class CompletionRequest:
    prefix: str
    suffix: str = ""
    cells: tuple[Cell, ...] = ()
    cells_below: tuple[Cell, ...] = ()
    kernel_id: str | None = None
    path: str | None = None
    language: str = "python"
    max_new_tokens: int | None = None
    n: int = 1
    mode: Mode = "auto"

    @classmethod
    def from_json(cls, body: Any) -> CompletionRequest:
        if not isinstance(body, dict):
            raise RequestError("body", "expected a JSON object")
        unknown = set(body) - {f for f in cls.__dataclass_fields__}
        if unknown:
            raise RequestError(sorted(unknown)[0], "unknown field")
        return cls(
            prefix=_string(body, "prefix", required=True, limit=MAX_TEXT_CHARS),
            suffix=_string(body, "suffix", limit=MAX_TEXT_CHARS),
            cells=_cells(body, "cells"),
            cells_below=_cells(body, "cells_below"),
            kernel_id=_optional_string(body, "kernel_id"),
            path=_optional_string(body, "path"),
            language=_string(body, "language", default="python", limit=64),
            max_new_tokens=_optional_int(body, "max_new_tokens", 1, MAX_NEW_TOKENS),
            n=_optional_int(body, "n", 1, MAX_ALTERNATIVES) or 1,
            mode=_choice(body, "mode", ("line", "block", "auto"), "auto"),
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Completion:
    text: str
    score: float = 0.0


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


# --- validation helpers -------------------------------------------------------------------


def _string(body: dict, name: str, *, required=False, default="", limit: int) -> str:
    if name not in body or body[name] is None:
        if required:
            raise RequestError(name, "is required")
        return default
    value = body[name]
    if not isinstance(value, str):
        raise RequestError(name, f"expected a string, got {type(value).__name__}")
    if len(value) > limit:
        raise RequestError(name, f"longer than {limit} characters")
    return value


def _optional_string(body: dict, name: str) -> str | None:
    value = body.get(name)
    return None if value is None else _string(body, name, limit=1024)


def _optional_int(body: dict, name: str, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(name, f"expected an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise RequestError(name, f"must be between {low} and {high}")
    return value


def _choice(body: dict, name: str, choices: tuple[str, ...], default: str) -> Any:
    value = body.get(name, default)
    if value not in choices:
        raise RequestError(name, f"must be one of {', '.join(choices)}")
    return value


def _cells(body: dict, name: str) -> tuple[Cell, ...]:
    value = body.get(name) or []
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
            source = "".join(str(s) for s in source)
        if not isinstance(source, str):
            raise RequestError(f"{where}.source", "expected a string")
        if len(source) > MAX_CELL_CHARS:
            raise RequestError(f"{where}.source", f"longer than {MAX_CELL_CHARS} characters")
        outputs = raw.get("outputs") or ""
        if not isinstance(outputs, str):
            raise RequestError(f"{where}.outputs", "expected a short text")
        cells.append(Cell(cell_type, source, outputs[:MAX_OUTPUT_CHARS]))
    return tuple(cells)
