"""The instructor's policy on every route (issue 12), on a real Jupyter server with the scripted
engine: every spelling of a notebook path gets the same decision, a kernel is read only for its
own notebook, and whatever cannot be decided gets no completion."""

import asyncio
import json
from urllib.parse import quote

import nbformat
import pytest
from jupyter_client.session import Session
from jupyter_server.serverapp import ServerApp
from tornado.httpclient import HTTPClientError

from jupyter_codecomp.config import CodecompConfig

ROUTES = ("complete", "context", "stream", "status")
SECRET = "exam_secret_answer"


@pytest.fixture
def jp_server_config(no_model_config):
    no_model_config["CodecompConfig"]["disabled_paths"] = ["exams/**"]
    return no_model_config


@pytest.fixture
def notebooks(jp_root_dir):
    """exams/ (glob), locked (metadata switch), odd switch values, a garbage notebook, normal."""
    for path, metadata in [("exams/test.ipynb", {}), ("exams/sub/deep.ipynb", {}),
                           ("locked.ipynb", {"codecomp": {"enabled": False}}),
                           ("stringly.ipynb", {"codecomp": {"enabled": "false"}}),
                           ("switch_not_a_dict.ipynb", {"codecomp": "off"}),
                           ("normal.ipynb", {}), ("other.ipynb", {})]:
        (jp_root_dir / path).parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nbformat.v4.new_notebook(metadata=metadata), jp_root_dir / path)
    (jp_root_dir / "broken.ipynb").write_text("{ not a notebook")
    (jp_root_dir / "link_to_exams").symlink_to(jp_root_dir / "exams")
    return jp_root_dir


async def run_in_kernel(km, kernel_id, code):
    """Run `code` with a client of our own (kernels route replies by session)."""
    kernel = km.get_kernel(kernel_id)
    client = kernel.client(session=Session(key=kernel.session.key))
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=60)
        return (await client.execute_interactive(code, timeout=60))["content"]
    finally:
        client.stop_channels()


def spellings(root, path: str) -> list[str | None]:
    """Every way a client may name `path` (each must get the decision `path` gets)."""
    folder, _, name = path.rpartition("/")
    return [path, f"./{path}", f"foo/../{path}", f" {path}", f"{path} ", f"{path}#cell",
            f"{path}?x=1", f"{path}/", f"/{path}", str(root / path), path.replace("/", "\\"),
            path.upper(), quote(path, safe=""), f"{folder}//{name}" if folder else f".//{name}"]


async def ask(route, body, jp_fetch, jp_ws_fetch) -> dict:
    """One request on `route`; the reply as a dict, with the HTTP status under "_code"."""
    try:
        if route == "stream":
            ws = await jp_ws_fetch("codecomp", "stream")
            ws.write_message(json.dumps({"id": "p", "key": "k", "request": body}))
            while True:
                message = json.loads(await asyncio.wait_for(ws.read_message(), 30))
                if message["done"]:
                    break
            ws.close()
            if "error" in message:
                return {"_code": 400 if message["error"]["code"] == "invalid_request" else 500,
                        **message}
            return {"_code": 200, **message["reply"]}
        if route == "status":
            params = {} if body.get("path") is None else {"path": body["path"]}
            reply = await jp_fetch("codecomp", "status", params=params)
            data = json.loads(reply.body)
            return {"_code": reply.code, **data.get("policy", {})}
        reply = await jp_fetch("codecomp", route, method="POST", body=json.dumps(body))
        return {"_code": reply.code, **json.loads(reply.body)}
    except HTTPClientError as exc:
        return {"_code": exc.code, **json.loads(exc.response.body)}


def leaks(route: str, reply: dict) -> bool:
    """Whether the reply carries anything of the notebook: a completion, a prompt, variables."""
    return bool(reply.get("completions") or reply.get("prompt_text")
                or reply.get("variables_block") or reply.get("parts"))


