"""Faults (issue 12): a model missing, truncated, corrupted at its own size or with a garbage
tokenizer is `failed` with the command that rebuilds it (naming the recipe) and answers a
permanent 503 without Retry-After; no NaN reaches JSON; a server whose extension failed at
start still stops on SIGTERM. The models are copies of the real SmolLM2 test model."""

import asyncio
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from tornado.httpclient import HTTPClientError

from jupyter_codecomp.completion.service import ServiceLoader
from jupyter_codecomp.completion.settings import ServiceSettings
from jupyter_codecomp.errors import CodecompError
from jupyter_codecomp.models.store import (
    MANIFEST,
    file_digests,
    load_model_dir,
    verify_checksums,
)

REBUILD = "jupyter codecomp model build smollm2-135m --force"


@pytest.fixture
def jp_server_config(no_model_config):
    return no_model_config


@pytest.fixture
def model_copy(test_model, tmp_path):
    """A copy of the test model as the builder leaves it now: its manifest has checksums.
    Large files are hard links; a test that damages one copies it first (`own`)."""
    folder = tmp_path / "models" / "smollm2-135m"
    folder.mkdir(parents=True)
    for file in test_model.path.iterdir():
        if file.stat().st_size > 1 << 20:
            os.link(file, folder / file.name)
        else:
            shutil.copy2(file, folder / file.name)
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["sha256"] = file_digests(folder)
    (folder / MANIFEST).unlink()  # a hard link would write through to the real model
    (folder / MANIFEST).write_text(json.dumps(manifest))
    return folder


def own(file):
    """Replace a hard link by a private copy (so damage stays in the copy)."""
    data = file.read_bytes()
    file.unlink()
    file.write_bytes(data)
    return file


async def failed_reply(jp_fetch, jp_serverapp, folder) -> tuple[dict, dict, dict]:
    """Load `folder` as the server's model; the 503 error, its headers and /codecomp/status."""
    completer = jp_serverapp.web_app.settings["codecomp"]
    completer.loader = ServiceLoader(ServiceSettings(model=str(folder), device="cpu", threads=1))
    with pytest.raises(CodecompError):
        await asyncio.get_running_loop().run_in_executor(None, completer.loader.wait)
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("codecomp", "complete", method="POST",
                       body=json.dumps({"prefix": "x = "}))
    assert info.value.code == 503
    error = json.loads(info.value.response.body)["error"]
    status = json.loads((await jp_fetch("codecomp", "status")).body)
    return error, dict(info.value.response.headers), status


def assert_permanent(error, headers, status, fix=REBUILD):
    assert error["code"] == "failed" and error["permanent"] is True
    assert "Retry-After" not in headers  # a client must not poll a broken model forever
    assert "until the server restarts" in error["message"] and fix in error["message"]
    assert status["state"] == "failed" and status["fix"] == fix
    assert "NAME" not in json.dumps(status)


def test_a_copy_with_checksums_verifies(model_copy):
    verify_checksums(load_model_dir(model_copy))  # the control for the damaged copies below


async def test_model_missing(jp_fetch, jp_serverapp, tmp_path):
    completer = jp_serverapp.web_app.settings["codecomp"]
    completer.loader = ServiceLoader(ServiceSettings(model="smollm2-135m",
                                                     cache_dir=str(tmp_path / "empty")))
    with pytest.raises(CodecompError):
        completer.loader.wait()
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("codecomp", "complete", method="POST", body='{"prefix": "x"}')
    error = json.loads(info.value.response.body)["error"]
    status = json.loads((await jp_fetch("codecomp", "status")).body)
    assert_permanent(error, info.value.response.headers, status,
                     fix="jupyter codecomp model build smollm2-135m")


async def test_model_truncated(jp_fetch, jp_serverapp, model_copy):
    data = own(model_copy / "model.onnx.data")
    with data.open("r+b") as stream:
        stream.truncate(data.stat().st_size // 2)
    error, headers, status = await failed_reply(jp_fetch, jp_serverapp, model_copy)
    assert_permanent(error, headers, status)
    assert "model.onnx.data" in error["message"]


async def test_model_corrupted_at_the_same_size(jp_fetch, jp_serverapp, model_copy):
    data = own(model_copy / "model.onnx.data")
    size = data.stat().st_size
    with data.open("r+b") as stream:
        stream.seek(size // 2)
        stream.write(b"\xff" * 4096)  # NaN-ish floats in the middle of the weights
    assert data.stat().st_size == size
    error, headers, status = await failed_reply(jp_fetch, jp_serverapp, model_copy)
    assert_permanent(error, headers, status)
    assert "checksum" in error["message"]


async def test_garbage_tokenizer_without_checksums_names_the_recipe(jp_fetch, jp_serverapp,
                                                                    model_copy):
    """A model built before checksums: the runtime's own failure still gets the fix."""
    manifest = json.loads((model_copy / MANIFEST).read_text())
    del manifest["sha256"]
    (model_copy / MANIFEST).write_text(json.dumps(manifest))
    tokenizer = own(model_copy / "tokenizer.json")
    tokenizer.write_bytes(b"\x00garbage" * (tokenizer.stat().st_size // 8)
                          + b"\x00" * (tokenizer.stat().st_size % 8))
    error, headers, status = await failed_reply(jp_fetch, jp_serverapp, model_copy)
    assert_permanent(error, headers, status)


async def test_unreadable_manifest_of_a_model_folder_names_the_recipe(jp_fetch, jp_serverapp,
                                                                      model_copy):
    (model_copy / MANIFEST).write_text("{ broken")
    error, headers, status = await failed_reply(jp_fetch, jp_serverapp, model_copy)
    assert_permanent(error, headers, status)


async def test_a_nan_score_never_reaches_json(jp_fetch, fake_engine):
    """Broken weights the checksums cannot see (a bad build): the engine yields NaN scores."""
    generate = fake_engine.generate

    def nan_generate(*args, **kwargs):
        result = generate(*args, **kwargs)
        for candidate in result.candidates:
            candidate.score = math.nan
        return result

    fake_engine.generate = nan_generate
    reply = await jp_fetch("codecomp", "complete", method="POST", body='{"prefix": "x = "}')

    def refuse(constant):
        raise AssertionError(f"{constant} in the reply")

    body = json.loads(reply.body, parse_constant=refuse)
    assert body["completions"] == []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_failed_start_still_stops_on_sigterm(tmp_path):
    """`--CodecompConfig.device=gpu` (not a device): the extension reports it, SIGTERM ends
    the server (it once hung in cleanup until SIGKILL)."""
    port, token = free_port(), "faults-test"
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
           "JUPYTER_DATA_DIR": str(tmp_path / "data"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    (tmp_path / "root").mkdir()
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", f"--port={port}", "--no-browser",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp_path / 'root'}",
         "--CodecompConfig.device=gpu", "--allow-root"],
        env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "server.log", "wb"),
    )
    try:
        status = None
        for _ in range(600):  # until the server answers (or dies)
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/codecomp/status",
                    headers={"Authorization": f"token {token}"})
                status = json.loads(urllib.request.urlopen(request, timeout=5).read())
                break
            except OSError:
                time.sleep(0.1)
        assert status is not None and status["state"] == "failed"
        assert "device" in status["error"] and "gpu" in status["error"]
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) is not None  # a hang is the fault under test
        assert "AttributeError" not in (tmp_path / "server.log").read_text()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
