"""Typing with ghost text (issue 17), against the scripted engine (exact text): accept a word or a
line, type through the ghost without a request, the next suggestion after an accept, and a warm
prefill that never keeps a completion waiting. The real-model browser tests are test_frontend.py."""

from __future__ import annotations

import json
import uuid

import pytest
from labdriver import GHOST, LabPage, chromium_available, start_lab

SETUP = "alpha, beta = 1, 2"
LINE = "total = compute(alpha, beta)"


@pytest.fixture(scope="module")
def lab_server(tmp_path_factory):
    if not chromium_available():
        pytest.skip("Debian's Chromium is missing: apt-get install -y chromium (or make chromium)")
    # Warm prefills take 10 ms per prompt token here: slow enough that a completion caught
    # behind one would wait seconds.
    server = start_lab(tmp_path_factory.mktemp("scripted"), "scripted", scripted=True,
                       env={"CODECOMP_TEST_PREFILL_DELAY": "0.01"})
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def ready_to_type(lab_server, lab: LabPage, *above: str) -> str:
    path = lab_server.write_notebook(f"typing-{uuid.uuid4().hex[:8]}.ipynb",
                                     [*above, SETUP, ""])
    lab.open(path)
    lab.wait_status("ready")
    lab.focus_cell(len(above) + 1)
    return path


def type_and_wait(lab: LabPage, text: str) -> str:
    lab.page.keyboard.type(text, delay=30)
    return lab.wait_ghost_text()


def cell(lab: LabPage) -> str:
    return lab.page.evaluate(
        "() => window.jupyterapp.shell.currentWidget.content.activeCell.model.sharedModel"
        ".getSource()")


def watch_ghost(lab: LabPage) -> None:
    """Count animation frames in which no ghost text shows (a flicker is one or more)."""
    lab.page.evaluate(f"""() => {{
        window.__ghostGone = 0;
        const tick = () => {{
            if (!document.querySelector('{GHOST}')) window.__ghostGone++;
            window.__ghostWatch = requestAnimationFrame(tick);
        }};
        tick();
    }}""")


def ghost_gone_frames(lab: LabPage) -> int:
    return lab.page.evaluate("() => { cancelAnimationFrame(window.__ghostWatch);"
                             " return window.__ghostGone; }")


def test_ctrl_right_inserts_exactly_the_next_word_and_the_rest_stays(lab_server, lab, console):
    ready_to_type(lab_server, lab)
    assert type_and_wait(lab, "total = ") == "compute(alpha, beta)"
    sent = len(console.requests())
    lab.page.keyboard.press("Control+ArrowRight")
    lab.page.wait_for_function(
        f"() => (document.querySelector('{GHOST}') || {{}}).textContent === '(alpha, beta)'")
    assert cell(lab) == "total = compute"
    lab.page.keyboard.press("Control+ArrowRight")
    lab.page.wait_for_function(
        f"() => (document.querySelector('{GHOST}') || {{}}).textContent === 'alpha, beta)'")
    assert cell(lab) == "total = compute("
    assert len(console.requests()) == sent, "a partial accept asks nothing"
    lab.page.keyboard.press("Tab")  # and Tab still takes the rest
    lab.page.wait_for_function(
        f"() => !(document.querySelector('{GHOST}') || {{}}).textContent?.includes('beta')")
    assert cell(lab).startswith(LINE)
    assert console.problems() == []


def test_line_accept_inserts_exactly_the_next_line(lab_server, lab, console, user_settings):
    user_settings(mode="block")
    ready_to_type(lab_server, lab)
    ghost = type_and_wait(lab, "total = ")
    assert "print(total)" in ghost
    lab.execute("codecomp:accept-line")
    lab.page.wait_for_function(
        "() => window.jupyterapp.shell.currentWidget.content.activeCell.model.sharedModel"
        f".getSource() === {json.dumps(LINE)}")
    assert "print(total)" in lab.wait_ghost_text()  # the rest stays shown
    lab.page.keyboard.press("Control+Shift+ArrowRight")  # the shortcut of the same command
    lab.page.wait_for_function(
        "() => window.jupyterapp.shell.currentWidget.content.activeCell.model.sharedModel"
        f".getSource() === {json.dumps(LINE + chr(10) + 'print(total)')}")
    assert console.problems() == []