@pytest.mark.parametrize("route", ROUTES)
async def test_every_spelling_of_an_off_notebook_is_off(route, jp_fetch, jp_ws_fetch,
                                                         fake_engine, notebooks):
    wrong = []
    for target, reason in [("exams/test.ipynb", "disabled_paths"),
                           ("exams/sub/deep.ipynb", "disabled_paths"),
                           ("link_to_exams/test.ipynb", "disabled_paths"),
                           ("locked.ipynb", "notebook"), ("stringly.ipynb", "notebook"),
                           ("switch_not_a_dict.ipynb", "notebook"),
                           ("broken.ipynb", "unreadable")]:
        for path in spellings(notebooks, target):
            reply = await ask(route, {"prefix": "x = ", "path": path}, jp_fetch, jp_ws_fetch)
            if reply["_code"] != 200 or not reply.get("disabled") or leaks(route, reply):
                wrong.append((path, reply))
            elif path.strip() == target and reply["disabled"] != reason:
                wrong.append((path, reply))
    assert wrong == []
    assert fake_engine.calls == []


@pytest.mark.parametrize("route", ROUTES)
async def test_every_spelling_of_a_normal_notebook_is_completed(route, jp_fetch, jp_ws_fetch,
                                                                 fake_engine, notebooks):
    wrong = []
    for path in spellings(notebooks, "normal.ipynb"):
        if path in ("NORMAL.IPYNB",):  # another file on a case-sensitive disk: none there
            continue
        reply = await ask(route, {"prefix": "x = ", "path": path}, jp_fetch, jp_ws_fetch)
        if reply["_code"] != 200 or reply.get("disabled") is not None:
            wrong.append((path, reply))
        elif route == "complete" and not reply["completions"]:
            wrong.append((path, reply))
    assert wrong == []


@pytest.mark.parametrize("route", ROUTES)
async def test_no_path_or_a_missing_file_gets_nothing_while_a_policy_is_set(
    route, jp_fetch, jp_ws_fetch, fake_engine, notebooks
):
    for body, reason in [({"prefix": "x = "}, "no_path"), ({"prefix": "x = ", "path": ""}, None),
                         ({"prefix": "x = ", "path": "  #c"}, None),
                         ({"prefix": "x = ", "path": "ghost.ipynb"}, "not_found"),
                         ({"prefix": "x = ", "path": "exams"}, "not_found")]:
        if route == "status" and body.get("path") is None:
            continue  # /status without ?path= decides nothing
        reply = await ask(route, body, jp_fetch, jp_ws_fetch)
        assert reply["_code"] == 200 and reply["disabled"], (body, reply)
        assert reply["disabled"] == (reason or "no_path") and not leaks(route, reply)
    assert fake_engine.calls == []


@pytest.mark.parametrize("route", ROUTES)
async def test_a_path_out_of_the_root_is_a_400(route, jp_fetch, jp_ws_fetch, fake_engine,
                                                notebooks):
    for path in ["../secret.ipynb", "/../secret.ipynb", "exams/../../x.ipynb", "..", "a/../..",
                 "exams/test.ipynb\x00.txt"]:
        if route == "status" and "\x00" in path:
            continue  # tornado turns control characters of a query into spaces
        reply = await ask(route, {"prefix": "x = ", "path": path}, jp_fetch, jp_ws_fetch)
        assert reply["_code"] == 400, (path, reply)
        assert reply["error"]["message"].startswith("path:")


async def test_a_server_with_no_policy_completes_requests_without_a_path(
    jp_fetch, jp_serverapp, fake_engine
):
    jp_serverapp.web_app.settings["codecomp"].settings.disabled_paths = []
    reply = await ask("complete", {"prefix": "x = "}, jp_fetch, None)
    assert reply["disabled"] is None and reply["completions"]
    reply = await ask("complete", {"prefix": "x = ", "path": "unsaved.ipynb"}, jp_fetch, None)
    assert reply["disabled"] is None and reply["completions"]


async def test_a_switched_off_notebook_makes_the_policy_restrictive(
    jp_fetch, jp_serverapp, fake_engine, notebooks
):
    """The metadata switch alone is a policy: once the server has seen it, no-path requests
    (whose notebook it cannot know) are refused too."""
    jp_serverapp.web_app.settings["codecomp"].settings.disabled_paths = []
    assert (await ask("complete", {"prefix": "x = "}, jp_fetch, None))["disabled"] is None
    assert (await ask("status", {"path": "locked.ipynb"}, jp_fetch, None))["disabled"] == "notebook"
    assert (await ask("complete", {"prefix": "x = "}, jp_fetch, None))["disabled"] == "no_path"


