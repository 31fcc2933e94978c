"""A shared engine: a real llama.cpp server (`jupyter codecomp serve`, xllamacpp, on the SmolLM2
test model's GGUF) behind a real Jupyter server whose `engine_url` points at it.

SmolLM2 has no FIM tokens, so the prompt is the rendered plain prompt, sent as token ids to
/v1/completions. One engine serves the module; the fault tests start their own and stop, freeze
or kill it. Proof that the engine stopped generating comes from llama.cpp's own log ("cancel
task") and its /slots, not from timing.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from tornado.httpclient import HTTPClientError

from jupyter_codecomp.completion.service import ServiceLoader

API_KEY = "test-key-1234"
LONG = {"prefix": "# a long list of numbers\nnumbers = [", "mode": "block", "max_new_tokens": 256}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Engine:
    """`jupyter codecomp serve` in a subprocess, its llama.cpp log in a file."""

    def __init__(self, model_path: Path, log: Path, port: int | None = None,
                 ctx_size: int = 2048, kv_tokens: int = 0):
        self.model_path, self.log_path = model_path, log
        self.ctx_size, self.kv_tokens = ctx_size, kv_tokens
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.process: subprocess.Popen | None = None
        self.stdout = ""

    def start(self) -> Engine:
        cmd = [sys.executable, "-m", "jupyter_codecomp", "serve", str(self.model_path),
               "--port", str(self.port), "--parallel", "2", "--threads", "1",
               "--ctx-size", str(self.ctx_size), "--kv-tokens", str(self.kv_tokens),
               "--api-key", API_KEY, "--slots"]
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
        self.stdout = self.process.stdout.readline()  # printed once the server listens
        for _ in range(600):
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health").status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            assert self.process.poll() is None, self.log_path.read_text()[-2000:]
            time.sleep(0.1)
        raise AssertionError("the engine did not start")

    def stop(self, sig=signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            if sig in (signal.SIGTERM, signal.SIGKILL):
                self.process.wait(30)

    def cancels(self) -> int:
        return self.log_path.read_text().count("cancel task")

    def slots(self) -> list[dict]:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        return httpx.get(f"http://127.0.0.1:{self.port}/slots", headers=headers).json()

    def wait_idle(self) -> None:
        for _ in range(300):
            if not any(slot["is_processing"] for slot in self.slots()):
                return
            time.sleep(0.1)
        raise AssertionError(f"a slot is still processing: {self.slots()}")


@pytest.fixture(scope="module")
def engine(test_model, tmp_path_factory):
    running = Engine(test_model.path, tmp_path_factory.mktemp("engine") / "llama.log").start()
    yield running
    running.stop()


@pytest.fixture
def jp_server_config(test_model, engine):
    return {
        "ServerApp": {"jpserver_extensions": {"jupyter_codecomp": True}},
        "CodecompConfig": {"model": str(test_model.path), "engine_url": engine.url,
                           "engine_api_key": API_KEY},
    }


def use_engine(jp_serverapp, url: str, key: str = API_KEY, **settings) -> ServiceLoader:
    """Point the running Jupyter server at another engine (a new loader, as on a restart)."""
    completer = jp_serverapp.web_app.settings["codecomp"]
    base = completer.settings.service_settings()
    loader = ServiceLoader(replace(base, engine_url=url, engine_api_key=key, **settings))
    loader.wait()
    completer.loader = loader
    return loader


async def post(jp_fetch, body) -> dict:
    reply = await jp_fetch("codecomp", "complete", method="POST", body=json.dumps(body))
    return json.loads(reply.body)


async def error_of(jp_fetch, body) -> tuple[int, dict]:
    with pytest.raises(HTTPClientError) as info:
        await post(jp_fetch, body)
    return info.value.response.code, json.loads(info.value.response.body)["error"]


async def status_of(jp_fetch) -> dict:
    return json.loads((await jp_fetch("codecomp", "status")).body)


async def wait_ready(jp_fetch) -> dict:
    for _ in range(600):
        status = await status_of(jp_fetch)
        if status["state"] != "loading":
            return status
        await asyncio.sleep(0.1)
    raise AssertionError("the service did not load")


async def receive_until_done(ws, *ids) -> dict[str, list[dict]]:
    messages = {i: [] for i in ids}
    pending = set(ids)
    while pending:
        message = json.loads(await asyncio.wait_for(ws.read_message(), 60))
        if message["id"] in messages:
            messages[message["id"]].append(message)
            if message["done"]:
                pending.discard(message["id"])
    return messages


# --- through the product's API --------------------------------------------------------------


async def test_serve_prints_the_engine_url_and_status_names_it(jp_fetch, engine):
    assert engine.stdout.strip() == f"engine_url: {engine.url}"
    status = await wait_ready(jp_fetch)
    assert status["state"] == "ready" and status["device"] == "remote"
    assert status["engine"] == {"url": engine.url, "state": "ready", "error": None, "fix": None}


async def test_streamed_completion_stops_at_the_end_of_the_line(jp_fetch, jp_ws_fetch, engine):
    await wait_ready(jp_fetch)
    cancels = engine.cancels()
    ws = await jp_ws_fetch("codecomp", "stream")
    ws.write_message(json.dumps({"id": "a", "request": {
        "prefix": "def add(a, b):\n    return a", "mode": "line", "max_new_tokens": 200}}))
    messages = (await receive_until_done(ws, "a"))["a"]
    ws.close()
    final = messages[-1]
    reply = final["reply"]
    text = reply["completions"][0]["text"]
    assert text and "\n" not in text and final["text"] == text
    assert all(not m["done"] for m in messages[:-1])
    assert all(b["text"].startswith(a["text"]) for a, b in zip(messages, messages[1:-1]))
    assert reply["device"] == "remote" and reply["context"]["prompt_tokens"] > 5
    # The line ended long before 200 tokens: the stream was closed and llama.cpp stopped.
    engine.wait_idle()
    assert engine.cancels() > cancels


async def test_alternatives_branch_on_the_first_token(jp_fetch, engine):
    await wait_ready(jp_fetch)
    body = {"prefix": "import numpy as np\nx = np.", "n": 3}
    reply = await post(jp_fetch, body)
    local = json.loads((await jp_fetch("codecomp", "context", method="POST",
                                       body=json.dumps(body))).body)
    # The engine counted exactly the prompt this server builds (the token ids are sent as such).
    assert reply["context"]["prompt_tokens"] == local["prompt_tokens"]
    texts = [c["text"] for c in reply["completions"]]
    assert len(texts) >= 2 and len(set(texts)) == len(texts)
    assert all(not t.startswith(" ") for t in texts)  # healed: the '.' was regenerated


async def test_second_keystroke_reuses_the_engine_cache(jp_fetch, engine):
    await wait_ready(jp_fetch)
    prefix = "import pandas as pd\nsales = pd.read_csv('sales.csv')\nby_region = sales.group"
    first = await post(jp_fetch, {"prefix": prefix, "path": "a.ipynb"})
    # llama.cpp frees the slot of a stream we closed at its next token; a keystroke sent before
    # then goes to another slot, whose cache holds another prompt (typing leaves the time).
    engine.wait_idle()
    second = await post(jp_fetch, {"prefix": prefix + "b", "path": "a.ipynb"})
    assert first["context"]["prompt_tokens"] > 15
    assert second["context"]["cached_tokens"] >= second["context"]["prompt_tokens"] - 4


async def test_cancel_and_supersede_free_the_engine_slot(jp_fetch, jp_ws_fetch, engine):
    await wait_ready(jp_fetch)
    ws = await jp_ws_fetch("codecomp", "stream")
    cancels = engine.cancels()
    ws.write_message(json.dumps({"id": "c", "request": LONG}))
    first = json.loads(await asyncio.wait_for(ws.read_message(), 60))  # it is generating
    ws.write_message(json.dumps({"cancel": "c"}))
    messages = (await receive_until_done(ws, "c"))["c"]
    assert not first["done"] and messages[-1].get("cancelled") is True
    engine.wait_idle()
    assert engine.cancels() == cancels + 1

    ws.write_message(json.dumps({"id": "s1", "key": "nb.ipynb#c1", "request": LONG}))
    json.loads(await asyncio.wait_for(ws.read_message(), 60))
    ws.write_message(json.dumps({"id": "s2", "key": "nb.ipynb#c1",
                                 "request": {"prefix": "x = ", "mode": "line"}}))
    both = await receive_until_done(ws, "s1", "s2")
    ws.close()
    assert both["s1"][-1].get("cancelled") is True and "reply" in both["s2"][-1]
    engine.wait_idle()
    assert engine.cancels() >= cancels + 2


# Text a tokenizer may split differently: accents, CJK, emoji, a lone combining mark, runs of
# spaces and tabs, CRLF, a literal special token, digits, and a cell over the context budget.
TRICKY_CELLS = [
    "naïve = 'café'  # 数据 🐍🐼\r\n\tx  =   1\u0301",
    "<|endoftext|> is text here; so is <|im_start|>",
    "n = 12345678901234567890\n" + "    " * 9 + "deep()",
    "\n".join(f"row_{i} = df.loc[{i}, 'Ünïcödé']" for i in range(400)),
]


async def test_the_engine_tokenizes_as_the_model_does(jp_fetch, jp_serverapp, engine):
    """By default the engine's /tokenize encodes (the server holds no tokenizer); the prompt is
    the one the model's own tokenizer builds, token for token."""
    body = {"prefix": "total = naïve + 数", "suffix": "  # 🐍\n",
            "cells": [{"cell_type": "code", "source": c} for c in TRICKY_CELLS]}

    async def context() -> dict:
        return json.loads((await jp_fetch("codecomp", "context", method="POST",
                                          body=json.dumps(body))).body)

    await wait_ready(jp_fetch)
    assert jp_serverapp.web_app.settings["codecomp"].service().engine.local_tokenizer is None
    remote = await context()
    use_engine(jp_serverapp, engine.url, engine_tokenize=False)
    local = await context()
    assert remote["prompt_text"] == local["prompt_text"] and remote["heal"] == local["heal"]
    assert remote["parts"] == local["parts"] and remote["prompt_tokens"] == local["prompt_tokens"]
    assert remote["cells_dropped"] == local["cells_dropped"] >= 1  # the long cell is over budget
    assert (await post(jp_fetch, body))["completions"] is not None  # and it completes


