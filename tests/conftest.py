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

from jupyter_codecomp.completion.settings import ServiceSettings  # noqa: E402
from jupyter_codecomp.models.store import ModelDir, ModelStore  # noqa: E402

pytest_plugins = ["pytest_jupyter.jupyter_server"]

TEST_MODEL = "smollm2-135m"


@pytest.fixture(scope="session")
def test_model() -> ModelDir:
    """Built once (CI builds it before the tests; a fresh checkout builds it here, ~1 min)."""
    store = ModelStore()
    path = store.path_for(TEST_MODEL)
    if not (path / "codecomp.json").exists():
        from jupyter_codecomp.models.builder import build_model
        from jupyter_codecomp.models.recipes import get_recipe

        build_model(get_recipe(TEST_MODEL), store)
    return store.resolve(TEST_MODEL)


@pytest.fixture(scope="session")
def service(test_model):
    from jupyter_codecomp.completion.service import CompletionService

    return CompletionService.load(test_model, ServiceSettings(device="cpu", threads=2))


@pytest.fixture
def jp_server_config(test_model, tmp_path):
    return {
        "ServerApp": {"jpserver_extensions": {"jupyter_codecomp": True}},
        "CodecompConfig": {
            "model": str(test_model.path),
            "device": "cpu",
            "threads": 2,
            # No policy here: a policy restricts requests without a notebook (fail closed);
            # the policy's own tests (test_policy.py) set theirs.
        },
    }


@pytest.fixture
def no_model_config(tmp_path):
    """A server with the extension and no model to load: the `fake_engine` fixture puts a
    service in place, or the test is about what happens without one."""
    return {
        "ServerApp": {"jpserver_extensions": {"jupyter_codecomp": True}},
        "CodecompConfig": {"model": str(tmp_path / "no-model"), "device": "cpu"},
    }


@pytest.fixture
def fake_engine(jp_serverapp):
    """The server's model swapped for the scripted `FakeEngine` (the default script completes
    every prompt with `value + 1`): handler, policy and stream tests in milliseconds."""
    from jupyter_codecomp.completion.fake_engine import FakeEngine
    from jupyter_codecomp.completion.service import CompletionService, ServiceLoader
    from jupyter_codecomp.models.recipes import PromptFormat

    engine = FakeEngine(lambda prompt: "value + 1\nmore = 2\n")
    fmt = PromptFormat(fim=True, fim_prefix="<|fim_prefix|>", fim_suffix="<|fim_suffix|>",
                       fim_middle="<|fim_middle|>", stop_tokens=("<|endoftext|>",))
    completer = jp_serverapp.web_app.settings["codecomp"]
    settings = completer.settings.service_settings()
    completer.loader = ServiceLoader.serving(CompletionService(engine, fmt, "fake", settings),
                                             settings)
    return engine
