"""Kernel faults through the real server (pytest-jupyter) with real kernels: a killed, a restarting
and a busy kernel still get their completion, without the kernel's variables where they cannot be
read, and `context.kernel` says why. The scripted FakeEngine stands in for the model (the model's
own tests are test_server.py); the kernels are real ipykernels."""

from __future__ import annotations

import asyncio
import json
import signal
import time

import pytest
from jupyter_client.session import Session


@pytest.fixture
def jp_server_config(no_model_config):
    return no_model_config


async def complete(jp_fetch, kernel_id: str) -> dict:
    reply = await jp_fetch("codecomp", "complete", method="POST", body=json.dumps(
        {"prefix": "total = ", "kernel_id": kernel_id}))
    assert reply.code == 200
    body = json.loads(reply.body)
    assert [c["text"] for c in body["completions"]] == ["value + 1"]  # answered all the same
    return body["context"]


async def run(km, kernel_id: str, code: str) -> None:
    kernel = km.get_kernel(kernel_id)
    client = kernel.client(session=Session(key=kernel.session.key))
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=60)
        reply = await client.execute_interactive(code, timeout=60)
        assert reply["content"]["status"] == "ok"
    finally:
        client.stop_channels()


@pytest.fixture
def kernel(jp_serverapp, jp_asyncio_loop):
    """A kernel of the server's (pytest-jupyter runs coroutine tests, not coroutine fixtures)."""
    km = jp_serverapp.kernel_manager
    kernel_id = jp_asyncio_loop.run_until_complete(km.start_kernel())
    yield km, kernel_id
    if kernel_id in km:
        jp_asyncio_loop.run_until_complete(km.shutdown_kernel(kernel_id, now=True))


async def test_killed_kernel(jp_fetch, fake_engine, kernel):
    km, kernel_id = kernel
    await run(km, kernel_id, "weekly_sales = [1, 2]")
    context = await complete(jp_fetch, kernel_id)
    assert context["kernel"] == "fresh" and context["variables"] == 1

    km.get_kernel(kernel_id).provisioner.process.send_signal(signal.SIGKILL)
    deadline = time.monotonic() + 10
    while await km.get_kernel(kernel_id).is_alive():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    context = await complete(jp_fetch, kernel_id)
    assert context["kernel"] in ("dead", "restarting") and context["variables"] == 0


async def test_restarting_kernel(jp_fetch, fake_engine, kernel):
    km, kernel_id = kernel
    # The old process takes 3 s to exit: a window in which the server is restarting the kernel.
    await run(km, kernel_id, "import atexit, time\natexit.register(time.sleep, 3)\nold = 1")
    assert (await complete(jp_fetch, kernel_id))["variables"] == 3
    restart = asyncio.ensure_future(km.restart_kernel(kernel_id))
    seen = []
    deadline = time.monotonic() + 20
    while not seen or seen[-1]["kernel"] != "restarting":
        assert time.monotonic() < deadline and not restart.done(), seen
        seen.append(await complete(jp_fetch, kernel_id))
        await asyncio.sleep(0.05)
    assert seen[-1]["variables"] == 0
    await restart
    await run(km, kernel_id, "new = 2")
    deadline = time.monotonic() + 20
    while (context := await complete(jp_fetch, kernel_id))["kernel"] != "fresh":
        assert time.monotonic() < deadline, context
        await asyncio.sleep(0.1)
    assert context["variables"] == 1  # `new` alone: the old process's names went with it


async def test_busy_kernel_without_a_cache_answers_through_a_subshell(
        jp_fetch, fake_engine, kernel, tmp_path):
    km, kernel_id = kernel
    started, gate = tmp_path / "started", tmp_path / "gate"
    await run(km, kernel_id, "import pathlib, time\nweekly_sales = [1, 2]")
    kernel_object = km.get_kernel(kernel_id)
    client = kernel_object.client(session=Session(key=kernel_object.session.key))
    client.start_channels()
    try:
        # The cell waits for the gate, which opens only after the completion reply: the reply
        # came while the main shell was busy, whatever the machine's speed.
        client.execute(f"pathlib.Path({str(started)!r}).touch()\nduring = 1\n"
                       f"while not pathlib.Path({str(gate)!r}).exists():\n    time.sleep(0.05)")
        deadline = time.monotonic() + 30
        while not started.exists():
            assert time.monotonic() < deadline, "the cell never started"
            await asyncio.sleep(0.05)
        context = await complete(jp_fetch, kernel_id)  # the first read of this kernel
        gate.touch()
        reply = await client.get_shell_msg(timeout=60)
        assert reply["content"]["status"] == "ok"
    finally:
        client.stop_channels()
    assert context["kernel"] == "fresh" and context["variables"] == 4  # pathlib, time, 2 more
