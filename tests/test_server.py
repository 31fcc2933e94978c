"""The completion API on a real Jupyter server (pytest-jupyter) with the SmolLM2 test model."""

import asyncio
import json

import nbformat
import pytest
from jupyter_client.session import Session
from tornado.httpclient import HTTPClientError

from jupyter_codecomp.completion.service import ServiceLoader
from jupyter_codecomp.completion.settings import ServiceSettings
from jupyter_codecomp.errors import ModelNotReady


async def wait_ready(jp_fetch, timeout=60.0):
    for _ in range(int(timeout * 10)):
        status = json.loads((await jp_fetch("codecomp", "status")).body)
        if status["state"] != "loading":
            return status
        await asyncio.sleep(0.1)
    raise AssertionError("model did not load")


async def post(jp_fetch, route, body, **kwargs):
    raw = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return await jp_fetch("codecomp", route, method="POST", body=raw, **kwargs)


async def error_of(coro):
    with pytest.raises(HTTPClientError) as info:
        await coro
    response = info.value.response
    return response.code, json.loads(response.body)["error"], response.headers


async def test_status_and_rest_completion(jp_fetch):
    status = await wait_ready(jp_fetch)
    assert status["state"] == "ready" and status["device"] == "cpu"
    assert status["model"] == "smollm2-135m-int4" and status["enabled"]
    reply = json.loads((await post(jp_fetch, "complete", {
        "prefix": "def add(a, b):\n    return ",
        "cells": [{"cell_type": "markdown", "source": "Adding numbers"}],
        "n": 2,
    })).body)
    assert reply["completions"] and reply["model"] == "smollm2-135m-int4"
    assert reply["context"]["cells"] == 1 and reply["disabled"] is None
    assert set(reply["timings_ms"]) >= {"context", "prefill", "decode", "total"}
    status = json.loads((await jp_fetch("codecomp", "status")).body)
    assert status["latency_ms"]["last"] is not None


@pytest.mark.parametrize("body,field", [
    ({}, "prefix"),
    ({"prefix": 3}, "prefix"),
    ({"prefix": "x", "n": 9}, "n"),
    ({"prefix": "x", "max_new_tokens": 0}, "max_new_tokens"),
    ({"prefix": "x", "mode": "paragraph"}, "mode"),
    ({"prefix": "x", "cells": [{"cell_type": "python", "source": ""}]}, "cells[0].cell_type"),
    ({"prefix": "x", "cells_below": "nope"}, "cells_below"),
    ({"prefix": "x", "surprise": 1}, "surprise"),
    ("{not json", "body"),
    ([1, 2], "body"),
])
async def test_bad_input_is_a_400_naming_the_field(jp_fetch, body, field):
    code, error, _ = await error_of(post(jp_fetch, "complete", body))
    assert code == 400 and error["message"].startswith(field)
    assert "Traceback" not in error["message"]


async def test_oversized_body_is_a_413(jp_fetch):
    code, error, _ = await error_of(post(jp_fetch, "complete", {"prefix": "x" * 3_000_000}))
    assert code == 413 and error["code"] == "too_large"


async def test_requests_without_a_token_are_refused(jp_fetch, http_server_client, jp_base_url):
    for method, route, body in [("GET", "status", None), ("POST", "complete", b'{"prefix": "x"}')]:
        with pytest.raises(HTTPClientError) as info:
            url = f"{jp_base_url}codecomp/{route}"
            await http_server_client.fetch(url, method=method, body=body)
        assert info.value.code in (401, 403)


async def test_disabled_path_and_disabled_notebook(jp_fetch, jp_root_dir, jp_serverapp):
    await wait_ready(jp_fetch)
    jp_serverapp.web_app.settings["codecomp"].settings.disabled_paths = ["exams/**"]
    reply = json.loads((await post(jp_fetch, "complete", {
        "prefix": "x = ", "path": "exams/final/q1.ipynb"})).body)
    assert reply["completions"] == [] and reply["disabled"] == "disabled_paths"

    notebook = nbformat.v4.new_notebook(metadata={"codecomp": {"enabled": False}})
    nbformat.write(notebook, jp_root_dir / "quiz.ipynb")
    body = {"prefix": "x = ", "path": "quiz.ipynb"}
    reply = json.loads((await post(jp_fetch, "complete", body)).body)
    assert reply["completions"] == [] and reply["disabled"] == "notebook"

    nbformat.write(nbformat.v4.new_notebook(), jp_root_dir / "lesson.ipynb")
    body = {"prefix": "x = ", "path": "lesson.ipynb"}
    reply = json.loads((await post(jp_fetch, "complete", body)).body)
    assert reply["disabled"] is None and reply["completions"]


