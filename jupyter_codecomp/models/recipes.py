"""Model recipes: the declarative `models/*.toml` files that say what to fetch and how to export.

A recipe pins the PyPI packages that carry the weights (version and wheel sha256), the assembled
GGUF's size and sha256, the export precision per device, and the prompt format (FIM tokens, file
separator, stop tokens). Serving reads the prompt format back from the built model's manifest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import tomllib

from ..errors import CodecompError

DEFAULT_MODEL = "qwen2.5-coder-0.5b"


@dataclass(frozen=True)
class WeightPackage:
    name: str
    version: str
    members: tuple[str, ...]  # glob patterns of the wheel members to join, in order
    sha256: str | None = None


@dataclass(frozen=True)
class PromptFormat:
    fim: bool = False
    fim_prefix: str = ""
    fim_suffix: str = ""
    fim_middle: str = ""
    file_separator: str = ""
    stop_tokens: tuple[str, ...] = ()


@dataclass(frozen=True)
class Pairing:
    """A pairing recipe's members: `verifier` checks what `draft` proposes (a recipe name, or
    "prompt-lookup" for drafts from the prompt's own n-grams)."""

    verifier: str
    draft: str


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    license: str
    packages: tuple[WeightPackage, ...]
    gguf_size: int | None
    gguf_sha256: str | None
    precision: dict[str, str]  # device ("cpu", "cuda") -> builder precision
    prompt: PromptFormat = field(default_factory=PromptFormat)
    pair: Pairing | None = None  # a pairing recipe builds its members (models/pairing.py)

    @classmethod
    def from_file(cls, path: Path) -> Recipe:
        data = tomllib.loads(path.read_text())
        if "pair" in data:
            return cls(data["name"], data.get("description", ""), data.get("license", ""),
                       (), None, None, {}, pair=Pairing(**data["pair"]))
        source = data["source"]
        return cls(
            name=data["name"],
            description=data.get("description", ""),
            license=data.get("license", ""),
            packages=tuple(
                WeightPackage(p["name"], p["version"], tuple(p["members"]), p.get("sha256"))
                for p in source["packages"]
            ),
            gguf_size=source.get("gguf_size"),
            gguf_sha256=source.get("gguf_sha256"),
            precision={dev: spec["precision"] for dev, spec in data.get("export", {}).items()},
            prompt=PromptFormat(
                **{k: tuple(v) if isinstance(v, list) else v for k, v in data["prompt"].items()}
            ),
        )


def recipe_dirs() -> list[Path]:
    """Installed wheels carry the recipes inside the package; a source checkout has `models/`."""
    package = Path(__file__).parents[1]
    return [d for d in (package / "recipes", package.parent / "models") if d.is_dir()]


def available_recipes() -> dict[str, Recipe]:
    recipes: dict[str, Recipe] = {}
    for directory in recipe_dirs():
        for path in sorted(directory.glob("*.toml")):
            recipes.setdefault(path.stem, Recipe.from_file(path))
    return recipes


def get_recipe(name: str) -> Recipe:
    recipes = available_recipes()
    if name not in recipes:
        raise CodecompError(
            f"unknown model {name!r}",
            fix=f"choose one of: {', '.join(sorted(recipes))}",
        )
    return recipes[name]
