"""A classroom on one server (issue 12): typists on the WebSocket, each sending a new request with
the same key every ~100 ms, while the engine is slower than they type. The scripted engine
stands in for the model (what is tested is the queue, not the text).

The bound: each key holds at most one waiting request and keys are served in the order they
joined the line, so a request starts after at most (keys waiting) - 1 others; with 20 typists,
after at most 19 (`status.queue.max_jobs_ahead`). A count of jobs, not a time."""

import asyncio
import json
import threading

import pytest
from tornado.httpclient import HTTPClientError

from jupyter_codecomp.server.completer import MAX_WAITING_KEYS

TYPISTS = 20
KEYSTROKES = 10


@pytest.fixture
def jp_server_config(no_model_config):
    return no_model_config


async def read_all_done(ws, ids: set) -> dict:
    """The `done` message of each id (and nothing twice)."""
    done = {}
    while set(done) != ids:
        message = json.loads(await asyncio.wait_for(ws.read_message(), 60))
        if message["done"]:
            assert message["id"] not in done, message
            done[message["id"]] = message
    return done


async def typist(jp_ws_fetch, who: int) -> dict:
    ws = await jp_ws_fetch("codecomp", "stream")
    ids = set()
    for stroke in range(KEYSTROKES):
        request_id = f"t{who}-{stroke}"
        ids.add(request_id)
        ws.write_message(json.dumps({"id": request_id, "key": f"lesson.ipynb#cell{who}",
                                     "request": {"prefix": f"typist_{who} = {stroke}"}}))
        await asyncio.sleep(0.1)
    done = await read_all_done(ws, ids)
    ws.close()
    return done


async def status(jp_fetch) -> dict:
    return json.loads((await jp_fetch("codecomp", "status")).body)


async def test_twenty_typists_each_get_their_last_keystroke_answered(jp_fetch, jp_ws_fetch,
                                                                     fake_engine):
    fake_engine.token_delay = 0.005  # ~60 ms a request: slower than 20 typists type
    results = await asyncio.gather(*(typist(jp_ws_fetch, who) for who in range(TYPISTS)))
    busy = 0
    for who, done in enumerate(results):
        last = done[f"t{who}-{KEYSTROKES - 1}"]
        assert last["reply"]["completions"][0]["text"] == "value + 1", last
        for message in done.values():
            assert "reply" in message or message.get("cancelled"), message
            busy += message.get("error", {}).get("code") == "busy"
    assert busy == 0
    queue = (await status(jp_fetch))["queue"]
    assert queue["max_jobs_ahead"] <= TYPISTS - 1
    assert queue["waiting"] == 0 and (await status(jp_fetch))["pending"] == 0
    # Superseded keystrokes never reached the engine: far fewer runs than keystrokes.
    assert len(fake_engine.calls) < TYPISTS * KEYSTROKES


async def test_a_hundred_keystrokes_on_one_key_end_in_one_completion(jp_ws_fetch, fake_engine):
    fake_engine.token_delay = 0.005
    ws = await jp_ws_fetch("codecomp", "stream")
    for i in range(100):
        ws.write_message(json.dumps({"id": i, "key": "nb.ipynb#c1",
                                     "request": {"prefix": f"x = {i}"}}))
    done = await read_all_done(ws, set(range(100)))
    ws.close()
    assert "reply" in done[99] and done[99]["reply"]["completions"]
    assert all("reply" in m or m.get("cancelled") for m in done.values())
    assert not any("error" in m for m in done.values())


async def test_busy_only_past_the_limit_of_waiting_keys_and_it_cancels_nothing(
    jp_fetch, jp_ws_fetch, fake_engine
):
    fake_engine.gate = threading.Event()  # the first request holds the engine
    ws = await jp_ws_fetch("codecomp", "stream")
    ws.write_message(json.dumps({"id": "running", "key": "k-run", "request": {"prefix": "a"}}))
    for i in range(MAX_WAITING_KEYS):
        ws.write_message(json.dumps({"id": f"w{i}", "key": f"k{i}", "request": {"prefix": "b"}}))
    for _ in range(500):  # until every request has joined the line
        if (await status(jp_fetch))["queue"]["waiting"] == MAX_WAITING_KEYS:
            break
        await asyncio.sleep(0.01)
    ws.write_message(json.dumps({"id": "refused", "key": "k-new", "request": {"prefix": "c"}}))
    refused = await read_all_done(ws, {"refused"})
    assert refused["refused"]["error"]["code"] == "busy"
    # A newer keystroke of a waiting typist is no new key: it takes the older one's place.
    ws.write_message(json.dumps({"id": "w0-newer", "key": "k0", "request": {"prefix": "d"}}))
    replaced = await read_all_done(ws, {"w0"})  # at once, while the engine is still held
    assert replaced["w0"].get("cancelled")
    fake_engine.gate.set()
    done = await read_all_done(ws, {"running", "w0-newer"} | {f"w{i}" for i in range(1, 32)})
    ws.close()
    assert "reply" in done["w0-newer"]
    assert "reply" in done["running"] and all("reply" in done[f"w{i}"] for i in range(1, 32))


async def test_busy_503_over_http_is_logged_quietly(jp_fetch, jp_ws_fetch, fake_engine, caplog):
    fake_engine.gate = threading.Event()
    ws = await jp_ws_fetch("codecomp", "stream")
    for i in range(MAX_WAITING_KEYS + 1):
        ws.write_message(json.dumps({"id": f"w{i}", "key": f"k{i}", "request": {"prefix": "b"}}))
    for _ in range(500):
        if (await status(jp_fetch))["queue"]["waiting"] == MAX_WAITING_KEYS:
            break
        await asyncio.sleep(0.01)
    caplog.clear()
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("codecomp", "complete", method="POST", body='{"prefix": "x"}')
    assert info.value.code == 503 and info.value.response.headers["Retry-After"] == "1"
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
    fake_engine.gate.set()
    await read_all_done(ws, {f"w{i}" for i in range(MAX_WAITING_KEYS + 1)})
    ws.close()


async def wait_idle(jp_fetch) -> dict:
    """Poll until nothing waits or runs (a bounded number of polls, not a timing claim)."""
    for _ in range(1000):
        state = await status(jp_fetch)
        if state["pending"] == 0:
            return state
        await asyncio.sleep(0.01)
    raise AssertionError(f"work still pending: {state}")


async def test_an_abandoned_http_request_stops(jp_fetch, fake_engine):
    fake_engine.gate = threading.Event()  # never opened: only a cancellation ends the work
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("codecomp", "complete", method="POST", body='{"prefix": "x"}',
                       request_timeout=0.5)
    assert info.value.code == 599  # the client gave up
    await wait_idle(jp_fetch)
    assert len(fake_engine.calls) == 1  # it had started, and it stopped at the gate


async def test_a_closed_socket_stops_its_work(jp_fetch, jp_ws_fetch, fake_engine):
    fake_engine.gate = threading.Event()
    ws = await jp_ws_fetch("codecomp", "stream")
    ws.write_message(json.dumps({"id": "a", "key": "k1", "request": {"prefix": "x"}}))
    ws.write_message(json.dumps({"id": "b", "key": "k2", "request": {"prefix": "y"}}))
    for _ in range(500):
        if (await status(jp_fetch))["pending"] == 2:
            break
        await asyncio.sleep(0.01)
    ws.close()
    state = await wait_idle(jp_fetch)
    assert state["queue"]["waiting"] == 0 and len(fake_engine.calls) == 1