async def test_an_engine_without_tokenize_says_what_to_set(jp_fetch, jp_serverapp):
    """An OpenAI-compatible server that lists models but has no /tokenize (neither llama.cpp's
    nor vLLM's: a stand-in, the one fake here) is named, with the setting that fixes it."""
    with OpenAIStandIn(tokenize=(404, b"{}")) as url:
        use_engine(jp_serverapp, url)
        status = await status_of(jp_fetch)
        assert status["state"] == "engine_unavailable"
        assert "has no /tokenize" in status["error"] and "engine_tokenize" in status["fix"]
        code, error = await error_of(jp_fetch, {"prefix": "x = "})
        assert code == 503 and "engine_tokenize = False" in error["message"]


@pytest.mark.parametrize("reply", [b"not json", b'{"tokens": ["x"]}', b'{"ids": [1]}'])
async def test_a_tokenize_reply_that_is_no_ids_is_reported(jp_fetch, jp_serverapp, reply):
    """/tokenize answering 200 with something else than token ids: a 503 naming an unreadable
    reply, on completions and on /codecomp/context alike, and the status says so."""
    with OpenAIStandIn(tokenize=(200, reply)) as url:
        use_engine(jp_serverapp, url)
        status = await status_of(jp_fetch)
        assert status["state"] == "engine_unavailable" and status["engine"]["state"] == "error"
        code, error = await error_of(jp_fetch, {"prefix": "x = "})
        assert code == 503 and "unreadable reply" in error["message"]
        with pytest.raises(HTTPClientError) as info:
            await jp_fetch("codecomp", "context", method="POST", body=json.dumps({"prefix": "y"}))
        assert info.value.response.code == 503


