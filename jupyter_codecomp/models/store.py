"""The model cache: where built models live, and how a model name or path becomes a checked folder.

A built model is a folder holding the ONNX export (`model.onnx`, its data, `genai_config.json`),
`tokenizer.json`, and `codecomp.json`, the manifest. The builder writes the manifest last and
renames the whole folder into place, so a folder without a valid manifest is never a model.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from jupyter_core.paths import jupyter_data_dir

from ..errors import ModelNotReady
from .recipes import PromptFormat

MANIFEST = "codecomp.json"
# The llama.cpp weights the export came from, kept at build time for `jupyter codecomp serve`.
GGUF = "model.gguf"
# What a server needs whose engine is elsewhere (engine_url): the prompt format and the tokenizer
# that counts the budgets and builds the token ids it sends. No weights.
PROMPT_FILES = ("tokenizer.json",)


def default_cache_dir() -> Path:
    env = os.environ.get("JUPYTER_CODECOMP_CACHE_DIR")
    return Path(env) if env else Path(jupyter_data_dir()) / "codecomp" / "models"


@dataclass
class Manifest:
    name: str
    recipe: str
    device: str  # the execution provider the export targets: "cpu" or "cuda"
    precision: str
    prompt: PromptFormat
    gguf_sha256: str
    files: dict[str, int] = field(default_factory=dict)  # relative path -> size in bytes
    package_version: str = ""
    built_seconds: float = 0.0
    # sha256 of each file but the GGUF (gguf_sha256), written at build time and checked when a
    # server loads the model: a file corrupted at its own size fails to load, never serves NaN.
    sha256: dict[str, str] = field(default_factory=dict)
    # A fine-tuned model (`jupyter codecomp finetune`): its base, the notebooks with their
    # sha256, the hyperparameters, the steps, the validation loss and the before/after figures.
    finetune: dict = field(default_factory=dict)
    # A pairing (models/pairing.py): {"verifier", "draft": a subfolder or "prompt-lookup",
    # "draft_model"}; the engine then decodes speculatively.
    pair: dict = field(default_factory=dict)

    @property
    def display_name(self) -> str:
        return f"{self.name}-{self.precision}"

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Manifest:
        prompt = {k: tuple(v) if isinstance(v, list) else v for k, v in data["prompt"].items()}
        return cls(**{**data, "prompt": PromptFormat(**prompt)})


@dataclass(frozen=True)
class ModelDir:
    path: Path
    manifest: Manifest

    @property
    def size_bytes(self) -> int:
        return sum(self.manifest.files.values())

    @property
    def gguf(self) -> Path | None:
        path = self.path / GGUF
        return path if path.is_file() else None


def folder_name(recipe: str, device: str) -> str:
    return recipe if device == "cpu" else f"{recipe}-{device}"


class ModelStore:
    def __init__(self, cache_dir: Path | str | None = None):
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()

    def list(self) -> list[ModelDir]:
        if not self.cache_dir.is_dir():
            return []
        models = []
        for path in sorted(self.cache_dir.iterdir()):
            if path.name.startswith(".") or not (path / MANIFEST).is_file():
                continue
            try:
                models.append(load_model_dir(path))
            except ModelNotReady:
                continue
        return models

    def path_for(self, recipe: str, device: str = "cpu") -> Path:
        return self.cache_dir / folder_name(recipe, device)

    def resolve(self, name_or_path: str, device: str = "cpu",
                only: tuple[str, ...] | None = None) -> ModelDir:
        """A built model by recipe name (preferring an export for `device`) or by folder path.
        `only` checks just those files (PROMPT_FILES for a server whose engine is elsewhere)."""
        candidate = Path(name_or_path).expanduser()
        if candidate.is_dir() or os.sep in name_or_path:
            return load_model_dir(candidate, hint=name_or_path, only=only)
        for dev in dict.fromkeys((device, "cpu")):
            path = self.path_for(name_or_path, dev)
            if path.exists():
                return load_model_dir(path, hint=name_or_path, only=only)
        raise ModelNotReady(
            f"model {name_or_path!r} is not built (looked in {self.cache_dir})",
            fix=build_command(name_or_path),
        )

    def remove(self, name: str) -> list[Path]:
        removed = []
        for dev in ("cpu", "cuda"):
            path = self.path_for(name, dev)
            if path.exists():
                shutil.rmtree(path)
                removed.append(path)
        return removed


def build_command(name: str) -> str:
    return f"jupyter codecomp model build {name}"


def rebuild_command(name_or_folder: str | Path) -> str:
    """The command that rebuilds a model, by its recipe: the folder's manifest names it, else the
    folder is named after it (`folder_name`), else the fix lists the recipes."""
    from .recipes import available_recipes

    folder = Path(name_or_folder)
    if isinstance(name_or_folder, str) and os.sep not in name_or_folder and not folder.is_dir():
        return build_command(name_or_folder) + " --force"
    try:
        recipe = json.loads((folder / MANIFEST).read_text())["recipe"]
    except (OSError, ValueError, KeyError, TypeError):
        recipe = None
    known = available_recipes()
    if not isinstance(recipe, str) or recipe not in known:
        recipe = folder.name.removesuffix("-cuda")
    if recipe not in known:
        recipe = "|".join(sorted(known)) or "RECIPE"
    return build_command(recipe) + " --force"


CHUNK_BYTES = 1 << 20


def file_digests(folder: Path) -> dict[str, str]:
    """sha256 of each file of a model folder but the manifest and the GGUF (gguf_sha256)."""
    digests = {}
    for file in sorted(folder.rglob("*")):
        rel = file.relative_to(folder).as_posix()
        if file.is_file() and rel not in (MANIFEST, "model.gguf"):
            digests[rel] = _sha256(file)
    return digests


def verify_checksums(model: ModelDir, only: tuple[str, ...] | None = None) -> None:
    """Every file the build recorded a checksum for, as built (about 1 s per GB; at load, in the
    loader's thread). A model built before checksums existed is loaded unchecked. `only`: just
    those files (a server whose engine is elsewhere reads no weights)."""
    for rel, expected in model.manifest.sha256.items():
        if only is not None and rel not in only:
            continue
        file = model.path / rel
        if file.is_file() and _sha256(file) != expected:
            raise ModelNotReady(
                f"model {model.manifest.name} is corrupt: {rel} does not match its checksum",
                fix=build_command(model.manifest.recipe) + " --force",
            )


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with file.open("rb") as stream:
        while chunk := stream.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def load_model_dir(path: Path, hint: str | None = None,
                   only: tuple[str, ...] | None = None) -> ModelDir:
    """Check a built model cheaply (manifest, files present with their sizes) before loading it."""
    name = hint or path.name
    fix = rebuild_command(path if os.sep in name else name)
    if not path.is_dir():
        raise ModelNotReady(f"no model folder at {path}", fix=build_command(name))
    try:
        manifest = Manifest.from_json(json.loads((path / MANIFEST).read_text()))
    except FileNotFoundError:
        raise ModelNotReady(f"{path} is not a built model (no {MANIFEST})", fix=fix) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelNotReady(f"the manifest of {path} is unreadable ({exc})", fix=fix) from None
    fix = build_command(manifest.recipe) + " --force"
    checked = manifest.files if only is None else {r: manifest.files.get(r) for r in only}
    for rel, size in checked.items():
        file = path / rel
        if not file.is_file():
            raise ModelNotReady(f"model {manifest.name} is corrupt: {rel} is missing", fix=fix)
        if size is not None and file.stat().st_size != size:
            raise ModelNotReady(
                f"model {manifest.name} is corrupt: {rel} has {file.stat().st_size} bytes, "
                f"expected {size}",
                fix=fix,
            )
    return ModelDir(path, manifest)
