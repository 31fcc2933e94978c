"""A class on one machine: N students, each with their own Jupyter server, typing at once.

    python benchmarks/class_load.py [--model smollm2-135m] [--students 1 8] [--shared-only 32]
                                    [--inprocess-budget-mb 8000] [--threads 2]
                                    [--serve-args='' --serve-args='--cache-ram 0' ...]
                                    [--notebook NB.ipynb [--cell 30]]
                                    [--student-config engine_tokenize=False ...]

Each student's server is a real `jupyter server` process with the extension. Each student types
`api_latency.LINE` below `api_latency.CELLS` (or a line of `--notebook` below its cells) into
their own notebook (different first cell: no shared prefix), one character every `--interval` s,
each keystroke superseding the one before (the editor's pattern).
Two setups, in one run, for each N:
- in-process: every server loads its own copy of the model (only while N copies fit in
  `--inprocess-budget-mb`, measured on the first server);
- shared: one `jupyter codecomp serve --parallel N`, every server with `engine_url` set (one
  such setup for each `--serve-args`, one after the other).
Printed per setup: p50/p95 of the first streamed text and of the full suggestion (cold, the
notebook's first request, and warm, the keystrokes), every process's RSS and PSS, the total and
per student, the shared engine's prompt and generated tokens per second (from llama.cpp's
/metrics), errors, whether every student's last keystroke was answered, and for each N with both
setups the ratio of their total memory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

sys.path.insert(0, str(Path(__file__).parent))
from api_latency import CELLS, LINE, Server, free_port, pct  # noqa: E402


@dataclass
class Memory:
    """A process's and its children's memory, MB. RSS counts a page every process maps (Python,
    the libraries) once per process; PSS shares it out among them, so PSS adds up to what the
    machine holds."""

    rss: float = 0.0
    pss: float = 0.0

    def __add__(self, other: Memory) -> Memory:
        return Memory(self.rss + other.rss, self.pss + other.pss)


def memory_mb(pid: int) -> Memory:
    total = Memory()
    for p in [pid, *_children(pid)]:  # a server's kernels, if any
        try:
            text = Path(f"/proc/{p}/smaps_rollup").read_text()
            rss, pss = (int(re.search(rf"^{k}:\s+(\d+)", text, re.M).group(1)) / 1024
                        for k in ("Rss", "Pss"))
            total += Memory(rss, pss)
        except (OSError, AttributeError):
            pass
    return total


def _children(pid: int) -> list[int]:
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [int(k) for k in kids] + [g for k in kids for g in _children(int(k))]


class SharedEngine:
    def __init__(self, model: str, parallel: int, threads: int, serve_args=()):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.log_path = Path(tempfile.mkdtemp(prefix="class-load-engine-")) / "llama.log"
        cmd = [sys.executable, "-m", "jupyter_codecomp", "serve", model, "--port", str(self.port),
               "--parallel", str(parallel), "--threads", str(threads), "--metrics", *serve_args]
        with self.log_path.open("w") as log:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
        for _ in range(1200):
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                raise SystemExit(f"the engine did not start: see {self.log_path}")
            time.sleep(0.25)
        raise SystemExit("the engine did not start")

    def tokens(self) -> tuple[float, float]:
        """Prompt tokens evaluated and tokens generated so far, cancelled requests included
        (llama.cpp's /metrics counters)."""
        text = httpx.get(f"http://127.0.0.1:{self.port}/metrics").text
        counters = dict(line.split() for line in text.splitlines()
                        if line and not line.startswith("#"))
        return (float(counters["llamacpp:prompt_tokens_total"]),
                float(counters["llamacpp:tokens_predicted_total"]))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)


@dataclass
class StudentRun:
    records: list[dict] = field(default_factory=list)  # one per answered request
    superseded: int = 0
    errors: list[str] = field(default_factory=list)
    last_answered: bool = False


@dataclass(frozen=True)
class Homework:
    """What every student types (`line`) below the same cells (`cells`)."""

    cells: list[dict]
    line: str

    @classmethod
    def from_notebook(cls, path: Path, cell: int) -> Homework:
        """The first line of the notebook's `cell`-th code cell, below every cell before it: a
        real notebook's prompt sizes, where the built-in one is a few hundred tokens."""
        notebook = json.loads(path.read_text())["cells"]
        code = [i for i, c in enumerate(notebook) if c["cell_type"] == "code"
                and "".join(c["source"]).strip()]
        at = code[min(cell, len(code) - 1)]
        cells = [{"cell_type": c["cell_type"], "source": "".join(c["source"])}
                 for c in notebook[:at] if c["cell_type"] in ("code", "markdown")]
        return cls(cells, "".join(notebook[at]["source"]).strip().splitlines()[0])


