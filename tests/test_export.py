"""The export path on a micro model made from a config: ONNX logits equal torch's."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from rich.console import Console  # noqa: E402
from rich.progress import Progress  # noqa: E402

from jupyter_codecomp.models.builder import export_onnx  # noqa: E402


def test_micro_model_onnx_logits_match_torch(tmp_path, test_model):
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        tie_word_embeddings=True,
    )
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    checkpoint = tmp_path / "checkpoint"
    model.save_pretrained(checkpoint)
    # The exporter copies the tokenizer along: use the test model's real one.
    (checkpoint / "tokenizer.json").write_bytes((test_model.path / "tokenizer.json").read_bytes())
    config = {"tokenizer_class": "PreTrainedTokenizerFast"}
    (checkpoint / "tokenizer_config.json").write_text(json.dumps(config))

    out = tmp_path / "onnx"
    with Progress(console=Console(quiet=True)) as progress:
        export_onnx(checkpoint, out, "fp32", "cpu", tmp_path, progress)

    import onnxruntime_genai as og

    ids = [1, 520, 3007, 28, 1524, 30, 905, 17, 42, 7]
    cfg = og.Config(str(out))
    cfg.clear_providers()
    onnx_model = og.Model(cfg)
    params = og.GeneratorParams(onnx_model)
    params.set_search_options(max_length=64)
    generator = og.Generator(onnx_model, params)
    generator.append_tokens(ids)
    onnx_logits = generator.get_logits().reshape(-1)
    with torch.no_grad():
        torch_logits = model(torch.tensor([ids])).logits[0, -1].numpy()
    assert np.abs(onnx_logits - torch_logits).max() < 1e-3
    # And one decode step through the KV cache.
    generator.append_tokens([99])
    with torch.no_grad():
        torch_next = model(torch.tensor([ids + [99]])).logits[0, -1].numpy()
    assert np.abs(generator.get_logits().reshape(-1) - torch_next).max() < 1e-3