async def test_503_with_retry_after_while_loading_and_when_failed(jp_fetch, jp_serverapp, tmp_path):
    completer = jp_serverapp.web_app.settings["codecomp"]
    original = completer.loader
    try:
        loading = ServiceLoader(completer.settings.service_settings())
        loading.state = "loading"  # a loader that has not finished (its thread never started)
        completer.loader = loading
        code, error, headers = await error_of(post(jp_fetch, "complete", {"prefix": "x"}))
        assert code == 503 and error["code"] == "not_ready" and headers["Retry-After"]
        status = json.loads((await jp_fetch("codecomp", "status")).body)
        assert status["state"] == "loading"

        settings = ServiceSettings(model="qwen2.5-coder-0.5b", cache_dir=str(tmp_path))
        missing = ServiceLoader(settings)
        completer.loader = missing
        with pytest.raises(ModelNotReady):
            missing.wait()
        code, error, _ = await error_of(post(jp_fetch, "complete", {"prefix": "x"}))
        assert code == 503 and "jupyter codecomp model build qwen2.5-coder-0.5b" in error["message"]
        status = json.loads((await jp_fetch("codecomp", "status")).body)
        assert status["state"] == "failed"
        assert status["fix"] == "jupyter codecomp model build qwen2.5-coder-0.5b"
    finally:
        completer.loader = original


async def test_server_starts_with_a_missing_model(jp_serverapp):
    """A missing model never stops the server: the extension is loaded and reports failed."""
    completer = jp_serverapp.web_app.settings["codecomp"]
    assert completer.loader.state in ("loading", "ready")


# --- WebSocket ------------------------------------------------------------------------------


async def receive_until_done(ws, *request_ids, timeout=60):
    """Messages per id until every id is done (one reader: a socket has one message stream)."""
    messages = {rid: [] for rid in request_ids}
    pending = set(request_ids)
    while pending:
        message = json.loads(await asyncio.wait_for(ws.read_message(), timeout))
        if message["id"] in messages:
            messages[message["id"]].append(message)
            if message["done"]:
                pending.discard(message["id"])
    return messages[request_ids[0]] if len(request_ids) == 1 else messages


async def test_websocket_streams_then_replies(jp_fetch, jp_ws_fetch):
    await wait_ready(jp_fetch)
    ws = await jp_ws_fetch("codecomp", "stream")
    ws.write_message(json.dumps({"id": "a1", "request": {
        "prefix": "def greet(name):\n    ", "mode": "block", "max_new_tokens": 30}}))
    messages = await receive_until_done(ws, "a1")
    final = messages[-1]
    assert final["done"] and final["reply"]["completions"]
    assert final["text"] == final["reply"]["completions"][0]["text"]
    assert len(messages) >= 2 and not any(m["done"] for m in messages[:-1])  # streamed first
    ws.close()


async def test_websocket_cancel_and_supersede(jp_fetch, jp_ws_fetch):
    await wait_ready(jp_fetch)
    ws = await jp_ws_fetch("codecomp", "stream")
    long = {"prefix": "# a long list of numbers\nnumbers = [", "mode": "block",
            "max_new_tokens": 200}
    ws.write_message(json.dumps({"id": "c1", "request": long}))
    ws.write_message(json.dumps({"cancel": "c1"}))
    assert (await receive_until_done(ws, "c1"))[-1].get("cancelled") is True

    ws.write_message(json.dumps({"id": "s1", "key": "nb.ipynb#cell1", "request": long}))
    await asyncio.sleep(0.05)
    ws.write_message(json.dumps({"id": "s2", "key": "nb.ipynb#cell1",
                                 "request": {"prefix": "x = "}}))
    both = await receive_until_done(ws, "s1", "s2")
    assert both["s1"][-1].get("cancelled") is True
    assert both["s2"][-1]["done"] and "reply" in both["s2"][-1]

    # A late cancel names a request, not a key: the newer request with that key goes on.
    for request_id, prefix in (("k1", "y = "), ("k2", "y = 1")):
        ws.write_message(json.dumps({"id": request_id, "key": "nb.ipynb#cell2",
                                     "request": {"prefix": prefix}}))
    ws.write_message(json.dumps({"cancel": "k1"}))
    both = await receive_until_done(ws, "k1", "k2")
    assert "reply" in both["k2"][-1]

    ws.write_message(json.dumps({"id": "bad", "request": {"prefix": None}}))
    error = (await receive_until_done(ws, "bad"))[-1]["error"]
    assert error["code"] == "invalid_request" and error["message"].startswith("prefix")
    ws.close()


