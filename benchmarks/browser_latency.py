"""Typing latency in the browser (issue 17): what a student waits for in JupyterLab.

    python benchmarks/browser_latency.py [--model qwen2.5-coder-0.5b] [--trials 10] [--json OUT]

Starts a real `jupyter lab` with the extension and the model and drives Debian's Chromium
(Playwright). Three scenarios, each with its baseline in the same run, trials alternating:
(a) cold open: a notebook with about 1500 tokens of cells above (a new path per trial: no cache
    hit), open it, click into its last cell, wait 3 s, type one character; keydown to the first
    ghost text. Prefill ahead (the default) against the `warm` setting off.
(b) warm keystroke: type a line at one key per 60 ms where the cells above are cached; the last
    keydown to the first ghost text. The adaptive debounce (the default) against a fixed 250 ms.
(c) next after accept: Tab accepts a line's ghost text; the Tab keydown to the next line's ghost
    text (asked for at once after the accept; before, nothing came until the next keystroke).
Figures are measured in the page (performance.now()), p50/p95, with the paired bootstrap 95% CI
of the median difference. Server-side timings of the same requests come from their replies.
Pages run with `minConfidence: 0`: this measures how fast a suggestion shows, not which ones.
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

from jupyter_codecomp.tools.eval_stats import bootstrap_median_ci  # noqa: E402

PLUGIN = "jupyter-codecomp:plugin"
SETUP: list[str | tuple[str, str]] = [
    ("markdown", "# Weekly sales\nWe load the sales and look at regions."),
    "import pandas as pd\nimport numpy as np",
    "sales = pd.DataFrame({'region': ['north', 'south'] * 50,\n"
    "                      'revenue': np.arange(100.0),\n"
    "                      'units': np.arange(100)})",
    "sales.head()",
]
# Lines typed in (b) and (c) ({i} keeps every trial's line new: no cache hit on the line).
LINES = [
    "by_region{i} = sales.groupby(",
    "total{i} = sales['revenue'].",
    "top{i} = sales.sort_values(",
    "mean{i} = np.",
    "units{i} = sales[sales['region'] == ",
    "ratio{i} = sales['revenue'] / ",
]

# In the page: the last keydown, the ghost text shown then, and the first ghost text after it
# that differs (an accepted ghost text may linger a frame after Tab).
INSTRUMENT = """
() => {
  const w = window;
  const ghost = () => {
    const g = document.querySelector('.jp-GhostText:not(.jp-GhostText-letterSpacer)'
      + ':not(.jp-GhostText-lineSpacer)');
    return g ? g.textContent : '';
  };
  w.__cc = { key: 0, before: '', first: null, text: '' };
  document.addEventListener('keydown', () => {
    w.__cc = { key: performance.now(), before: ghost(), first: null, text: '' };
  }, true);
  new MutationObserver(() => {
    const text = ghost();
    if (w.__cc.first === null && text.trim() && text !== w.__cc.before) {
      w.__cc.first = performance.now();
      w.__cc.text = text;
    }
  }).observe(document.body, { childList: true, subtree: true, characterData: true });
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
            if (m.done && m.reply) window.__ccReplies.push(m.reply);
          } catch (e) {}
        });
      }
    }
  };
})();
"""


def notebook_above(cells: int = 26) -> list[str | tuple[str, str]]:
    """About 1500 tokens of a plausible analysis notebook, and a last cell to finish."""
    out: list[str | tuple[str, str]] = list(SETUP)
    for k in range(cells):
        out.append(("markdown", f"## Step {k}: revenue by region, variant {k}"))
        out.append(f"step{k} = sales[sales['units'] > {k}].copy()\n"
                   f"step{k}['share'] = step{k}['revenue'] / step{k}['revenue'].sum()\n"
                   f"summary{k} = step{k}.groupby('region')['share'].agg(['mean', 'max'])")
    out.append("by_region = sales.groupby")
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def summary(name: str, values: list[float]) -> str:
    if not values:
        return f"  {name:<40} (none)"
    return (f"  {name:<40} n={len(values):>3}  p50={statistics.median(values):7.0f} ms"
            f"  p95={percentile(values, 95):7.0f} ms  min={min(values):6.0f}"
            f"  max={max(values):6.0f}")


def paired(name: str, new: list[float | None], old: list[float | None]) -> str:
    """Median of the paired differences (new - old) with its bootstrap 95% CI, and the ratio."""
    pairs = [(a, b) for a, b in zip(new, old) if a is not None and b is not None]
    if len(pairs) < 3:
        return f"  {name}: too few pairs ({len(pairs)})"
    diffs = [a - b for a, b in pairs]
    low, high = bootstrap_median_ci(diffs)
    new_median = statistics.median(a for a, _ in pairs)
    ratio = statistics.median(b for _, b in pairs) / max(1e-9, new_median)
    return (f"  {name}: median difference {statistics.median(diffs):+.0f} ms "
            f"(95% CI {low:+.0f} to {high:+.0f}), {ratio:.1f}x faster, "
            f"{len(pairs)} pairs")


def resolve_model(name: str) -> str:
    cache = Path(os.environ.get("JUPYTER_CODECOMP_CACHE_DIR",
                                Path.home() / ".local/share/jupyter/codecomp/models"))
    return str(cache / name) if (cache / name / "codecomp.json").exists() else name


def open_page(browser, server, path: str, settings: dict) -> LabPage:
    """A page that read `settings` (the user settings apply to pages opened afterwards)."""
    server.put_settings(PLUGIN, {"minConfidence": 0, **settings})
    page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    page.add_init_script(SOCKET_SPY)
    lab = LabPage(page, server).open(path)
    lab.wait_status("ready", timeout=300)
    page.evaluate(INSTRUMENT)
    return lab


def first_ghost_ms(lab: LabPage, timeout_s: float) -> float | None:
    try:
        lab.page.wait_for_function("() => window.__cc.first !== null", timeout=timeout_s * 1000)
    except Exception:  # noqa: BLE001 (a miss is counted, not fatal)
        return None
    marks = lab.page.evaluate("() => window.__cc")
    return marks["first"] - marks["key"]


def cold_open(browser, server, trial: int, warm: bool, args) -> float | None:
    """(a): open, click into the last cell, wait 3 s, type one character."""
    cells = notebook_above()
    path = server.write_notebook(f"open-{'warm' if warm else 'cold'}-{trial}.ipynb", cells)
    lab = open_page(browser, server, path, {"warm": warm})
    try:
        lab.focus_cell(len(cells) - 1)
        time.sleep(3)
        lab.page.keyboard.type("(")
        return first_ghost_ms(lab, args.timeout)
    finally:
        lab.page.context.close()
        server.shutdown_kernels()


def clear_last_cell(lab: LabPage, last: int) -> None:
    lab.focus_cell(last)
    lab.page.keyboard.press("Control+a")
    lab.page.keyboard.press("Delete")
    time.sleep(0.4)


def typing_page(browser, server, name: str, settings: dict) -> LabPage:
    path = server.write_notebook(f"typing-{name}.ipynb", [*SETUP, ""])
    lab = open_page(browser, server, path, settings)
    lab.wait_kernel_idle()
    for index in (1, 2):  # the kernel holds `sales`: the prompt has its variables
        lab.focus_cell(index)
        lab.run_cell()
        lab.wait_kernel_idle()
    return lab


def keystroke(lab: LabPage, line: str, args) -> float | None:
    """(b): type a line like a person; the last keydown to the first ghost text."""
    clear_last_cell(lab, len(SETUP))
    lab.page.keyboard.type(line, delay=args.key_interval_ms)
    return first_ghost_ms(lab, args.timeout)


def next_after_accept(lab: LabPage, line: str, args) -> float | None:
    """(c): the line's ghost text, Tab; the Tab keydown to the next line's ghost text."""
    if keystroke(lab, line, args) is None:
        return None
    lab.wait_ghost_text(args.timeout)
    lab.page.keyboard.press("Tab")
    return first_ghost_ms(lab, args.timeout)


def run(args) -> dict:
    from playwright.sync_api import sync_playwright

    server = start_lab(Path(tempfile.mkdtemp(prefix="codecomp-browser-bench-")),
                       resolve_model(args.model))
    result: dict = {"trials": args.trials}
    try:
        status = server.wait_ready(timeout=600)
        result.update(model=status.get("model"), device=status.get("device"))
        with sync_playwright() as playwright:
            browser = launch_browser(playwright)
            if "b" in args.scenarios or "c" in args.scenarios:
                result.update(typing_scenarios(browser, server, args))
            a_warm, a_cold = [], []
            for trial in range(args.trials if "a" in args.scenarios else 0):
                a_warm.append(cold_open(browser, server, trial, True, args))
                a_cold.append(cold_open(browser, server, trial, False, args))
            browser.close()
    finally:
        server.stop()
    result.update(a_warm=a_warm, a_cold=a_cold)
    return result


def typing_scenarios(browser, server, args) -> dict:
    """(b) and (c), on two pages: a fixed and an adaptive debounce."""
    fixed = typing_page(browser, server, "fixed", {"adaptiveDebounce": False,
                                                     "debounceMs": 250})
    adaptive = typing_page(browser, server, "adaptive", {})
    b_fixed, b_adaptive, c_next = [], [], []
    for trial in range(args.warmup + args.trials):
        line = LINES[trial % len(LINES)].format(i=trial)
        pair = (keystroke(fixed, line, args), keystroke(adaptive, line, args))
        nxt = next_after_accept(adaptive, LINES[trial % len(LINES)].format(i=f"n{trial}"),
                                args)
        if trial >= args.warmup:
            b_fixed.append(pair[0])
            b_adaptive.append(pair[1])
            c_next.append(nxt)
    replies = adaptive.page.evaluate("() => window.__ccReplies")
    fixed.page.context.close()
    adaptive.page.context.close()
    server.shutdown_kernels()
    return {"server_replies": replies, "b_adaptive": b_adaptive, "b_fixed": b_fixed,
            "c_next": c_next}


def report(result: dict) -> None:
    def ok(values):
        return [v for v in values if v is not None]

    print(f"model {result['model']} on {result['device']}, {result['trials']} trials per scenario")
    print("(a) open a notebook (~1500 tokens above), click the last cell, wait 3 s, type '('")
    print(summary("prefill ahead (warm on)", ok(result["a_warm"])))
    print(summary("warm off (before)", ok(result["a_cold"])))
    print(paired("warm on - off", result["a_warm"], result["a_cold"]))
    print("(b) warm keystroke -> first ghost text (line typed at 60 ms/key)")
    print(summary("adaptive debounce", ok(result.get("b_adaptive", []))))
    print(summary("fixed 250 ms debounce (before)", ok(result.get("b_fixed", []))))
    print(paired("adaptive - fixed", result.get("b_adaptive", []), result.get("b_fixed", [])))
    print("(c) Tab accepts a line -> the next line's ghost text")
    print(summary("next suggestion on accept", ok(result.get("c_next", []))))
    replies = result.get("server_replies") or []
    totals = [r["timings_ms"]["total"] for r in replies if r.get("timings_ms")]
    print(summary("server: total per completion", totals))
    misses = {k: sum(v is None for v in result.get(k, [])) for k in
              ("a_warm", "a_cold", "b_adaptive", "b_fixed", "c_next")}
    print(f"  trials without ghost text: {misses}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=os.environ.get("JUPYTER_CODECOMP_BENCH_MODEL",
                                                          "qwen2.5-coder-0.5b"))
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--key-interval-ms", type=int, default=60)
    parser.add_argument("--timeout", type=float, default=60)
    parser.add_argument("--scenarios", default="abc", help="which of a, b, c to run")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not chromium_available():
        print("Debian's Chromium is missing: apt-get install -y chromium", file=sys.stderr)
        return 2
    result = run(args)
    report(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
