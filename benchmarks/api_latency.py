"""API latency as a user feels it: typing a line character by character over the WebSocket.

    python benchmarks/api_latency.py [--model qwen2.5-coder-0.5b] [--clients 1 4 16]

Starts a real `jupyter server` with the extension and the model, and a kernel holding a
DataFrame. Each simulated client types a line into a notebook cell, one character every
`--interval` ms, sending a request per keystroke with the cell's key so that each new request
supersedes the previous one. Measured per request that completes (superseded ones are counted):
time to first streamed text, time to the full suggestion; cold (first request of a client) vs
warm; with and without kernel variables; with 1, 4 and 16 concurrent clients. p50/p95 printed.
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
from pathlib import Path

from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import websocket_connect

CELLS = [
    {"cell_type": "markdown", "source": "# Weekly sales\nWe load the sales and look at regions."},
    {"cell_type": "code", "source": "import pandas as pd\nimport numpy as np"},
    {"cell_type": "code", "source": "sales = pd.DataFrame({'region': ['north', 'south'] * 50,\n"
                                    "                      'revenue': np.arange(100.0),\n"
                                    "                      'units': np.arange(100)})"},
    {"cell_type": "code", "source": "sales.head()"},
]
LINE = "by_region = sales.groupby('region')['revenue'].sum()"
KERNEL_SETUP = CELLS[1]["source"] + "\n" + CELLS[2]["source"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, model: str, threads: int):
        self.port, self.token = free_port(), uuid.uuid4().hex
        self.root = tempfile.mkdtemp()
        cmd = [sys.executable, "-m", "jupyter_server", "--no-browser", f"--port={self.port}",
               f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
               f"--CodecompConfig.model={model}", f"--CodecompConfig.threads={threads}",
               "--ServerApp.jpserver_extensions={'jupyter_codecomp': True}"]
        if os.geteuid() == 0:
            cmd.append("--allow-root")
        self.log = open(Path(self.root) / "server.log", "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "HF_HUB_OFFLINE": "1"})
        self.base = f"http://127.0.0.1:{self.port}"

    async def fetch(self, path: str, method="GET", body=None) -> dict:
        request = HTTPRequest(f"{self.base}{path}", method=method, body=body,
                              headers={"Authorization": f"token {self.token}"}, request_timeout=300)
        return json.loads((await AsyncHTTPClient().fetch(request)).body or b"null")

    async def wait_ready(self) -> dict:
        for _ in range(1200):
            try:
                status = await self.fetch("/codecomp/status")
                if status["state"] == "ready":
                    return status
                if status["state"] == "failed":
                    raise SystemExit(f"model failed: {status['error']} ({status['fix']})")
            except ConnectionError:
                pass
            except OSError:
                pass
            await asyncio.sleep(0.25)
        raise SystemExit("server did not become ready")

    async def kernel_with_data(self) -> str:
        kernel = await self.fetch("/api/kernels", "POST", "{}")
        ws = await websocket_connect(HTTPRequest(
            f"ws://127.0.0.1:{self.port}/api/kernels/{kernel['id']}/channels",
            headers={"Authorization": f"token {self.token}"}))
        msg_id = uuid.uuid4().hex
        ws.write_message(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "", "session": "",
                       "version": "5.3", "date": ""},
            "parent_header": {}, "metadata": {}, "channel": "shell",
            "content": {"code": KERNEL_SETUP, "silent": False, "store_history": True,
                        "user_expressions": {}, "allow_stdin": False}}))
        while True:
            msg = json.loads(await ws.read_message())
            if msg.get("msg_type") == "execute_reply" and msg["parent_header"].get("msg_id") == msg_id:
                break
        ws.close()
        return kernel["id"]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


async def type_line(server: Server, client: int, kernel_id: str | None, interval: float) -> list[dict]:
    """One client typing LINE; returns a record per request that got an answer."""
    ws = await websocket_connect(HTTPRequest(f"ws://127.0.0.1:{server.port}/codecomp/stream",
                                             headers={"Authorization": f"token {server.token}"}))
    key = f"bench-{client}.ipynb#cell-5"
    # Each student's notebook differs from its first line: clients do not share a KV prefix.
    cells = [{"cell_type": "markdown", "source": f"Homework of student {client}"}, *CELLS]
    sent: dict[str, float] = {}
    records: list[dict] = []
    first_seen: dict[str, float] = {}
    done = asyncio.Event()
    expected = len(LINE)

    async def reader():
        finished = 0
        while finished < expected:
            msg = json.loads(await ws.read_message())
            now = time.perf_counter()
            rid = msg["id"]
            if not msg["done"]:
                first_seen.setdefault(rid, now)
                continue
            finished += 1
            if "reply" in msg:
                start = sent[rid]
                records.append({
                    "first_ms": (first_seen.get(rid, now) - start) * 1000,
                    "full_ms": (now - start) * 1000,
                    "cold": rid.endswith("-cold"),
                    "variables": msg["reply"]["context"]["variables"],
                })
            else:
                records.append({"superseded": True})
        done.set()

    def send(rid: str, prefix: str) -> None:
        sent[rid] = time.perf_counter()
        ws.write_message(json.dumps({"id": rid, "key": key, "request": {
            "prefix": prefix, "suffix": "", "cells": cells, "kernel_id": kernel_id,
            "path": f"bench-{client}.ipynb", "mode": "line"}}))

    task = asyncio.create_task(reader())
    # Cold: the notebook is opened, the cursor sits in a new cell; the answer is awaited.
    expected += 1
    send(f"{client}-cold", "")
    while not any(r.get("cold") for r in records):
        await asyncio.sleep(0.01)
    for i in range(1, len(LINE) + 1):
        send(f"{client}-{i}", LINE[:i])
        await asyncio.sleep(interval)
    await asyncio.wait_for(done.wait(), 600)
    task.cancel()
    ws.close()
    return records


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] if values else float("nan")


def summarize(label: str, records: list[dict]) -> None:
    answered = [r for r in records if "full_ms" in r]
    superseded = sum(1 for r in records if r.get("superseded"))
    for kind, rows in (("cold", [r for r in answered if r["cold"]]),
                       ("warm", [r for r in answered if not r["cold"]])):
        if not rows:
            continue
        first = [r["first_ms"] for r in rows]
        full = [r["full_ms"] for r in rows]
        print(f"{label:28} {kind:5} n={len(rows):4}  first token p50 {pct(first, .5):7.0f} "
              f"p95 {pct(first, .95):7.0f} ms   full p50 {pct(full, .5):7.0f} p95 {pct(full, .95):7.0f} ms")
    print(f"{'':28} superseded {superseded} of {len(records)}")


async def main_async(args) -> None:
    server = Server(args.model, args.threads)
    try:
        status = await server.wait_ready()
        print(f"{status['model']} on {status['device']}; typing {len(LINE)} characters, "
              f"one every {args.interval * 1000:.0f} ms")
        kernel_id = await server.kernel_with_data()
        for variables in (False, True):
            for clients in args.clients:
                label = f"{clients:2} client(s), {'with' if variables else 'no'} variables"
                runs = await asyncio.gather(*(type_line(server, c + 100 * clients * (1 + variables),
                                                        kernel_id if variables else None,
                                                        args.interval) for c in range(clients)))
                summarize(label, [r for run in runs for r in run])
        print(f"\nserver p50 latency {(await server.fetch('/codecomp/status'))['latency_ms']}")
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--interval", type=float, default=0.12, help="seconds between keystrokes")
    parser.add_argument("--threads", type=int, default=2)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
