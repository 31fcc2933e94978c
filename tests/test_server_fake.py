"""The HTTP and WebSocket routes on a real Jupyter server, with the scripted `FakeEngine` in
place of the model: the handlers' own behaviour, in milliseconds. The same routes with the real
test model are in test_server.py."""

import asyncio
import json
import threading

import pytest


@pytest.fixture
def jp_server_config(no_model_config):
    return no_model_config


async def post(jp_fetch, body):
    reply = await jp_fetch("codecomp", "complete", method="POST", body=json.dumps(body))
    return json.loads(reply.body)


async def test_completion_is_the_engine_text_cut_at_the_end_of_the_line(jp_fetch, fake_engine):
    reply = await post(jp_fetch, {"prefix": "total = ", "path": "lesson.ipynb"})
    assert [c["text"] for c in reply["completions"]] == ["value + 1"]
    assert reply["model"] == "fake" and reply["device"] == "fake"
    assert "<|fim_prefix|>" in fake_engine.calls[-1] and "total =" in fake_engine.calls[-1]


async def test_second_keystroke_reuses_the_cached_prefix(jp_fetch, fake_engine):
    await post(jp_fetch, {"prefix": "import math\ntotal = ", "path": "a.ipynb"})
    reply = await post(jp_fetch, {"prefix": "import math\ntotal = v", "path": "a.ipynb"})
    assert reply["context"]["cached_tokens"] > 10


async def test_disabled_path_reaches_no_engine(jp_fetch, jp_serverapp, fake_engine):
    jp_serverapp.web_app.settings["codecomp"].settings.disabled_paths = ["exams/**"]
    reply = await post(jp_fetch, {"prefix": "x = ", "path": "exams/final.ipynb"})
    assert reply["disabled"] == "disabled_paths" and reply["completions"] == []
    assert fake_engine.calls == []


async def test_stream_sends_growing_text_then_done(jp_fetch, jp_ws_fetch, fake_engine):
    ws = await jp_ws_fetch("codecomp", "stream")
    ws.write_message(json.dumps({"id": "r1", "request": {"prefix": "total = "}}))
    texts = []
    while True:
        message = json.loads(await ws.read_message())
        assert message["id"] == "r1"
        if message["done"]:
            break
        texts.append(message["text"])
    ws.close()
    assert message["text"] == "value + 1" and message["reply"]["completions"]
    assert texts and all(b.startswith(a) for a, b in zip(texts, texts[1:]))


async def test_a_newer_request_with_the_same_key_supersedes_the_running_one(
    jp_fetch, jp_ws_fetch, fake_engine
):
    fake_engine.gate = threading.Event()  # the first request holds the engine until released
    ws = await jp_ws_fetch("codecomp", "stream")
    ws.write_message(json.dumps({"id": "old", "key": "a.ipynb#c1", "request": {"prefix": "x = "}}))
    await asyncio.sleep(0.2)
    ws.write_message(json.dumps({"id": "new", "key": "a.ipynb#c1", "request": {"prefix": "x = v"}}))
    await asyncio.sleep(0.2)
    fake_engine.gate.set()
    done = {}
    while len(done) < 2:
        message = json.loads(await ws.read_message())
        if message["done"]:
            done[message["id"]] = message
    ws.close()
    assert done["old"].get("cancelled") is True
    assert done["new"]["reply"]["completions"][0]["text"] == "value + 1"
