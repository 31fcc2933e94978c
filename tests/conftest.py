"""Shared fixtures: the SmolLM2 test model built from its real package file, a service on it, and
a real Jupyter server (pytest-jupyter) with the extension enabled."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault(
    "JUPYTER_CODECOMP_CACHE_DIR", str(Path(__file__).resolve().parents[1] / ".cache" / "models")
)

from jupyter_codecomp.config import CodecompConfig  # noqa: E402
from jupyter_codecomp.store import ModelDir, ModelStore  # noqa: E402

pytest_plugins = ["pytest_jupyter.jupyter_server"]

TEST_MODEL = "smollm2-135m"


@pytest.fixture(scope="session")
def test_model() -> ModelDir:
    """Built once (CI builds it before the tests; a fresh checkout builds it here, ~1 min)."""
    store = ModelStore()
    path = store.path_for(TEST_MODEL)
    if not (path / "codecomp.json").exists():
        from jupyter_codecomp.builder import build_model
        from jupyter_codecomp.recipes import get_recipe

        build_model(get_recipe(TEST_MODEL), store)
    return store.resolve(TEST_MODEL)


@pytest.fixture(scope="session")
def service(test_model):
    from jupyter_codecomp.service import CompletionService

    return CompletionService(test_model, CodecompConfig(device="cpu", threads=2))


@pytest.fixture
def jp_server_config(test_model, tmp_path):
    return {
        "ServerApp": {"jpserver_extensions": {"jupyter_codecomp": True}},
        "CodecompConfig": {
            "model": str(test_model.path),
            "device": "cpu",
            "threads": 2,
            "disabled_paths": ["exams/**"],
        },
    }
