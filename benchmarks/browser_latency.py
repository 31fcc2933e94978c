"""Keystroke-to-ghost-text latency in the browser: what a student sees in JupyterLab.

    python benchmarks/browser_latency.py [--model smollm2-135m|qwen2.5-coder-0.5b|PATH]
                                         [--trials 20] [--debounce-ms 250] [--json OUT]

Starts a real `jupyter lab` with the extension and the model, opens a notebook in Debian's
Chromium (Playwright), runs its setup cells in the kernel, then, for each trial, types a line
into an empty cell the way a person does (one key every 60 ms) and measures in the page, from
the last keydown: the first ghost text (first streamed words) and the finished ghost text
(streaming over). The extension's debounce (quiet time before a request leaves) is part of
what the user waits for and is included; it is printed beside the figures. Server-side
timings of the same requests (first token, total) come from the WebSocket replies.
p50/p95 printed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "browser"))

from labdriver import LabPage, chromium_available, launch_browser, start_lab  # noqa: E402

CELLS: list[str | tuple[str, str]] = [
    ("markdown", "# Weekly sales\nWe load the sales and look at regions."),
    "import pandas as pd\nimport numpy as np",
    "sales = pd.DataFrame({'region': ['north', 'south'] * 50,\n"
    "                      'revenue': np.arange(100.0),\n"
    "                      'units': np.arange(100)})",
    "sales.head()",
    "",
]
# Lines typed in the empty last cell ({i} keeps every trial's prompt new: no cache hits).
LINES = [
    "by_region{i} = sales.groupby(",
    "total{i} = sales['revenue'].",
    "top{i} = sales.sort_values(",
    "for row{i} in sales.",
    "mean{i} = np.",
    "units{i} = sales[sales['region'] == ",
    "print(sales.",
    "ratio{i} = sales['revenue'] / ",
]

# Timestamps taken in the page: the last keydown, the first ghost text after it, and the end of
# streaming (ghost text present without the streaming indicator).
INSTRUMENT = """
() => {
  const w = window;
  w.__cc = { key: 0, first: null, done: null, frames: [] };
  document.addEventListener('keydown', () => {
    w.__cc.key = performance.now(); w.__cc.first = null; w.__cc.done = null;
  }, true);
  const check = () => {
    const g = document.querySelector('.jp-GhostText');
    if (!g || !g.textContent.trim()) return;
    const now = performance.now();
    if (w.__cc.first === null) w.__cc.first = now;
    if (w.__cc.done === null && !g.querySelector('.jp-GhostText-streamingIndicator')) {
      w.__cc.done = now;
    }
  };
  new MutationObserver(check).observe(document.body,
    { childList: true, subtree: true, characterData: true });
}
"""

SOCKET_SPY = """
(() => {
  const Native = window.WebSocket;
  window.__ccReplies = [];
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      if (String(args[0]).includes('codecomp/stream')) {
        this.addEventListener('message', event => {
          try {
            const m = JSON.parse(event.data);
            if (m.done && m.reply) window.__ccReplies.push(m.reply.timings_ms);
          } catch (e) {}
        });
      }
    }
  };
})();
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(name: str, values: list[float]) -> str:
    if not values:
        return f"{name:<38} (none)"
    return (f"{name:<38} n={len(values):>3}  p50={statistics.median(values):7.0f} ms"
            f"  p95={percentile(values, 95):7.0f} ms  min={min(values):6.0f}  max={max(values):6.0f}")


def resolve_model(name: str) -> str:
    cache = Path(os.environ.get("JUPYTER_CODECOMP_CACHE_DIR", ROOT / ".cache" / "models"))
    return str(cache / name) if (cache / name / "codecomp.json").exists() else name


def run(args) -> dict:
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="codecomp-browser-bench-"))
    server = start_lab(tmp, resolve_model(args.model))
    try:
        status = server.wait_ready(timeout=600)
        server.put_settings("jupyter-codecomp:plugin", {"debounceMs": args.debounce_ms})
        server.write_notebook("bench.ipynb", CELLS)
        with sync_playwright() as playwright:
            browser = launch_browser(playwright)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.add_init_script(SOCKET_SPY)
            lab = LabPage(page, server).open("bench.ipynb")
            lab.wait_kernel_idle()
            for index in (1, 2):  # imports and the DataFrame: the kernel has variables
                lab.focus_cell(index)
                lab.run_cell()
                lab.wait_kernel_idle()
            lab.wait_status("ready", timeout=120)
            page.evaluate(INSTRUMENT)
            last = len(CELLS) - 1
            first, done, misses = [], [], 0
            for trial in range(args.warmup + args.trials):
                line = LINES[trial % len(LINES)].format(i=trial)
                lab.focus_cell(last)
                page.keyboard.press("Control+a")
                page.keyboard.press("Delete")
                time.sleep(0.3)
                lab.page.keyboard.type(line, delay=args.key_interval_ms)
                try:
                    page.wait_for_function("() => window.__cc.done !== null",
                                           timeout=args.timeout * 1000)
                except Exception:
                    misses += 1
                    continue
                marks = page.evaluate("() => window.__cc")
                if trial < args.warmup:
                    continue
                first.append(marks["first"] - marks["key"])
                done.append(marks["done"] - marks["key"])
            server_timings = page.evaluate("() => window.__ccReplies")[args.warmup:]
            browser.close()
    finally:
        server.stop()
    result = {
        "model": status.get("model"),
        "device": status.get("device"),
        "debounce_ms": args.debounce_ms,
        "trials": args.trials,
        "misses": misses,
        "keystroke_to_first_ghost_ms": first,
        "keystroke_to_final_ghost_ms": done,
        "server_first_token_ms": [t.get("first_token", 0) for t in server_timings],
        "server_total_ms": [t.get("total", 0) for t in server_timings],
    }
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=os.environ.get("JUPYTER_CODECOMP_BENCH_MODEL",
                                                          "smollm2-135m"))
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--debounce-ms", type=int, default=250)
    parser.add_argument("--key-interval-ms", type=int, default=60)
    parser.add_argument("--timeout", type=float, default=30)
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not chromium_available():
        print("Debian's Chromium is missing: apt-get install -y chromium", file=sys.stderr)
        return 2
    result = run(args)
    print(f"model {result['model']} on {result['device']}, debounce {result['debounce_ms']} ms, "
          f"{result['trials']} trials ({result['misses']} without ghost text)")
    print(summary("keystroke -> first ghost text", result["keystroke_to_first_ghost_ms"]))
    print(summary("keystroke -> finished ghost text", result["keystroke_to_final_ghost_ms"]))
    print(summary("server: first token", result["server_first_token_ms"]))
    print(summary("server: total", result["server_total_ms"]))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
