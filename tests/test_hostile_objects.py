"""The inspector never runs user code: a catalogue of hostile objects in a real kernel (ipykernel
through jupyter_client), read with the exact request the server sends.

Every hostile method writes a marker file (or sleeps 30 s). A case fails when a marker appears
while the kernel answers the inspection, when the inspection does not answer, or when the kernel
does not run `1+1` within a few seconds afterwards. Markers written while a case sets itself up
(pandas calls `__hash__` building an index, say) or by the kernel itself around a silent request
are cleared before the inspection. (Not in the catalogue: replacing `sys._getframe`, which
ipykernel calls itself on every request; the probe takes it only when it is the compiled function
bound to `sys`.)
"""

from __future__ import annotations

import pytest
from hostile_cases import CASES, PRELUDE
from jupyter_client.manager import start_new_kernel

from jupyter_codecomp.kernel.variables import KERNEL_EXPRESSION, variables_from_reply

# Generous bounds for a loaded 2-core machine; a 30 s sleep in user code still breaks them.
INSPECTION_TIMEOUT = 15
RESPONSIVE_TIMEOUT = 5


@pytest.fixture(scope="module")
def kernel():
    manager, client = start_new_kernel(kernel_name="python3")
    # The libraries load once (about 2 s); each case then runs in a cleared namespace.
    execute(client, "import numpy, pandas", timeout=120)
    yield client
    client.stop_channels()
    manager.shutdown_kernel(now=True)


def execute(client, code: str, timeout: float = 60) -> dict:
    reply = client.execute_interactive(code, timeout=timeout, output_hook=lambda msg: None)
    assert reply["content"]["status"] == "ok", reply["content"]
    return reply["content"]


def inspect(client) -> dict:
    """The server's request (kernel_variables.KernelReader._inspect), sent from a test client."""
    return client.execute_interactive(
        "", silent=True, store_history=False, user_expressions={"codecomp": KERNEL_EXPRESSION},
        timeout=INSPECTION_TIMEOUT, output_hook=lambda msg: None)["content"]


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_object(kernel, name, tmp_path):
    case = CASES[name]
    marks = tmp_path / "marks"
    marks.mkdir()
    execute(kernel, PRELUDE.format(marks=str(marks)) + case.setup)
    # What the kernel itself does around a silent request happens once here (IPython looks up
    # numpy.float64 on its first one), as does what set-up ran (pandas hashes labels): then the
    # markers are cleared, and what the inspection runs is all that can write one.
    kernel.execute_interactive("", silent=True, store_history=False, user_expressions={"x": "1"},
                               timeout=INSPECTION_TIMEOUT, output_hook=lambda msg: None)
    for mark in marks.iterdir():
        mark.unlink()
    try:
        variables = variables_from_reply(inspect(kernel))
        assert sorted(p.name for p in marks.iterdir()) == [], "the inspection ran user code"
        execute(kernel, "1 + 1", timeout=RESPONSIVE_TIMEOUT)
        listed = {v.name for v in variables}
        assert set(case.shown) <= listed, set(case.shown) - listed
        assert all("\ud800" not in v.name for v in variables)  # the wire carries UTF-8
    finally:
        execute(kernel, case.teardown + "get_ipython().run_line_magic('reset', '-f')")