async def type_line(server: Server, student: int, interval: float,
                    homework: Homework) -> StudentRun:
    """The student opens a notebook (cold request, awaited), then types the homework's line."""
    ws = await websocket_connect(HTTPRequest(
        f"ws://127.0.0.1:{server.port}/codecomp/stream",
        headers={"Authorization": f"token {server.token}"}))
    # A first cell of their own: no two students share a prompt prefix.
    cells = [{"cell_type": "markdown", "source": f"Homework of student {student}"},
             *homework.cells]
    line = homework.line
    run, sent, first_seen = StudentRun(), {}, {}
    last_id = f"k{len(line)}"

    def send(rid: str, prefix: str) -> None:
        sent[rid] = time.perf_counter()
        ws.write_message(json.dumps({"id": rid, "key": f"hw.ipynb#cell-{len(cells)}", "request": {
            "prefix": prefix, "cells": cells, "path": f"student-{student}/hw.ipynb",
            "mode": "line"}}))

    async def receive(until: str) -> None:
        while True:
            msg = json.loads(await asyncio.wait_for(ws.read_message(), 600))
            now = time.perf_counter()
            rid = msg["id"]
            if not msg["done"]:
                first_seen.setdefault(rid, now)
                continue
            if "reply" in msg:
                context = msg["reply"]["context"]
                run.records.append({"cold": rid == "cold",
                                    "first_ms": (first_seen.get(rid, now) - sent[rid]) * 1000,
                                    "full_ms": (now - sent[rid]) * 1000,
                                    "prompt": context["prompt_tokens"],
                                    "cached": context["cached_tokens"]})
                run.last_answered |= rid == last_id
            elif msg.get("cancelled"):
                run.superseded += 1
            else:
                run.errors.append(msg.get("error", {}).get("message", "?"))
            if rid == until:
                return

    send("cold", "")
    await receive("cold")
    reader = asyncio.create_task(receive(last_id))
    for i in range(1, len(line) + 1):
        send(f"k{i}", line[:i])
        await asyncio.sleep(interval)
    await reader
    ws.close()
    return run


async def measure(label: str, servers: list[Server], engine: SharedEngine | None,
                  args) -> Memory | None:
    """One setup typed through; returns the memory of all its processes (None: not ready)."""
    settled = ("ready", "failed", "engine_unavailable")
    statuses = await asyncio.gather(*(s.wait_ready(settled) for s in servers))
    failed = [s for s in statuses if s["state"] != "ready"]
    if failed:
        print(f"{label}: {len(failed)} server(s) not ready: {failed[0].get('error')}")
        return None
    tokens_before = engine.tokens() if engine else (0, 0)
    started = time.perf_counter()
    runs = await asyncio.gather(*(type_line(s, i, args.interval, args.homework)
                                  for i, s in enumerate(servers)))
    elapsed = time.perf_counter() - started
    rows = [r for run in runs for r in run.records]
    print(f"\n== {label}: {len(servers)} student(s), {elapsed:.1f} s of typing")
    for kind in ("cold", "warm"):
        sel = [r for r in rows if r["cold"] == (kind == "cold")]
        first, full = [r["first_ms"] for r in sel], [r["full_ms"] for r in sel]
        reused = 100 * sum(r["cached"] for r in sel) / max(1, sum(r["prompt"] for r in sel))
        print(f"  {kind}: n={len(sel):4}  first text p50 {pct(first, .5):7.0f} p95 "
              f"{pct(first, .95):7.0f} ms   full p50 {pct(full, .5):7.0f} p95 "
              f"{pct(full, .95):7.0f} ms   prompt tokens reused {reused:3.0f} %")
    errors = [e for run in runs for e in run.errors]
    print(f"  superseded {sum(r.superseded for r in runs)}, errors {len(errors)}"
          + (f" (e.g. {errors[0][:100]})" if errors else "")
          + f", last keystroke answered for {sum(r.last_answered for r in runs)} of {len(runs)}")
    students = [memory_mb(s.proc.pid) for s in servers]
    engine_memory = memory_mb(engine.proc.pid) if engine else Memory()
    total = sum(students, Memory()) + engine_memory
    for kind in ("rss", "pss"):
        name = kind.upper()
        print(f"  {name} MB per student server: "
              + " ".join(f"{getattr(v, kind):.0f}" for v in students))
        print(f"  {name} MB: students {sum(getattr(v, kind) for v in students):.0f}"
              + (f" + engine {getattr(engine_memory, kind):.0f}" if engine else "")
              + f" = total {getattr(total, kind):.0f}, per student "
              f"{getattr(total, kind) / len(servers):.0f}")
    if engine:
        prompt, generated = (a - b for a, b in zip(engine.tokens(), tokens_before))
        print(f"  engine: {prompt:.0f} prompt tokens ({prompt / elapsed:.0f}/s), {generated:.0f} "
              f"generated ({generated / elapsed:.1f}/s) over the run")
    return total