def test_typing_through_the_ghost_sends_no_request_and_never_flickers(lab_server, lab, console):
    ready_to_type(lab_server, lab)
    assert type_and_wait(lab, "total = ") == "compute(alpha, beta)"
    sent = len(console.requests())
    watch_ghost(lab)
    lab.page.keyboard.type("compu", delay=80)
    lab.page.wait_for_function(
        f"() => (document.querySelector('{GHOST}') || {{}}).textContent === 'te(alpha, beta)'")
    assert ghost_gone_frames(lab) == 0
    assert len(console.requests()) == sent
    # A character that leaves the suggestion asks again.
    lab.page.keyboard.type("X", delay=30)
    lab.page.wait_for_function(f"() => !document.querySelector('{GHOST}')")
    lab.page.wait_for_timeout(600)  # longer than the longest debounce
    assert len(console.requests()) == sent + 1
    assert console.problems() == []


def test_the_next_suggestion_appears_after_an_accept(lab_server, lab, console):
    ready_to_type(lab_server, lab)
    type_and_wait(lab, "total = ")
    sent = len(console.requests())
    lab.page.keyboard.press("Tab")
    # Without a keystroke: the next line, asked for at once after the accept.
    lab.page.wait_for_function(
        f"() => (document.querySelector('{GHOST}') || {{textContent: ''}})"
        ".textContent.includes('print(total)')")
    asked = console.requests()[sent]["request"]
    assert asked["prefix"].endswith(LINE + "\n") and asked["n"] == 1
    lab.page.keyboard.press("Tab")
    lab.page.wait_for_function(
        "() => window.jupyterapp.shell.currentWidget.content.activeCell.model.sharedModel"
        f".getSource() === {json.dumps(LINE + chr(10) + 'print(total)')}")
    assert console.problems() == []


def test_a_warm_request_never_keeps_a_completion_waiting(lab_server, lab, console):
    responses = []
    lab.page.on("response", lambda response: responses.append(response)
                if "/codecomp/warm" in response.url else None)
    # About 2000 prompt tokens above: a warm that runs alone takes ~20 s here.
    above = [f"value_{i} = compute_{i}(alpha, beta) * {i}\nprint(value_{i})" for i in range(40)]
    ready_to_type(lab_server, lab, *above)
    lab.page.wait_for_timeout(800)  # the warm of the cell the cursor entered is prefilling
    lab.page.keyboard.type("total = ", delay=30)
    assert lab.wait_ghost_text(timeout=10) == "compute(alpha, beta)"
    lab.page.wait_for_timeout(500)
    # The warms of the cell typed in (its 41 cells above): sent, and every one gave way.
    states = [json.loads(response.body())["state"] for response in responses
              if len(json.loads(response.request.post_data)["cells"]) == len(above) + 1]
    assert states and set(states) <= {"preempted", "replaced"}, states
    assert console.problems() == []


def test_ghost_text_only_at_or_above_min_confidence(lab_server, lab, console, user_settings):
    ready_to_type(lab_server, lab)
    lab.page.keyboard.type("guess = ", delay=30)  # the engine answers, but is unsure (0.05)
    lab.page.wait_for_timeout(1500)
    assert lab.ghost_text() == "" and console.requests()
    # A sure suggestion in the same page shows (the threshold is the server's 0.3).
    lab.page.keyboard.press("Control+a")
    lab.page.keyboard.press("Delete")
    assert type_and_wait(lab, "total = ") == "compute(alpha, beta)"
    # With the user's threshold at 0, the unsure one shows too (pages read settings on load).
    user_settings(minConfidence=0)
    ready_to_type(lab_server, lab)
    assert type_and_wait(lab, "guess = ") == "maybe(alpha)"
