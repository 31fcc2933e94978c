"""Missing, corrupt and half-built models give clear errors with the fixing command."""

import json
import shutil
import subprocess
import sys

import pytest

from jupyter_codecomp.errors import ModelNotReady
from jupyter_codecomp.models.recipes import available_recipes, get_recipe
from jupyter_codecomp.models.store import ModelStore


@pytest.fixture
def store_copy(tmp_path, test_model):
    target = tmp_path / "models" / test_model.path.name
    shutil.copytree(test_model.path, target)
    return ModelStore(tmp_path / "models"), target


def test_recipes_pin_every_download():
    recipes = available_recipes()
    assert {"qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b", "smollm2-135m"} <= set(recipes)
    for name in ("qwen2.5-coder-0.5b", "smollm2-135m"):
        recipe = get_recipe(name)
        assert recipe.gguf_sha256 and all(p.sha256 for p in recipe.packages)
    assert get_recipe("qwen2.5-coder-0.5b").prompt.fim


def test_missing_model_names_the_build_command(tmp_path):
    with pytest.raises(ModelNotReady) as info:
        ModelStore(tmp_path).resolve("qwen2.5-coder-0.5b")
    assert info.value.fix == "jupyter codecomp model build qwen2.5-coder-0.5b"


def test_truncated_file_is_reported_corrupt(store_copy):
    store, path = store_copy
    data = path / "model.onnx.data"
    data.write_bytes(data.read_bytes()[:1000])
    with pytest.raises(ModelNotReady) as info:
        store.resolve("smollm2-135m")
    assert "corrupt" in info.value.message and "model.onnx.data" in info.value.message
    assert info.value.fix == "jupyter codecomp model build smollm2-135m --force"


def test_half_built_folder_is_never_a_model(store_copy):
    store, path = store_copy
    (path / "codecomp.json").unlink()
    assert store.list() == []
    with pytest.raises(ModelNotReady, match="not a built model"):
        store.resolve("smollm2-135m")


def test_unreadable_manifest(store_copy):
    store, path = store_copy
    (path / "codecomp.json").write_text("{not json")
    with pytest.raises(ModelNotReady, match="unreadable"):
        store.resolve(str(path))


def test_onnx_that_does_not_load_is_a_clear_error(store_copy):
    from jupyter_codecomp.completion.onnx_engine import OnnxEngine

    store, path = store_copy
    size = (path / "model.onnx").stat().st_size
    (path / "model.onnx").write_bytes(b"\0" * size)  # same size, garbage inside
    model = store.resolve("smollm2-135m")
    with pytest.raises(ModelNotReady, match="ONNX Runtime cannot load"):
        OnnxEngine(model.path, device="cpu")


def cli(*args, env_cache):
    return subprocess.run(
        [sys.executable, "-m", "jupyter_codecomp", *args],
        capture_output=True, text=True, env={**__import__("os").environ,
                                             "JUPYTER_CODECOMP_CACHE_DIR": str(env_cache)},
    )


def test_cli_errors_are_one_line_with_a_fix(tmp_path):
    result = cli("complete", "-", "--model", "qwen2.5-coder-0.5b", env_cache=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "error: model 'qwen2.5-coder-0.5b' is not built" in result.stderr
    assert "fix: jupyter codecomp model build qwen2.5-coder-0.5b" in result.stderr
    unknown = cli("model", "build", "nonexistent", env_cache=tmp_path)
    assert unknown.returncode == 1 and "unknown model 'nonexistent'" in unknown.stderr


def test_cli_complete_and_list(tmp_path, test_model):
    source = tmp_path / "cell.py"
    source.write_text("def square(x):\n    return <CURSOR>\n")
    result = cli("complete", str(source), "--model", str(test_model.path), "--json",
                 env_cache=test_model.path.parent)
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout)
    assert reply["model"] == "smollm2-135m-int4" and reply["completions"]
    listing = cli("model", "list", env_cache=test_model.path.parent)
    assert "smollm2-135m" in listing.stdout and "int4, cpu" in listing.stdout