async def run_size(args, n: int, inprocess_mb: float | None) -> float | None:
    """Both setups for n students; returns the measured RSS of one in-process server."""
    inprocess = None
    if n not in args.shared_only and (inprocess_mb is None or
                                      n * inprocess_mb <= args.inprocess_budget_mb):
        servers = [Server(args.model, args.threads) for _ in range(n)]
        try:
            inprocess = await measure("in-process engines", servers, None, args)
            inprocess_mb = max(memory_mb(s.proc.pid).rss for s in servers)
        finally:
            for s in servers:
                s.stop()
    else:
        print(f"\n== in-process engines: {n} students skipped ({n} x {inprocess_mb or 0:.0f} MB "
              f"over the {args.inprocess_budget_mb} MB budget, or --shared-only)")
    parallel = args.engine_parallel or n
    options = dict(option.split("=", 1) for option in args.student_config)
    for serve_args in args.serve_args or [""]:
        engine = SharedEngine(args.model, parallel, args.engine_threads, shlex.split(serve_args))
        servers = [Server(args.model, args.threads, engine_url=engine.url, **options)
                   for _ in range(n)]
        label = f"serve --parallel {parallel} {serve_args}".strip()
        try:
            shared = await measure(f"shared engine ({label})", servers, engine, args)
        finally:
            for s in servers:
                s.stop()
            engine.stop()
        if inprocess and shared:
            print(f"\n== {n} students, total memory: in-process / shared ({label}) = "
                  f"{inprocess.rss:.0f} / {shared.rss:.0f} MB = {inprocess.rss / shared.rss:.2f}x"
                  f" (RSS); {inprocess.pss:.0f} / {shared.pss:.0f} MB = "
                  f"{inprocess.pss / shared.pss:.2f}x (PSS)")
    return inprocess_mb


async def main_async(args) -> None:
    args.homework = (Homework.from_notebook(args.notebook, args.cell) if args.notebook
                     else Homework(CELLS, LINE))
    print(f"model {args.model}, {args.threads} thread(s) per in-process engine, "
          f"{args.engine_threads} for the shared engine, typing {args.homework.line!r} below "
          f"{len(args.homework.cells)} cells, one character every {args.interval * 1000:.0f} ms; "
          f"machine: {os.cpu_count()} CPUs")
    inprocess_mb = None
    for n in sorted(set(args.students) | set(args.shared_only)):
        inprocess_mb = await run_size(args, n, inprocess_mb)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--students", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--shared-only", type=int, nargs="*", default=[],
                        help="sizes run only against the shared engine")
    parser.add_argument("--inprocess-budget-mb", type=float, default=8000,
                        help="skip in-process runs whose N model copies would exceed this")
    parser.add_argument("--notebook", type=Path,
                        help="type a line of this notebook below its cells (default: a small "
                             "built-in notebook, api_latency.py's)")
    parser.add_argument("--cell", type=int, default=30,
                        help="with --notebook: the code cell whose first line is typed")
    parser.add_argument("--interval", type=float, default=0.12, help="seconds between keystrokes")
    parser.add_argument("--threads", type=int, default=2)
    # llama.cpp's threads wait for each other at every layer: on this 2-core machine shared with
    # other jobs, 2 threads made a 16-token completion 20-40x slower than 1 (same run).
    parser.add_argument("--engine-threads", type=int, default=1)
    parser.add_argument("--engine-parallel", type=int, default=0,
                        help="the engine's slots (0: one per student)")
    parser.add_argument("--serve-args", action="append", metavar="ARGS",
                        help="more `jupyter codecomp serve` arguments, one shared setup each, in "
                             "this run: --serve-args='' --serve-args='--cache-ram 0'")
    parser.add_argument("--student-config", nargs="*", default=[], metavar="NAME=VALUE",
                        help="CodecompConfig settings of the shared engine's students, e.g. "
                             "engine_read_timeout=15 engine_tokenize=False")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
