"""A GGUF of a fine-tuned model, for llama.cpp (`jupyter codecomp serve`).

The base model's GGUF is copied whole (metadata, tokenizer, every tensor in its own quantization),
except the weights the adapter changed: those are written from the merged model in f16, which
llama.cpp reads beside quantized tensors. No converter from llama.cpp's source tree is needed.
The file grows by about 2 bytes per adapted weight (rank-16 adapters on the top 12 of
Qwen2.5-Coder-0.5B's 24 layers: about 180 M weights, +0.3 GB).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ..errors import CodecompError

# Hugging Face module -> GGUF tensor, per layer (llama.cpp's names for llama and qwen2).
GGUF_NAMES = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
HF_WEIGHT = re.compile(r"^model\.layers\.(\d+)\.(self_attn\.\w+|mlp\.\w+)\.weight$")


def adapted_weights(merged, adapter_dir: Path) -> dict[str, object]:
    """GGUF name -> merged weight (numpy f16) for each module the adapter touched."""
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    layers = config.get("layers_to_transform")
    targets = set(config["target_modules"])
    arch = merged.config.model_type
    out = {}
    for name, tensor in merged.state_dict().items():
        match = HF_WEIGHT.match(name)
        if not match:
            continue
        layer, module = int(match.group(1)), match.group(2)
        if module.split(".")[-1] not in targets or (layers and layer not in layers):
            continue
        weight = tensor.detach().float().numpy()
        if arch == "llama" and module in ("self_attn.q_proj", "self_attn.k_proj"):
            heads = merged.config.num_attention_heads
            if module == "self_attn.k_proj":
                heads = merged.config.num_key_value_heads
            weight = _permute(weight, heads)  # llama.cpp's rotary layout for llama models
        out[f"blk.{layer}.{GGUF_NAMES[module]}.weight"] = weight.astype("float16")
    return out


def write_gguf(base_gguf: Path, replaced: dict[str, object], out: Path) -> Path:
    """The base GGUF with `replaced` tensors (f16) in place of its own."""
    import gguf

    reader = gguf.GGUFReader(base_gguf)
    arch = reader.fields[gguf.Keys.General.ARCHITECTURE].contents()
    names = {t.name for t in reader.tensors}
    missing = set(replaced) - names
    if missing:
        raise CodecompError(f"the base GGUF has no tensor {sorted(missing)[0]}",
                            fix="fine-tune a model built from its recipe")
    writer = gguf.GGUFWriter(out, arch=arch)
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue  # the writer adds these itself
        kind = field.types[0]
        sub = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), kind, sub_type=sub)
    for t in reader.tensors:
        if t.name in replaced:
            data = replaced[t.name]
            writer.add_tensor_info(t.name, data.shape, data.dtype, data.nbytes,
                                   gguf.GGMLQuantizationType.F16)
        else:
            writer.add_tensor_info(t.name, t.data.shape, t.data.dtype, t.data.nbytes,
                                   t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for t in reader.tensors:
        writer.write_tensor_data(replaced.get(t.name, t.data),
                                 tensor_endianess=reader.endianess)
    writer.close()
    return out


def _permute(weight, heads: int):
    """convert_hf_to_gguf's permutation of q/k rows for llama (rotary halves interleaved)."""
    rows = weight.shape[0]
    return (weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))
