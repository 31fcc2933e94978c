"""Reliability under attack and load (issue 12), against a real `jupyter server` with a real model.

    JUPYTER_CODECOMP_CACHE_DIR=.cache/models python benchmarks/reliability.py \
        [--model smollm2-135m] [--fuzz 1000] [--typists 20] [--keystrokes 30]

Starts a server with `disabled_paths = ["exams/**"]`, notebooks in its root (an exam, a notebook
switched off in its metadata, a normal one) and two kernel sessions (the exam's, the normal
notebook's), then runs each category and prints, per category: requests tried, 5xx replies,
hangs (no reply within --hang-after s), policy leaks (a completion, prompt or variable for a
notebook that is off), and what the category is about. Last, the server's RSS before and after.

Categories: policy (every route x every spelling of an off notebook x kernel from another
notebook), fuzz (hypothesis-generated bodies and WebSocket messages, tests/test_input_fuzz.py's
strategies), hostile (surrogates, deep nesting, a 20000-character line, 3 MB and 10 MB socket
messages), load (typists on the WebSocket, a new keystroke with the same key every 100 ms),
abandoned (HTTP clients that give up while the model works).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import psutil
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_input_fuzz import draw, requests, ws_messages  # noqa: E402 (one source of cases)

OFF = ["exams/test.ipynb", "exams/sub/deep.ipynb", "locked.ipynb"]


@dataclass
class Tally:
    tried: int = 0
    errors_5xx: int = 0
    hangs: int = 0
    leaks: int = 0
    notes: list[str] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, model: str, threads: int, hang_after: float):
        self.port, self.token, self.hang_after = free_port(), uuid.uuid4().hex, hang_after
        self.root = Path(tempfile.mkdtemp())
        for path, metadata in [("exams/test.ipynb", {}), ("exams/sub/deep.ipynb", {}),
                               ("locked.ipynb", {"codecomp": {"enabled": False}}),
                               ("normal.ipynb", {})]:
            (self.root / path).parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(nbformat.v4.new_notebook(metadata=metadata), self.root / path)
        cmd = [sys.executable, "-m", "jupyter_server", "--no-browser", f"--port={self.port}",
               f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
               f"--CodecompConfig.model={model}", f"--CodecompConfig.threads={threads}",
               '--CodecompConfig.disabled_paths=["exams/**"]']
        if os.geteuid() == 0:
            cmd.append("--allow-root")
        self.log = open(self.root / "server.log", "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "HF_HUB_OFFLINE": "1"})
        self.http = f"http://127.0.0.1:{self.port}"

    async def call(self, path: str, method="GET", body: str | None = None,
                   timeout: float | None = None) -> tuple[int, dict]:
        """(status, JSON body); status 0 for no reply within the hang bound."""
        request = HTTPRequest(self.http + path, method=method, body=body,
                              headers={"Authorization": f"token {self.token}"},
                              request_timeout=timeout or self.hang_after)
        try:
            reply = await AsyncHTTPClient().fetch(request)
            return reply.code, json.loads(reply.body or b"null")
        except HTTPClientError as exc:
            if exc.code == 599:
                return 0, {}
            return exc.code, json.loads(exc.response.body or b"null")

    async def socket(self):
        return await websocket_connect(HTTPRequest(
            f"ws://127.0.0.1:{self.port}/codecomp/stream",
            headers={"Authorization": f"token {self.token}"}), max_message_size=64 << 20)

    async def until_done(self, ws, request_id) -> dict | None:
        """The `done` message for `request_id` (None: a hang or a closed socket)."""
        while True:
            try:
                raw = await asyncio.wait_for(ws.read_message(), self.hang_after)
            except asyncio.TimeoutError:
                return None
            if raw is None:
                return None
            message = json.loads(raw)
            if message["done"] and message["id"] in (request_id, None):
                return message

    async def wait_ready(self) -> None:
        for _ in range(2400):
            try:
                code, status = await self.call("/codecomp/status", timeout=5)
            except OSError:  # not listening yet
                code, status = 0, {}
            if code == 200 and status["state"] == "ready":
                return
            if code == 200 and status["state"] == "failed":
                raise SystemExit(f"model failed: {status['error']} ({status['fix']})")
            await asyncio.sleep(0.25)
        raise SystemExit("the server did not become ready")

    async def session(self, path: str) -> str:
        body = json.dumps({"path": path, "name": Path(path).name, "type": "notebook",
                           "kernel": {"name": "python3"}})
        return (await self.call("/api/sessions", "POST", body, timeout=120))[1]["kernel"]["id"]

    def rss_mb(self) -> float:
        return psutil.Process(self.proc.pid).memory_info().rss / 2**20

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)


def spellings(root: Path, path: str) -> list[str]:
    return [path, f"./{path}", f"foo/../{path}", f" {path}", f"{path}#cell", f"{path}?x=1",
            f"{path}/", f"/{path}", str(root / path), path.upper(), path.replace("/", "\\")]


def leaked(reply: dict) -> bool:
    return bool(reply.get("completions") or reply.get("prompt_text")
                or reply.get("variables_block"))


async def route(server: Server, name: str, body: dict, tally: Tally) -> dict:
    tally.tried += 1
    if name == "stream":
        ws = await server.socket()
        ws.write_message(json.dumps({"id": "r", "request": body}))
        message = await server.until_done(ws, "r")
        ws.close()
        if message is None:
            tally.hangs += 1
            return {}
        tally.errors_5xx += message.get("error", {}).get("code") == "internal"
        return message.get("reply", {})
    code, reply = await server.call(f"/codecomp/{name}", "POST", json.dumps(body))
    tally.hangs += code == 0
    tally.errors_5xx += code >= 500
    return reply or {}


async def policy(server: Server, kernels: dict) -> Tally:
    tally = Tally(notes=["routes x spellings of 3 off notebooks; exam kernel from normal.ipynb"])
    for name in ("complete", "context", "stream"):
        for target in OFF:
            for path in spellings(server.root, target):
                reply = await route(server, name, {"prefix": "x = ", "path": path}, tally)
                tally.leaks += leaked(reply)
        for path in (None, "normal.ipynb"):
            body = {"prefix": "x = ", "path": path, "kernel_id": kernels["exam"]}
            reply = await route(server, name, body, tally)
            kernel = reply.get("kernel") or reply.get("context", {}).get("kernel")
            tally.leaks += leaked(reply) if path is None else kernel != "disabled_notebook"
    return tally


async def fuzz(server: Server, count: int) -> Tally:
    tally = Tally(notes=[f"{count} HTTP bodies (complete/context), {count // 3} socket messages"])
    for i, body in enumerate(draw(requests, count)):
        code, _ = await server.call("/codecomp/" + ("complete" if i % 3 else "context"),
                                    "POST", json.dumps(body))
        tally.tried += 1
        tally.hangs += code == 0
        tally.errors_5xx += code >= 500
    ws = await server.socket()
    for i, message in enumerate(draw(ws_messages, count // 3)):
        ws.write_message(json.dumps(message))
        ws.write_message(json.dumps({"id": f"probe{i}", "request": {"prefix": "x"}}))
        tally.tried += 1
        reply = await server.until_done(ws, f"probe{i}")
        tally.hangs += reply is None
        if reply is None:
            ws = await server.socket()
    ws.close()
    return tally


async def hostile(server: Server) -> Tally:
    tally = Tally(notes=["surrogates, nesting 1000/100000, a 20000-char line, 3 and 10 MB"])
    bodies = [{"prefix": "\ud800"}, {"prefix": "x", "suffix": "\udfff"},
              {"prefix": "x", "cells": [{"source": "\ud800"}]},
              {"prefix": "x1 = 1; " * 2500 + "total = ", "path": "normal.ipynb"}]
    for name in ("complete", "context", "stream"):
        for body in bodies:
            await route(server, name, body, tally)
    for depth in (1000, 100_000):
        raw = '{"prefix": ' + "[" * depth + "]" * depth + "}"
        code, _ = await server.call("/codecomp/complete", "POST", raw)
        tally.tried += 1
        tally.errors_5xx += code >= 500
        tally.hangs += code == 0
    for size in (3 << 20, 10 << 20):
        ws = await server.socket()
        ws.write_message(json.dumps({"id": "big", "request": {"prefix": "x" * size}}))
        tally.tried += 1
        reply = await server.until_done(ws, "big")
        tally.hangs += reply is None
        ws.close()
    return tally


async def load(server: Server, typists: int, keystrokes: int) -> Tally:
    tally = Tally()

    async def typist(who: int) -> None:
        ws = await server.socket()
        for stroke in range(keystrokes):
            ws.write_message(json.dumps({"id": stroke, "key": f"normal.ipynb#c{who}", "request": {
                "prefix": f"def total_{who}(values):\n    return sum(values) * {stroke}",
                "path": "normal.ipynb", "mode": "line"}}))
            tally.tried += 1
            await asyncio.sleep(0.1)
        done: dict = {}
        while len(done) < keystrokes:
            try:
                raw = await asyncio.wait_for(ws.read_message(), server.hang_after)
            except asyncio.TimeoutError:
                break
            message = json.loads(raw)
            if message["done"]:
                done[message["id"]] = message
        ws.close()
        tally.hangs += keystrokes - len(done)
        last = done.get(keystrokes - 1, {})
        answered.append("reply" in last)
        busy.append(sum(m.get("error", {}).get("code") == "busy" for m in done.values()))
        tally.errors_5xx += sum(m.get("error", {}).get("code") == "internal"
                                for m in done.values())

    answered: list[bool] = []
    busy: list[int] = []
    await asyncio.gather(*(typist(who) for who in range(typists)))
    _, status = await server.call("/codecomp/status")
    tally.notes.append(f"{typists} typists x {keystrokes} keystrokes: last answered "
                       f"{sum(answered)}/{typists}, busy {sum(busy)}, most jobs ahead of one "
                       f"{status['queue']['max_jobs_ahead']}")
    return tally


async def abandoned(server: Server, clients: int) -> Tally:
    tally = Tally()
    body = json.dumps({"prefix": "# a long list\nnumbers = [", "mode": "block",
                       "max_new_tokens": 200, "path": "normal.ipynb"})
    await asyncio.gather(*(server.call("/codecomp/complete", "POST", body, timeout=0.3)
                           for _ in range(clients)))
    tally.tried += clients
    polls = 0
    while polls < 600:  # a bound on polls, to call a hang a hang
        polls += 1
        _, status = await server.call("/codecomp/status")
        if status["pending"] == 0:
            break
        await asyncio.sleep(0.05)
    tally.hangs += status["pending"] > 0
    tally.notes.append(f"{clients} clients gave up after 0.3 s; pending back to 0 after "
                       f"{polls} status polls")
    return tally


async def main(args) -> None:
    server = Server(args.model, args.threads, args.hang_after)
    try:
        await server.wait_ready()
        kernels = {"exam": await server.session("exams/test.ipynb"),
                   "normal": await server.session("normal.ipynb")}
        await route(server, "complete", {"prefix": "x = ", "path": "normal.ipynb"}, Tally())
        rss_before = server.rss_mb()
        started = time.perf_counter()
        categories = {
            "policy": lambda: policy(server, kernels),
            "fuzz": lambda: fuzz(server, args.fuzz),
            "hostile": lambda: hostile(server),
            "load": lambda: load(server, args.typists, args.keystrokes),
            "load again": lambda: load(server, args.typists, args.keystrokes),
            "abandoned": lambda: abandoned(server, 10),
        }
        results, rss = {}, {}
        for name, run in categories.items():
            results[name] = await run()
            rss[name] = server.rss_mb()  # growth that stops is caches; growth that goes on, a leak
        rss_after = server.rss_mb()
    finally:
        server.stop()
    print(f"\nreliability: model {args.model}, {time.perf_counter() - started:.0f} s, "
          f"hang = no reply within {args.hang_after:.0f} s")
    print(f"{'category':10} {'tried':>6} {'5xx':>4} {'hangs':>5} {'leaks':>5} {'RSS MB':>6}  notes")
    for name, tally in results.items():
        print(f"{name:10} {tally.tried:>6} {tally.errors_5xx:>4} {tally.hangs:>5} "
              f"{tally.leaks:>5} {rss[name]:>6.0f}  {'; '.join(tally.notes)}")
    total = [sum(getattr(t, f) for t in results.values())
             for f in ("tried", "errors_5xx", "hangs", "leaks")]
    print(f"{'total':10} {total[0]:>6} {total[1]:>4} {total[2]:>5} {total[3]:>5}")
    print(f"server RSS: {rss_before:.0f} MB before, {rss_after:.0f} MB after "
          f"({rss_after - rss_before:+.0f} MB)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fuzz", type=int, default=1000)
    parser.add_argument("--typists", type=int, default=20)
    parser.add_argument("--keystrokes", type=int, default=30)
    parser.add_argument("--hang-after", type=float, default=120.0)
    asyncio.run(main(parser.parse_args()))