class OpenAIStandIn(http.server.ThreadingHTTPServer):
    """Lists models; answers POST /tokenize with `tokenize` (status, body), anything else 404."""

    def __init__(self, tokenize: tuple[int, bytes]):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path == "/v1/models":
                    self._answer(200, b'{"object": "list", "data": []}')
                else:
                    self._answer(404, b"{}")

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self._answer(*tokenize) if self.path == "/tokenize" else self._answer(404, b"{}")

            def _answer(self, code: int, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    def __enter__(self) -> str:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()


async def test_the_prompt_fits_an_engine_with_a_small_context(jp_fetch, jp_serverapp, engine,
                                                              test_model, tmp_path):
    """An engine started with --ctx-size 512 refuses a longer request (HTTP 400); the server
    reads the size from /models and leaves out the farthest cells above instead."""
    cells = [{"cell_type": "code", "source": f"value_{i} = compute({i}, 'a label of some length')"
              f"  # step {i} of the analysis"} for i in range(40)]
    body = {"prefix": "result = value_", "cells": cells, "path": "long.ipynb"}

    async def context() -> dict:
        return json.loads((await jp_fetch("codecomp", "context", method="POST",
                                          body=json.dumps(body))).body)

    await wait_ready(jp_fetch)
    whole = await context()  # on the module's engine: 2048 tokens a slot
    own = Engine(test_model.path, tmp_path / "llama.log", ctx_size=512).start()
    try:
        use_engine(jp_serverapp, own.url)
        assert httpx.post(f"http://127.0.0.1:{own.port}/v1/completions", json={
            "prompt": "x = 1\n" * 600, "max_tokens": 4},
            headers={"Authorization": f"Bearer {API_KEY}"}).status_code == 400
        reply = await post(jp_fetch, body)
        fitted = await context()
        assert reply["context"]["prompt_tokens"] == fitted["prompt_tokens"]
        assert fitted["prompt_tokens"] + 48 <= 512 < whole["prompt_tokens"] + 48
        assert 0 < fitted["cells_used"] < whole["cells_used"]
        assert (await status_of(jp_fetch))["state"] == "ready"
    finally:
        own.stop()


async def test_a_full_kv_cache_is_a_clear_error_that_passes(jp_fetch, jp_serverapp, test_model,
                                                            tmp_path):
    """The slots share one KV cache (`--kv-tokens`): two students whose requests together need
    more than it holds. llama.cpp ends one of them (in its stream, with HTTP 200): that student
    gets a 503 that says what to change, the other their completion, and the next request
    passes."""
    cells = [{"cell_type": "code", "source": "".join(f"row_{i}_{k} = measure({k}, 'sample')\n"
                                                      for k in range(24))} for i in range(2)]
    own = Engine(test_model.path, tmp_path / "llama.log", ctx_size=1024, kv_tokens=1024).start()
    try:
        use_engine(jp_serverapp, own.url)
        long = {**LONG, "cells": cells, "path": "a.ipynb"}
        first = asyncio.ensure_future(post(jp_fetch, long))
        await asyncio.sleep(0.5)  # the first is generating its 256 tokens when the second comes
        second = asyncio.ensure_future(post(jp_fetch, {**long, "path": "b.ipynb"}))
        outcomes = await asyncio.gather(first, second, return_exceptions=True)
        failed = [o for o in outcomes if isinstance(o, Exception)]
        assert failed, "both fitted: they were not decoded at once"
        assert all(_is_full(error) for error in failed), outcomes
        assert own.log_path.read_text().count("Context size has been exceeded") >= 1
        reply = await post(jp_fetch, {"prefix": "x = ", "path": "a.ipynb"})
        assert reply["device"] == "remote"
        assert (await status_of(jp_fetch))["state"] == "ready"
    finally:
        own.stop()


def _is_full(error: Exception) -> bool:
    if not isinstance(error, HTTPClientError) or error.response.code != 503:
        return False
    body = json.loads(error.response.body)["error"]
    return "no room left" in body["message"] and "--kv-tokens" in body["message"]


# --- faults ---------------------------------------------------------------------------------


async def test_engine_not_started_is_a_quick_503_and_a_status(jp_fetch, jp_serverapp):
    url = f"http://127.0.0.1:{free_port()}/v1"
    use_engine(jp_serverapp, url)
    code, error = await error_of(jp_fetch, {"prefix": "x = "})
    assert code == 503 and error["code"] == "engine_unavailable"
    assert url in error["message"] and "jupyter codecomp serve" in error["message"]
    status = await status_of(jp_fetch)
    assert status["state"] == "engine_unavailable" and status["engine"]["state"] == "unreachable"
    assert status["engine"]["url"] == url and "jupyter codecomp serve" in status["fix"]
    with pytest.raises(HTTPClientError) as info:  # the context report tokenizes there too
        await jp_fetch("codecomp", "context", method="POST", body=json.dumps({"prefix": "x"}))
    assert info.value.response.code == 503
    assert json.loads(info.value.response.body)["error"]["code"] == "engine_unavailable"


async def test_wrong_api_key_says_so(jp_fetch, jp_serverapp, engine):
    use_engine(jp_serverapp, engine.url, key="wrong")
    code, error = await error_of(jp_fetch, {"prefix": "x = "})
    assert code == 503 and "refused the API key (HTTP 401)" in error["message"]
    assert "CODECOMP_ENGINE_API_KEY" in error["message"]
    status = await status_of(jp_fetch)
    assert status["state"] == "engine_unavailable" and status["engine"]["state"] == "error"


async def test_a_reply_that_is_no_completion_is_reported(jp_fetch, jp_serverapp, engine):
    # llama.cpp's native /completions (no /v1) answers in its own shape: not an OpenAI reply.
    use_engine(jp_serverapp, engine.url.removesuffix("/v1"))
    code, error = await error_of(jp_fetch, {"prefix": "x = "})
    assert code == 503 and "unreadable reply" in error["message"]


async def test_engine_frozen_killed_and_back(jp_fetch, jp_ws_fetch, jp_serverapp, test_model,
                                             tmp_path):
    own = Engine(test_model.path, tmp_path / "llama.log").start()
    try:
        use_engine(jp_serverapp, own.url, engine_read_timeout=1.0)
        assert (await post(jp_fetch, {"prefix": "x = "}))["completions"] is not None

        own.stop(signal.SIGSTOP)  # slow: it accepts connections and answers nothing
        code, error = await error_of(jp_fetch, {"prefix": "y = "})
        assert code == 503 and "sent nothing for 1 s" in error["message"]
        own.stop(signal.SIGCONT)

        ws = await jp_ws_fetch("codecomp", "stream")
        ws.write_message(json.dumps({"id": "k", "request": LONG}))
        first = json.loads(await asyncio.wait_for(ws.read_message(), 60))
        own.stop(signal.SIGKILL)  # killed mid-stream
        final = (await receive_until_done(ws, "k"))["k"][-1]
        ws.close()
        assert not first["done"] and final["error"]["code"] == "engine_unavailable"
        status = await status_of(jp_fetch)
        assert status["state"] == "engine_unavailable"
        assert status["engine"]["state"] == "unreachable"

        back = Engine(test_model.path, tmp_path / "llama.log", port=own.port)
        own = back.start()  # the engine is back on its port
        reply = await post(jp_fetch, {"prefix": "z = "})  # no restart of the Jupyter server
        assert reply["device"] == "remote"
        assert (await status_of(jp_fetch))["state"] == "ready"
    finally:
        own.stop(signal.SIGKILL)


# --- `jupyter codecomp serve` refusals ------------------------------------------------------


def serve(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jupyter_codecomp", "serve", *args],
                          capture_output=True, text=True, timeout=120)


def test_serve_refuses_a_public_host_without_a_key(test_model):
    result = serve(str(test_model.path), "--host", "0.0.0.0", "--port", str(free_port()))
    assert result.returncode == 1 and "refusing to serve on 0.0.0.0 without an API key" in \
        " ".join(result.stderr.split())


def test_serve_errors_in_one_line(test_model, engine, tmp_path):
    busy = serve(str(test_model.path), "--port", str(engine.port))
    assert busy.returncode == 1 and f"port {engine.port} on 127.0.0.1 is busy" in busy.stderr
    missing = serve("no-such-model", "--cache-dir", str(tmp_path))
    assert missing.returncode == 1 and "jupyter codecomp model build no-such-model" in \
        missing.stderr
    tuned = tmp_path / "tuned"
    tuned.mkdir()
    manifest = json.loads((test_model.path / "codecomp.json").read_text())
    manifest.update(name="tuned", files={})  # named apart from its recipe: fine-tuned
    (tuned / "codecomp.json").write_text(json.dumps(manifest))
    no_gguf = serve(str(tuned), "--port", str(free_port()))
    assert no_gguf.returncode == 1 and "has no GGUF" in no_gguf.stderr


def test_a_vllm_chunk_reads_like_a_llamacpp_one():
    """vLLM's shape (the OpenAI legacy logprobs, with return_tokens_as_token_ids), as its docs
    give it: no vLLM runs here (it needs a GPU), so this one reply is written out."""
    from jupyter_codecomp.completion.openai_reply import UnreadableReply, parse_chunk

    chunk = parse_chunk(json.dumps({"choices": [{"index": 0, "text": " df", "finish_reason": None,
                                                 "logprobs": {
        "tokens": ["token_id:6764"], "token_logprobs": [-0.25],
        "top_logprobs": [{"token_id:6764": -0.25, "token_id:1594": -2.0}],
        "text_offset": [0]}}],
        "usage": {"prompt_tokens": 812, "completion_tokens": 1,
                  "prompt_tokens_details": {"cached_tokens": 800}}}))
    assert chunk.text == " df" and chunk.tokens == [(6764, -0.25)]
    assert chunk.top_first == [(6764, -0.25), (1594, -2.0)]
    assert (chunk.prompt_tokens, chunk.cached_tokens) == (812, 800)
    with pytest.raises(UnreadableReply):
        parse_chunk(json.dumps({"choices": [{"text": "x", "logprobs": {"tokens": [" df"]}}]}))
    with pytest.raises(UnreadableReply):
        parse_chunk("<html>502 Bad Gateway</html>")


@pytest.mark.parametrize("payload", [
    {"error": {"code": 500, "message": "Context size has been exceeded.",  # llama.cpp
               "type": "server_error"}},
    {"object": "error", "message": "Context size has been exceeded.",  # vLLM
     "type": "BadRequestError", "code": 400},
])
def test_an_error_in_the_stream_is_the_engines_words(payload):
    from jupyter_codecomp.completion.openai_reply import ErrorReply, parse_chunk

    with pytest.raises(ErrorReply) as info:
        parse_chunk(json.dumps(payload))
    assert info.value.message == "Context size has been exceeded."
