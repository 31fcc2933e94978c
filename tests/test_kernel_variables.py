"""Kernel variables read from real kernels started by a real Jupyter server (pytest-jupyter):
no trace left in the kernel, no user code run, the cache, busy kernels (subshells, and the cache
without them), restarts, unknown and dead kernels."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import signal
import time

import pytest

from jupyter_codecomp.server.kernel_variables import STATUSES, KernelVariables


@pytest.fixture
def jp_server_config():
    return {}  # a bare server: these tests need kernels, not the completion model


@pytest.fixture
def kernel(jp_serverapp, jp_asyncio_loop):
    """A running kernel, its id, and a client of our own standing in for the notebook.
    (pytest-jupyter runs coroutine tests, not coroutine fixtures: these use its loop.)"""
    km = jp_serverapp.kernel_manager
    kernel_id = jp_asyncio_loop.run_until_complete(km.start_kernel())
    client = km.get_kernel(kernel_id).client()
    client.start_channels()
    jp_asyncio_loop.run_until_complete(client.wait_for_ready(timeout=60))
    yield km, kernel_id, client
    client.stop_channels()
    if kernel_id in km:
        jp_asyncio_loop.run_until_complete(km.shutdown_kernel(kernel_id, now=True))


@pytest.fixture
def variables(jp_serverapp, jp_asyncio_loop):
    kv = KernelVariables(jp_serverapp.kernel_manager)
    yield kv
    jp_asyncio_loop.run_until_complete(kv.close())


async def run(client, code: str) -> tuple[dict, str]:
    """Run a cell like a notebook does; its reply content and its printed output."""
    out: list[str] = []

    def hook(msg):
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])

    reply = await client.execute_interactive(code, timeout=60, output_hook=hook)
    return reply["content"], "".join(out)


async def control(client, msg_type: str, content: dict) -> dict:
    """A request on the control channel, and its reply."""
    msg = client.session.msg(msg_type, content)
    client.control_channel.send(msg)
    while True:
        reply = await client.get_control_msg(timeout=30)
        if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
            return reply


async def on_subshell(client, subshell_id: str, code: str) -> None:
    """Run code on a subshell (jupyter_client's execute() has no subshell argument)."""
    msg = client.session.msg("execute_request", {
        "code": code, "silent": False, "store_history": False, "user_expressions": {},
        "allow_stdin": False, "stop_on_error": True})
    msg["header"]["subshell_id"] = subshell_id
    client.shell_channel.send(msg)
    while True:
        reply = await client.get_shell_msg(timeout=30)
        if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
            assert reply["content"]["status"] == "ok", reply["content"]
            return


async def wait_state(km, kernel_id, state, timeout=30.0):
    deadline = time.monotonic() + timeout
    while km.get_kernel(kernel_id).execution_state != state:
        assert time.monotonic() < deadline, f"kernel never became {state}"
        await asyncio.sleep(0.05)


def names(result):
    return [v.name for v in result.variables]


SETUP = """
import time
import pandas as pd
df = pd.DataFrame({'sales': [1.0], 'region': ['a']})

class Trap:
    touched = []
    @property
    def boom(self):
        Trap.touched.append('boom')
        raise RuntimeError('touched')
    @property
    def shape(self):
        Trap.touched.append('shape')
        time.sleep(10)
    def __getattr__(self, name):
        Trap.touched.append(name)
        time.sleep(10)
    def __repr__(self):
        Trap.touched.append('repr')
        return 'Trap()'
    def __len__(self):
        Trap.touched.append('len')
        return 1

trap = Trap()
"""

PROBE = (
    "print(json.dumps({'touched': Trap.touched, 'last': _, 'history': len(In), "
    "'names': sorted(k for k in globals() if not k.startswith('_'))}))"
)


async def test_variables_leave_no_trace_and_run_no_user_code(kernel, variables):
    km, kernel_id, client = kernel
    await run(client, SETUP)
    await run(client, "import json\n6 * 7")  # `_` is now 42
    before_reply, before = await run(client, PROBE)
    before = json.loads(before)

    started = time.monotonic()
    first = await variables.get(kernel_id)
    assert time.monotonic() - started < 8  # no property slept
    assert first.status == "fresh", first
    found = {v.name: v for v in first.variables}
    assert found["df"].type == "DataFrame" and found["df"].shape == "(1, 2)"
    assert found["df"].columns == (("sales", "float64"), ("region", "str"))
    assert found["pd"].module == "pandas" and found["Trap"].type == "class"
    assert found["trap"].type == "Trap" and found["trap"].length is None
    assert "In" not in found and "Out" not in found and "get_ipython" not in found

    second = await variables.get(kernel_id)  # nothing ran since: the cache
    assert second.status == "cached" and second.variables == first.variables

    after_reply, after = await run(client, PROBE)
    after = json.loads(after)
    # The inspection left no execution behind: count, history, `_` and the namespace as before.
    assert after_reply["execution_count"] == before_reply["execution_count"] + 1
    assert after["history"] == before["history"] + 1
    assert after["last"] == before["last"] == 42
    assert after["names"] == before["names"]
    assert after["touched"] == [] and before["touched"] == []


async def test_cache_goes_stale_after_an_execution(kernel, variables):
    km, kernel_id, client = kernel
    await run(client, "a = 1")
    assert names(await variables.get(kernel_id)) == ["a"]
    assert (await variables.get(kernel_id)).status == "cached"
    await run(client, "b = 'two'")
    await wait_state(km, kernel_id, "idle")
    deadline = time.monotonic() + 10
    while (result := await variables.get(kernel_id)).status == "cached":  # iopub may lag a bit
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    assert result.status == "fresh" and names(result) == ["a", "b"]
    assert result.variables[-1].value == "'two'"


async def test_busy_kernel_answers_through_a_subshell(kernel, variables):
    km, kernel_id, client = kernel
    await run(client, "import time\nweekly = [1, 2, 3]")
    assert (await variables.get(kernel_id)).status == "fresh"
    idle_read = variables._readers[kernel_id].main_pending  # the last request to the main shell
    writers: list[str] = []  # who sets the server's execution_state: never this package

    def record(change):
        writers.extend(f.filename for f in inspect.stack()[1:] if "jupyter_codecomp" in f.filename)

    km.get_kernel(kernel_id).observe(record, names="execution_state")
    client.execute("during = 1\ntime.sleep(30)\nafter = 2")
    await wait_state(km, kernel_id, "busy")
    await asyncio.sleep(0.3)

    started = time.monotonic()
    result = await variables.get(kernel_id)
    assert time.monotonic() - started < 10  # well below the running cell
    # ipykernel 7 has subshells: the read is live, mid-cell.
    assert result.status == "fresh", result
    assert names(result) == ["time", "weekly", "during"]
    assert (await variables.get(kernel_id)).status == "cached"
    # Another client changes the namespace through a subshell of its own: our cache goes stale,
    # and the next read goes through our subshell again, never queued behind the running cell.
    reply = await control(client, "create_subshell_request", {})
    await on_subshell(client, reply["content"]["subshell_id"], "meanwhile = 5")
    reader = variables._readers[kernel_id]
    while not reader.stale:
        await asyncio.sleep(0.02)
    result = await variables.get(kernel_id)
    assert result.status == "fresh" and names(result)[-1] == "meanwhile"
    assert reader.main_pending is idle_read  # the main shell was never asked while busy
    await asyncio.sleep(0.5)  # (the old code wrote "busy" back 0.2 s after a subshell's idle)
    assert writers == []

    # The cell ends (interrupted): the cache is stale again and the next read sees the end state.
    await km.interrupt_kernel(kernel_id)
    await wait_state(km, kernel_id, "idle")
    while (await run(client, "later = 3"))[0]["status"] == "aborted":  # right after the error
        await asyncio.sleep(0.1)
    deadline = time.monotonic() + 10
    while (result := await variables.get(kernel_id)).status == "cached":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    assert result.status == "fresh"
    assert names(result) == ["time", "weekly", "during", "meanwhile", "later"]


async def test_busy_kernel_without_subshells_is_served_from_the_cache(kernel, variables):
    km, kernel_id, client = kernel
    await run(client, "import time\nweekly = [1, 2, 3]")
    assert names(await variables.get(kernel_id)) == ["time", "weekly"]
    reader = variables._readers[kernel_id]
    reader.subshell.supported, reader.subshell.id = False, None  # as with an ipykernel before 7
    client.execute("during = 1\ntime.sleep(30)")
    await wait_state(km, kernel_id, "busy")
    while not reader.stale:  # our iopub watcher saw the cell start
        await asyncio.sleep(0.02)

    started = time.monotonic()
    result = await variables.get(kernel_id)
    assert time.monotonic() - started < 10
    assert result.status == "busy-cache" and names(result) == ["time", "weekly"]
    await km.interrupt_kernel(kernel_id)


async def test_busy_kernel_without_subshells_or_cache(kernel, variables):
    km, kernel_id, client = kernel
    client.execute("import time\ntime.sleep(30)")
    await wait_state(km, kernel_id, "busy")
    await variables.get(kernel_id)  # may already have started a subshell read: fine
    reader = variables._readers[kernel_id]
    reader.subshell.supported, reader.subshell.id = False, None
    reader.variables = None  # nothing cached yet
    result = await variables.get(kernel_id)
    assert result.status == "busy-empty" and result.variables == []
    await km.interrupt_kernel(kernel_id)


async def test_restart_drops_the_old_variables(kernel, variables):
    km, kernel_id, client = kernel
    await run(client, "old = 1")
    assert names(await variables.get(kernel_id)) == ["old"]
    await km.restart_kernel(kernel_id)
    await client.wait_for_ready(timeout=60)
    await run(client, "new = 2")
    deadline = time.monotonic() + 20
    while True:
        result = await variables.get(kernel_id)
        if result.status == "fresh" and "new" in names(result):
            break
        assert result.status in STATUSES
        assert time.monotonic() < deadline, result
        await asyncio.sleep(0.1)
    assert names(result) == ["new"]


async def test_unknown_and_dead_kernels(kernel, variables):
    km, kernel_id, client = kernel
    result = await variables.get("00000000-0000-0000-0000-000000000000")
    assert result.status == "unknown" and result.variables == []
    assert (await variables.get(kernel_id)).status == "fresh"

    km.get_kernel(kernel_id).provisioner.process.send_signal(signal.SIGKILL)
    deadline = time.monotonic() + 10
    while await km.get_kernel(kernel_id).is_alive():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    result = await variables.get(kernel_id)
    assert result.status in ("dead", "restarting", "unknown"), result
    assert kernel_id not in variables._readers or result.status == "restarting"

    await km.shutdown_kernel(kernel_id, now=True)
    result = await variables.get(kernel_id)
    assert result.status == "unknown" and variables._readers == {}


async def test_close_ends_every_connection(kernel, jp_serverapp):
    km, kernel_id, client = kernel
    kv = KernelVariables(km)
    await run(client, "x = 1")
    assert names(await kv.get(kernel_id)) == ["x"]
    client.execute("import time\ntime.sleep(30)")
    await wait_state(km, kernel_id, "busy")
    await kv.get(kernel_id)  # creates the subshell
    await kv.close()
    assert kv._readers == {}
    await km.interrupt_kernel(kernel_id)


async def test_concurrent_and_cancelled_reads(kernel, variables):
    km, kernel_id, client = kernel
    await run(client, "a = 1")
    results = await asyncio.gather(*(variables.get(kernel_id) for _ in range(5)))
    assert len(variables._readers) == 1  # one client per kernel
    assert all(r.status in ("fresh", "cached") and names(r) == ["a"] for r in results)

    await run(client, "b = 2")
    while not variables._readers[kernel_id].stale:
        await asyncio.sleep(0.02)
    task = asyncio.ensure_future(variables.get(kernel_id))
    await asyncio.sleep(0)
    task.cancel()  # a superseded completion request
    with contextlib.suppress(asyncio.CancelledError):
        await task
    result = await variables.get(kernel_id)  # the cancelled read did not pass for a fresh one
    assert result.status in ("fresh", "cached") and names(result) == ["a", "b"]