# --- context and live kernel variables -------------------------------------------------------


def own_client(km, kernel_id):
    """A client with its own session id: kernels route replies by session, and the server's
    clients share the kernel manager's."""
    kernel = km.get_kernel(kernel_id)
    return kernel.client(session=Session(key=kernel.session.key))


async def run_in_kernel(km, kernel_id, code):
    client = own_client(km, kernel_id)
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=60)
        reply = await client.execute_interactive(code, timeout=60)
        return reply["content"]
    finally:
        client.stop_channels()


async def test_context_shows_kernel_variables_without_running_user_code(jp_fetch, jp_serverapp):
    await wait_ready(jp_fetch)
    km = jp_serverapp.kernel_manager
    kernel_id = await km.start_kernel()
    try:
        setup = (
            "import pandas as pd\n"
            "sales_by_region = pd.DataFrame({'region': ['n', 's'], 'revenue_eur': [1.0, 2.5]})\n"
            "class Trap:\n"
            "    touched = False\n"
            "    @property\n"
            "    def boom(self):\n"
            "        Trap.touched = True\n"
            "        raise RuntimeError('touched')\n"
            "trap = Trap()\n"
        )
        before = (await run_in_kernel(km, kernel_id, setup))["execution_count"]
        body = {"prefix": "sales_by_region.", "kernel_id": kernel_id}
        report = json.loads((await post(jp_fetch, "context", body)).body)
        assert "sales_by_region" in report["variables_block"]
        assert "revenue_eur" in report["variables_block"] and "trap" in report["variables_block"]
        assert report["variables"] >= 2 and report["parts"][0]["kind"] == "variables"
        reply = json.loads((await post(jp_fetch, "complete", body)).body)
        assert reply["context"]["variables"] >= 2
        after = await run_in_kernel(km, kernel_id,
                                    "print(Trap.touched, _ if '_' in dir() else None)")
        assert after["execution_count"] == before + 1  # the inspection left no execution behind
    finally:
        await km.shutdown_kernel(kernel_id)


async def test_unknown_kernel_degrades_to_no_variables(jp_fetch):
    await wait_ready(jp_fetch)
    reply = json.loads((await post(jp_fetch, "complete", {
        "prefix": "x = ", "kernel_id": "00000000-0000-0000-0000-000000000000"})).body)
    assert reply["context"]["variables"] == 0 and reply["context"]["kernel"] == "unknown"


async def test_busy_kernel_is_served_from_the_cache(jp_fetch, jp_serverapp, tmp_path):
    await wait_ready(jp_fetch)
    km = jp_serverapp.kernel_manager
    kernel_id = await km.start_kernel()
    # The cell runs until the test opens the gate, after the completion reply: the reply must
    # have come while the kernel was busy, whatever the machine's speed.
    started, gate = tmp_path / "started", tmp_path / "gate"
    cell = (f"import pathlib\npathlib.Path({str(started)!r}).touch()\n"
            f"for _ in range(1200):\n    if pathlib.Path({str(gate)!r}).exists():\n        break\n"
            f"    time.sleep(0.05)\nelse:\n    raise TimeoutError('the gate never opened')")
    try:
        await run_in_kernel(km, kernel_id, "import time\nweekly_totals = [1, 2, 3]")
        body = {"prefix": "weekly_", "kernel_id": kernel_id}
        await post(jp_fetch, "complete", body)  # fills the cache
        client = own_client(km, kernel_id)
        client.start_channels()
        client.execute(cell)
        for _ in range(600):
            if started.exists():
                break
            await asyncio.sleep(0.05)
        assert started.exists(), "the cell never started"
        reply = json.loads((await post(jp_fetch, "complete", body)).body)
        gate.touch()
        done = await client.get_shell_msg(timeout=90)
        assert done["content"]["status"] == "ok"  # the cell was still waiting at the gate
        assert reply["context"]["variables"] >= 1
        assert reply["context"]["kernel"] in ("cached", "busy-cache", "fresh")
        client.stop_channels()
    finally:
        await km.shutdown_kernel(kernel_id, now=True)
