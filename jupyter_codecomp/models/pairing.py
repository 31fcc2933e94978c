"""Pairing recipes: a model with its drafter for speculative decoding, built as one model.

`jupyter codecomp model build qwen2.5-coder-1.5b-spec` builds (or finds) the two member models,
then makes a folder that serves as one model:
- the verifier: the member's files as hard links (no copy of the weights), except `model.onnx`,
  rewritten by `write_verifier` to return the logits of the last 16 positions of a pass beside
  the last one's (`completion.kv_cache.LAST_LOGITS`);
- `draft/`: the draft model's files as hard links (absent for prompt-lookup drafting);
- the manifest, whose `pair` names both.

Why a rewritten graph: ONNX Runtime GenAI 0.18 sizes its `logits` buffer either to one row
(`prune_lm_head`) or to every prompt position (1500 x 151936 floats, 0.9 GB for a cold prompt).
Its own speculative decoding (`model.draft` in genai_config, `set_speculative_options`) needs
the full export, verifies sequentially on a pruned one, and drives generation itself (no token
healing, no per-token stopping criteria). An extra output is passed through untouched
(`Generator.get_output`), so the verifier keeps the pruned `logits` for GenAI and gets the rows it
needs for checking drafts.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from rich.console import Console

from ..errors import CodecompError
from .recipes import Recipe, get_recipe
from .store import MANIFEST, Manifest, ModelDir, ModelStore, file_digests, load_model_dir

DRAFT_DIR = "draft"
ONNX = "model.onnx"
# The verifier's extra output: the logits of the last LAST_ROWS positions of a pass, so a pass
# over k drafts and the token before them checks them all (k <= LAST_ROWS - 1).
LAST_LOGITS = "logits_last"
LAST_ROWS = 16
# The drafter that needs no second model: n-grams of the prompt itself (completion/speculative).
PROMPT_LOOKUP = "prompt-lookup"


def build_pair(recipe: Recipe, store: ModelStore, *, device: str = "cpu", force: bool = False,
               console: Console | None = None) -> ModelDir:
    from .builder import _replace, already_built, build_model

    console = console or Console(stderr=True)
    pair = recipe.pair
    target = store.path_for(recipe.name, device)
    built = None if force else already_built(recipe.name, target, console)
    if built is not None:
        return built
    started = time.monotonic()
    verifier = build_model(get_recipe(pair.verifier), store, device=device, console=console)
    draft = None
    if pair.draft != PROMPT_LOOKUP:
        draft = build_model(get_recipe(pair.draft), store, device=device, console=console)
    with tempfile.TemporaryDirectory(prefix=f".build-{recipe.name}-",
                                     dir=store.cache_dir) as scratch:
        output = Path(scratch) / "model"
        _link_model(verifier.path, output, skip={ONNX})
        write_verifier(verifier.path / ONNX, output / ONNX)
        if draft is not None:
            _link_model(draft.path, output / DRAFT_DIR)
        manifest = Manifest(
            name=recipe.name,
            recipe=recipe.name,
            device=device,
            precision=verifier.manifest.precision,
            prompt=verifier.manifest.prompt,
            gguf_sha256=verifier.manifest.gguf_sha256,
            files={str(p.relative_to(output)): p.stat().st_size
                   for p in sorted(output.rglob("*")) if p.is_file()},
            package_version=verifier.manifest.package_version,
            built_seconds=round(time.monotonic() - started, 1),
            pair={"verifier": pair.verifier,
                  "draft": DRAFT_DIR if draft is not None else PROMPT_LOOKUP,
                  "draft_model": pair.draft},
        )
        manifest.sha256 = file_digests(output)
        (output / MANIFEST).write_text(json.dumps(manifest.to_json(), indent=2))
        _replace(output, target)
    console.print(f"[green]✓[/] built {recipe.name}: {pair.verifier} verifies "
                  f"{pair.draft} drafts, at {target}")
    return load_model_dir(target)


def draft_source(model: ModelDir) -> Path | str | None:
    """What drafts for a built model: its draft model's folder, PROMPT_LOOKUP, or None (not a
    pairing: plain decoding)."""
    draft = model.manifest.pair.get("draft")
    if not draft:
        return None
    return PROMPT_LOOKUP if draft == PROMPT_LOOKUP else model.path / draft


def write_verifier(source: Path, out: Path, rows: int = LAST_ROWS) -> None:
    """Rewrite a `prune_lm_head` export: the head reads the last `rows` positions (a Slice where
    the builder put a Gather of the last one) into `LAST_LOGITS`, and `logits` is its last row."""
    try:
        import onnx
        from onnx import helper
    except ImportError:
        raise CodecompError("building a pairing needs onnx",
                            fix="pip install 'jupyter-codecomp[export]'") from None
    model = onnx.load(str(source), load_external_data=False)
    graph = model.graph
    nodes = {n.name: n for n in graph.node}
    gather, unsqueeze = nodes.get("/lm_head/prune/Gather"), nodes.get("/lm_head/prune/Unsqueeze")
    head = next((n for n in graph.node if unsqueeze and unsqueeze.output[0] in n.input), None)
    if gather is None or head is None:
        raise CodecompError(f"{source} is not a prune_lm_head export: no last-position Gather",
                            fix="rebuild the member: jupyter codecomp model build NAME --force")
    hidden = gather.input[0]
    graph.initializer.extend([
        helper.make_tensor("/lm_head/last/starts", onnx.TensorProto.INT64, [1], [-rows]),
        helper.make_tensor("/lm_head/last/one", onnx.TensorProto.INT64, [1], [-1]),
        helper.make_tensor("/lm_head/last/ends", onnx.TensorProto.INT64, [1], [2**62]),
        helper.make_tensor("/lm_head/last/axes", onnx.TensorProto.INT64, [1], [1]),
    ])
    rows_out = "/lm_head/last/Slice/output_0"
    index = list(graph.node).index(gather)
    graph.node.remove(gather)
    graph.node.remove(unsqueeze)
    graph.node.insert(index, helper.make_node(
        "Slice", [hidden, "/lm_head/last/starts", "/lm_head/last/ends", "/lm_head/last/axes"],
        [rows_out], name="/lm_head/last/Slice"))
    logits = head.output[0]
    head.input[list(head.input).index(unsqueeze.output[0])] = rows_out
    head.output[0] = LAST_LOGITS
    graph.node.append(helper.make_node(
        "Slice", [LAST_LOGITS, "/lm_head/last/one", "/lm_head/last/ends", "/lm_head/last/axes"],
        [logits], name="/lm_head/last/Logits"))
    # The builder recorded the pruned shape [batch, 1, hidden]; it no longer holds.
    for info in [v for v in graph.value_info if v.name == unsqueeze.output[0]]:
        graph.value_info.remove(info)
    declared = next(o for o in graph.output if o.name == logits)
    extra = onnx.ValueInfoProto()
    extra.CopyFrom(declared)
    extra.name = LAST_LOGITS
    extra.type.tensor_type.shape.dim[1].dim_param = "last_positions"
    graph.output.append(extra)
    onnx.save(model, str(out))


def _link_model(source: Path, out: Path, skip: set[str] = frozenset()) -> None:
    """Hard-link a built model's files (the same disk: the cache); copy where links fail."""
    out.mkdir(parents=True)
    for path in source.iterdir():
        # The llama.cpp GGUF some builds keep beside the export is not part of the ONNX model.
        if not path.is_file() or path.name in skip | {MANIFEST} or path.suffix == ".gguf":
            continue
        try:
            os.link(path, out / path.name)
        except OSError:
            shutil.copy2(path, out / path.name)