@pytest.mark.parametrize("route", ["complete", "context", "stream"])
async def test_server_switched_off_answers_disabled_on_every_route(
    route, jp_fetch, jp_ws_fetch, jp_serverapp, fake_engine, notebooks
):
    jp_serverapp.web_app.settings["codecomp"].settings.enabled = False
    reply = await ask(route, {"prefix": "x = ", "path": "normal.ipynb"}, jp_fetch, jp_ws_fetch)
    assert reply["_code"] == 200 and reply["disabled"] == "server" and not leaks(route, reply)
    status = json.loads((await jp_fetch("codecomp", "status")).body)
    assert status["state"] == "disabled" and status["enabled"] is False


async def test_kernel_variables_only_for_the_kernels_own_notebook(
    jp_fetch, jp_ws_fetch, jp_serverapp, fake_engine, notebooks
):
    sessions = jp_serverapp.session_manager
    exam = await sessions.create_session(path="exams/test.ipynb", kernel_name="python3",
                                         type="notebook", name="test.ipynb")
    other = await sessions.create_session(path="other.ipynb", kernel_name="python3",
                                          type="notebook", name="other.ipynb")
    km = jp_serverapp.kernel_manager
    exam_kernel, other_kernel = exam["kernel"]["id"], other["kernel"]["id"]
    try:
        await run_in_kernel(km, exam_kernel, f"{SECRET} = 42")
        await run_in_kernel(km, other_kernel, "other_total = 7")
        # The positive control: the other notebook's own kernel is read.
        reply = await ask("context", {"prefix": "x = ", "path": "other.ipynb",
                                      "kernel_id": other_kernel}, jp_fetch, jp_ws_fetch)
        assert "other_total" in reply["variables_block"]
        for route in ("complete", "context", "stream"):
            for path, kernel_id, reason in [
                ("normal.ipynb", exam_kernel, "disabled_notebook"),
                ("other.ipynb", exam_kernel, "disabled_notebook"),
                ("normal.ipynb", other_kernel, "other_notebook"),
            ]:
                body = {"prefix": "x = ", "path": path, "kernel_id": kernel_id}
                reply = await ask(route, body, jp_fetch, jp_ws_fetch)
                assert reply["_code"] == 200, (route, body, reply)
                assert SECRET not in json.dumps(reply) and "other_total" not in json.dumps(reply)
                kernel = reply.get("kernel") or reply.get("context", {}).get("kernel")
                assert kernel == reason, (route, body, reply)
            for body in [{"prefix": "x = ", "kernel_id": exam_kernel},
                         {"prefix": "x = ", "path": "exams/test.ipynb", "kernel_id": exam_kernel}]:
                reply = await ask(route, body, jp_fetch, jp_ws_fetch)
                assert reply["disabled"] and SECRET not in json.dumps(reply)
        assert not any(SECRET in call for call in fake_engine.calls)
    finally:
        for session in (exam, other):
            await sessions.delete_session(session["id"])


@pytest.mark.parametrize("argv,expected", [
    (['--CodecompConfig.disabled_paths=["exams/**"]'], ["exams/**"]),
    (["--CodecompConfig.disabled_paths=['exams/**', 'quiz/*']"], ["exams/**", "quiz/*"]),
    (["--CodecompConfig.disabled_paths=exams/**,quiz/*"], ["exams/**", "quiz/*"]),
    (["--CodecompConfig.disabled_paths=exams/**, quiz/*"], ["exams/**", "quiz/*"]),
    (["--CodecompConfig.disabled_paths=exams/**"], ["exams/**"]),
    (["--CodecompConfig.disabled_paths=a/*", "--CodecompConfig.disabled_paths=b/*"],
     ["a/*", "b/*"]),
    (["--CodecompConfig.disabled_paths=[ab]*.ipynb"], ["[ab]*.ipynb"]),
])
def test_disabled_paths_from_the_command_line(argv, expected):
    app = ServerApp()
    app.parse_command_line(argv)
    assert CodecompConfig(config=app.config).disabled_paths == expected
