"""`jupyter codecomp finetune` on the real SmolLM2 test model and a tiny corpus written here.

Steps are short (examples of at most 128 tokens) so the whole file stays within a couple of
minutes on a CPU: a few steps train, the adapter merges, the merged model exports through the
builder's ONNX path and completes through the service, and the CLI puts it in the cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

pytest.importorskip("peft")
pytest.importorskip("torch")

from rich.console import Console  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

from jupyter_codecomp.errors import CodecompError  # noqa: E402
from jupyter_codecomp.models.finetune import (  # noqa: E402
    Hyperparameters,
    LoraTrainer,
    mean_target_loss,
    plan_batches,
)
from jupyter_codecomp.models.finetune_export import base_checkpoint  # noqa: E402
from jupyter_codecomp.models.store import ModelStore  # noqa: E402
from jupyter_codecomp.tools.training_data import build_corpus  # noqa: E402

TINY = dict(batch_tokens=128, validation_examples=4, lr=2e-3, eval_every=2, seed=0)
COURSE = {
    "week1": ["import pandas as pd\nimport numpy as np",
              "sales = pd.read_csv('sales.csv')\nsales.head()",
              "total = sales['amount'].sum()\nprint(total)"],
    "week2": ["import pandas as pd",
              "orders = pd.read_csv('orders.csv')\norders = orders.dropna()",
              "for region, group in orders.groupby('region'):\n    print(region, len(group))"],
    "week3": ["import numpy as np",
              "values = np.arange(10)\nsquares = values ** 2",
              "def mean_of(xs):\n    return sum(xs) / len(xs)\n\nprint(mean_of(squares))"],
}


def write_course(folder: Path, cells: dict[str, list[str]] = COURSE, markdown_only=False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, sources in cells.items():
        nb = nbformat.v4.new_notebook()
        nb.cells.append(nbformat.v4.new_markdown_cell(f"# {name}\nThis week we load data."))
        make = nbformat.v4.new_markdown_cell if markdown_only else nbformat.v4.new_code_cell
        nb.cells += [make(source) for source in sources]
        nbformat.write(nb, folder / f"{name}.ipynb")
    return folder


@pytest.fixture(scope="module")
def tokenizer(test_model):
    return Tokenizer.from_file(str(test_model.path / "tokenizer.json"))


@pytest.fixture(scope="module")
def checkpoint(test_model):
    return base_checkpoint(test_model, ModelStore(), Console(stderr=True))


@pytest.fixture(scope="module")
def corpus(test_model, tokenizer, tmp_path_factory):
    course = write_course(tmp_path_factory.mktemp("course"))
    return build_corpus(sorted(course.glob("*.ipynb")), tokenizer, test_model.manifest.prompt,
                        seed=0, max_tokens=TINY["batch_tokens"])


@pytest.fixture(scope="module")
def trained(checkpoint, corpus, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    hp = Hyperparameters(max_steps=4, **TINY)
    result = LoraTrainer(checkpoint, hp, run_dir).train(corpus.train, corpus.validation)
    return hp, run_dir, result


def test_examples_are_cut_by_the_serving_prompt_and_split_by_notebook(test_model, tokenizer,
                                                                       corpus, tmp_path):
    again = build_corpus(corpus.train_notebooks + corpus.validation_notebooks, tokenizer,
                         test_model.manifest.prompt, seed=0, max_tokens=TINY["batch_tokens"])
    assert again.train == corpus.train and again.validation == corpus.validation
    train_names = {e.notebook for e in corpus.train}
    assert train_names.isdisjoint({e.notebook for e in corpus.validation})
    assert len(corpus.train_notebooks) == 2 and len(corpus.validation_notebooks) == 1
    # Markdown as the prompt renders it; the target is text of the notebook.
    prompts = [tokenizer.decode(list(e.prompt)) for e in corpus.train]
    assert any("# %% [markdown]" in p for p in prompts)
    assert "variables" not in " ".join(prompts).lower()
    targets = [tokenizer.decode(list(e.target)) for e in corpus.train]
    assert any("read_csv" in t for t in targets)
    keys = [(e.prompt, e.target) for e in corpus.train + corpus.validation]
    assert len(keys) == len(set(keys))  # deduplicated
    assert f"{len(corpus.train)} training" in corpus.describe()


def test_a_few_steps_lower_the_training_loss(checkpoint, corpus, trained):
    from jupyter_codecomp.models.finetune import load_base

    hp, run_dir, result = trained
    assert result.steps == 4 and len(result.train_losses) == 4
    # The examples the steps trained on (a forward pass each; the whole corpus would cost more).
    sample = [corpus.train[i] for batch in plan_batches(corpus.train, hp) for i in batch][:8]
    before = mean_target_loss(load_base(checkpoint, "cpu"), sample, 0, "cpu")
    after = mean_target_loss(_last_adapter_model(checkpoint, hp, run_dir), sample, 0, "cpu")
    assert after < before


def test_the_merged_model_gives_the_adapters_logits(checkpoint, trained):
    import torch

    from jupyter_codecomp.models.finetune_export import merge_adapter

    hp, run_dir, _ = trained
    adapted = _last_adapter_model(checkpoint, hp, run_dir)
    lora_b = [p for n, p in adapted.named_parameters() if "lora_B" in n]
    assert any(p.abs().sum() > 0 for p in lora_b)  # the adapter is not a no-op
    adapted.save_pretrained(run_dir / "last")
    ids = torch.tensor([[1, 504, 3458, 314, 28, 1052, 30, 2437, 42, 5110]])
    with torch.no_grad():
        expected = adapted(input_ids=ids).logits
        merged = merge_adapter(checkpoint, run_dir / "last")
        got = merged(input_ids=ids).logits
    assert torch.allclose(got, expected, atol=2e-4), (got - expected).abs().max()


def test_resume_continues_where_the_run_stopped(checkpoint, corpus, trained, tmp_path):
    hp, _, first = trained
    run_dir = tmp_path / "resumed"
    short = Hyperparameters(max_steps=2, **TINY)
    LoraTrainer(checkpoint, short, run_dir).train(corpus.train, corpus.validation)
    resumed = LoraTrainer(checkpoint, hp, run_dir).train(corpus.train, corpus.validation,
                                                         resume=True)
    assert resumed.steps == 4
    # The same batches in the same order as the uninterrupted run: the same losses.
    assert resumed.train_losses == pytest.approx(first.train_losses, abs=1e-3)
    with pytest.raises(CodecompError, match="differ"):
        LoraTrainer(checkpoint, Hyperparameters(max_steps=4, **{**TINY, "lr": 1e-4}),
                    run_dir).train(corpus.train, corpus.validation, resume=True)


def test_a_corpus_without_code_is_a_one_line_error(test_model, tokenizer, tmp_path):
    course = write_course(tmp_path / "prose", markdown_only=True)
    with pytest.raises(CodecompError, match="no usable code"):
        build_corpus(sorted(course.glob("*.ipynb")), tokenizer, test_model.manifest.prompt,
                     seed=0, max_tokens=128)
    empty = tmp_path / "empty"
    empty.mkdir()
    result = _cli("finetune", str(empty), "--base", "smollm2-135m", "--name", "x")
    assert result.returncode == 1
    assert "no notebooks found" in result.stderr and "Traceback" not in result.stderr


def test_the_cli_exports_a_model_the_service_completes_with(test_model, checkpoint, tmp_path):
    from jupyter_codecomp.completion.protocol import CompletionRequest
    from jupyter_codecomp.completion.service import CompletionService
    from jupyter_codecomp.completion.settings import ServiceSettings

    cache = tmp_path / "cache"
    (cache / ".checkpoints").mkdir(parents=True)
    # The base model and its converted checkpoint, shared with the test cache (no copy).
    (cache / "smollm2-135m").symlink_to(test_model.path)
    (cache / ".checkpoints" / "smollm2-135m").symlink_to(checkpoint)
    course = write_course(tmp_path / "course")
    result = _cli("finetune", str(course), "--base", "smollm2-135m", "--name", "course-ft",
                  "--max-steps", "2", "--batch-tokens", "128", "--validation-examples", "2",
                  "--threads", "2", "--cache-dir", str(cache))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "training and 1 validation notebooks" in result.stderr

    listing = _cli("model", "list", "--cache-dir", str(cache))
    assert "course-ft" in listing.stdout and "fine-tuned from smollm2-135m" in listing.stdout
    info = json.loads(_cli("model", "info", "course-ft", "--cache-dir", str(cache)).stdout)
    assert info["finetune"]["base"] == "smollm2-135m"
    assert info["finetune"]["steps"] == 2
    assert {d["split"] for d in info["finetune"]["data"]} == {"train", "validation"}
    assert all(len(d["sha256"]) == 64 for d in info["finetune"]["data"])

    model = ModelStore(cache).resolve("course-ft")
    service = CompletionService.load(model, ServiceSettings(device="cpu", threads=2))
    reply = service.complete(CompletionRequest(prefix="import pandas as pd\nsales = pd.",
                                               max_new_tokens=8))
    assert reply.model == "course-ft-" + model.manifest.precision
    assert reply.completions and reply.completions[0].text.strip()

    # llama.cpp (`jupyter codecomp serve`) serves it from the GGUF its export wrote.
    from jupyter_codecomp.tools.serve import ServeOptions, find_gguf, start_server

    gguf = find_gguf(ModelStore(cache), "course-ft")
    assert gguf.parent == model.path
    options = ServeOptions(port=_free_port(), parallel=1, threads=2, ctx_size=256)
    server = start_server(gguf, options)
    try:
        answer = _post_when_ready(f"http://127.0.0.1:{options.port}/completion",
                                  {"prompt": "import pandas as pd\n", "n_predict": 4})
        assert answer["tokens_predicted"] > 0
    finally:
        del server


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _post_when_ready(url: str, body: dict) -> dict:
    """llama.cpp answers 503 while it loads the model."""
    import time

    import httpx

    for _ in range(120):
        try:
            reply = httpx.post(url, json=body, timeout=120)
            if reply.status_code == 200:
                return reply.json()
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"no answer from {url}")


def _last_adapter_model(checkpoint, hp, run_dir):
    """The base with the run's last adapter (from its resumable state), dropout off."""
    import torch
    from peft import set_peft_model_state_dict

    from jupyter_codecomp.models.finetune import add_adapters, load_base

    model = add_adapters(load_base(checkpoint, "cpu"), hp)
    state = torch.load(run_dir / "state.pt", weights_only=False)
    set_peft_model_state_dict(model, state["adapter"])
    return model.eval()


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}  # rich: no wrapped rows
    return subprocess.run([sys.executable, "-m", "jupyter_codecomp", *args],
                          capture_output=True, text=True, env=env)
