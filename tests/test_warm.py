"""Prefill ahead (issue 17): a warm request fills the KV cache and generates nothing; the real
engine's warm cache gives the same completion as a cold one; the warm queue never runs beside a
completion, is pre-empted by one, and keeps only the newest warm per notebook."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

from jupyter_codecomp.completion.fake_engine import FakeEngine
from jupyter_codecomp.completion.protocol import Cell, CompletionRequest
from jupyter_codecomp.completion.service import CompletionService
from jupyter_codecomp.errors import Cancelled
from jupyter_codecomp.models.recipes import PromptFormat
from jupyter_codecomp.server.warm import WarmQueue

FIM = PromptFormat(fim=True, fim_prefix="<|fim_prefix|>", fim_suffix="<|fim_suffix|>",
                   fim_middle="<|fim_middle|>", stop_tokens=("<|endoftext|>",))
CELLS = tuple(Cell("code", f"value_{i} = {i} * {i}\nprint(value_{i})") for i in range(12))


def fake_service(**engine_options) -> tuple[CompletionService, FakeEngine]:
    engine = FakeEngine(lambda prompt: "total + 1\n", **engine_options)
    return CompletionService(engine, FIM, "fake"), engine


def request(prefix: str, path: str = "nb.ipynb") -> CompletionRequest:
    return CompletionRequest(prefix=prefix, cells=CELLS, path=path, mode="line")


def test_warm_generates_nothing_and_the_next_keystroke_finds_the_prompt_cached():
    service, engine = fake_service()
    cached = service.warm(request("result = "))
    assert cached > 100 and engine.calls == []  # a prefill, no generation
    reply = service.complete(request("result = t"))
    # Only the last few tokens (token healing holds back up to 12 characters) are new.
    assert reply.context.cached_tokens >= cached - 12


def test_real_engine_warm_prefill_gives_the_cold_completion(service):
    """Chunked warm prefill, then a keystroke: the same text as a cold run, the prompt cached."""
    warm_request = request("result = value_3 +", "warm.ipynb")
    typed = request("result = value_3 + ")
    service.engine.reset()
    cold = service.complete(typed)
    service.engine.reset()
    cached = service.warm(warm_request)
    assert cached > 64  # more than one chunk
    warm = service.complete(CompletionRequest(**{**typed.__dict__, "path": "warm.ipynb"}))
    assert warm.context.cached_tokens >= cached - 4
    assert [c.text for c in warm.completions] == [c.text for c in cold.completions]


def test_real_engine_prefill_that_is_cancelled_raises_cancelled(service):
    service.engine.reset()
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        service.warm(request("x = "), cancel=cancel)


async def _settle(future, timeout=10.0) -> dict:
    return await asyncio.wait_for(asyncio.shield(future), timeout)


async def test_a_completion_preempts_the_running_warm():
    service, engine = fake_service(prefill_delay=0.01)  # ~5 s for this prompt
    queue = WarmQueue()
    warm = queue.submit(service, request("x = "), service_variables())
    await asyncio.sleep(0.1)  # running
    with queue.hold("nb.ipynb"):
        result = await _settle(warm, 2.0)
    assert result["state"] == "preempted" and engine.warmed == []
    queue.close()


async def test_no_warm_starts_while_a_completion_waits_and_it_runs_afterwards():
    service, engine = fake_service()
    queue = WarmQueue()
    with queue.hold("other.ipynb"):
        warm = queue.submit(service, request("x = "), service_variables())
        await asyncio.sleep(0.2)
        assert not warm.done() and engine.warmed == []
    assert (await _settle(warm))["state"] == "done"
    assert len(engine.warmed) == 1
    queue.close()


async def test_a_newer_warm_for_the_notebook_replaces_the_older():
    service, engine = fake_service(prefill_delay=0.005)
    queue = WarmQueue()
    first = queue.submit(service, request("x = "), service_variables())
    await asyncio.sleep(0.05)
    second = queue.submit(service, request("y = "), service_variables())
    assert (await _settle(first))["state"] == "replaced"
    assert (await _settle(second))["state"] == "done"
    assert len(engine.warmed) == 1 and "y =" in engine.warmed[0]
    queue.close()


async def test_another_notebooks_warm_resumes_after_the_completion():
    service, engine = fake_service(prefill_delay=0.005)
    queue = WarmQueue()
    warm = queue.submit(service, request("x = ", path="a.ipynb"), service_variables())
    await asyncio.sleep(0.05)
    with queue.hold("b.ipynb"):
        await asyncio.sleep(0.1)
        assert not warm.done()
    assert (await _settle(warm))["state"] == "done"
    queue.close()


def service_variables():
    from jupyter_codecomp.completion.context import Variables

    return Variables()


# --- the route, on a real Jupyter server with the scripted engine -----------------------------

@pytest.fixture
def jp_server_config(no_model_config):
    no_model_config["CodecompConfig"]["disabled_paths"] = ["exams/**"]
    return no_model_config


@pytest.fixture
def lesson(jp_root_dir):
    """The notebook the requests name (the policy reads it)."""
    notebook = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (jp_root_dir / "lesson.ipynb").write_text(json.dumps(notebook))


def body(prefix: str, path: str = "lesson.ipynb") -> str:
    cells = [{"cell_type": "code", "source": c.source} for c in CELLS]
    return json.dumps({"prefix": prefix, "cells": cells, "path": path})


async def test_warm_route_prefills_and_the_keystroke_reuses_it(jp_fetch, fake_engine, lesson):
    reply = json.loads((await jp_fetch("codecomp", "warm", method="POST",
                                       body=body("total = "))).body)
    assert reply["state"] == "done" and reply["cached_tokens"] > 100, reply
    assert fake_engine.calls == []  # nothing generated
    done = json.loads((await jp_fetch("codecomp", "complete", method="POST",
                                      body=body("total = v"))).body)
    assert done["context"]["cached_tokens"] >= reply["cached_tokens"] - 12


async def test_a_completion_is_never_kept_waiting_by_a_warm(jp_fetch, fake_engine, lesson):
    fake_engine.prefill_delay = 0.05  # this warm would take ~25 s
    warm = asyncio.ensure_future(jp_fetch("codecomp", "warm", method="POST",
                                          body=body("total = ")))
    await asyncio.sleep(0.3)  # the warm is prefilling
    completion = await jp_fetch("codecomp", "complete", method="POST", body=body("total = v"))
    assert json.loads(completion.body)["completions"]
    assert json.loads((await warm).body)["state"] == "preempted"
    assert fake_engine.warmed == []


async def test_warm_of_a_disabled_path_does_nothing(jp_fetch, fake_engine):
    reply = json.loads((await jp_fetch("codecomp", "warm", method="POST",
                                       body=body("x = ", path="exams/final.ipynb"))).body)
    assert reply["state"] == "disabled" and fake_engine.warmed == []


async def test_warm_with_a_bad_field_is_a_400_naming_it(jp_fetch, fake_engine):
    from tornado.httpclient import HTTPClientError

    with pytest.raises(HTTPClientError) as error:
        await jp_fetch("codecomp", "warm", method="POST", body=json.dumps({"prefix": 3}))
    assert error.value.code == 400 and b"prefix" in error.value.response.body
