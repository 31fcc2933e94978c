"""`engine_speed.py --compare`: built models side by side in one run (issue 18's table).

Each model runs in its own process (its own peak RSS), one after the other, on the same token
ids. A pairing (`*-spec`, `*-lookup`) runs with its drafter; a plain model alone.
"""

from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path

SPEC_TARGET = 1.5  # the 1.5B's decode ms/token with speculation, at most this x the 0.5B's
METRICS = ("decode_ms_per_token", "prefill_400_ms", "prefill_1500_ms", "cold_total_ms",
           "warm_first_token_ms", "warm_total_ms", "warm_line_first_token_ms",
           "warm_line_total_ms")


def compare(names: list[str], repeats: int, threads: int, prompts, child) -> None:
    from jupyter_codecomp.models.store import ModelStore

    store = ModelStore()
    models = {name: store.resolve(name) for name in names}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        ids = prompts(next(iter(models.values())).path)  # one tokenizer family (checked below)
        ids_file = Path(tmp) / "ids.json"
        ids_file.write_text(json.dumps(ids))
        print(f"prompts of {len(ids['p400'])}, {len(ids['p1500'])} and "
              f"{len(ids['p1500_plus'])} tokens; {threads} threads; {repeats} repeats", flush=True)
        for name, model in models.items():
            paired = bool(model.manifest.pair)
            print(f"running {name}{' (speculative)' if paired else ''} ...", flush=True)
            results[name] = child("onnx", str(model.path), str(ids_file), repeats, threads,
                                  speculative=paired)
    report(models, results)


def report(models: dict, results: dict) -> None:
    names = list(results)
    width = max(12, *(len(n) for n in names))
    print("\nmedian of runs".ljust(30) + "".join(n.rjust(width + 2) for n in names))
    for key in METRICS:
        cells = [statistics.median(results[n]["rows"][key]) for n in names]
        print(key.ljust(30) + "".join(f"{v:{width + 2}.1f}" for v in cells))
    print("peak_rss_mb".ljust(30) + "".join(
        f"{results[n]['peak_rss_mb']:{width + 2}.0f}" for n in names))
    accept = [results[n]["drafts"] for n in names]
    print("draft acceptance".ljust(30) + "".join(
        (f"{a['acceptance']:.2f} (k={a['k']})" if a else "-").rjust(width + 2) for a in accept))
    _agreement(models, results)
    _target(models, results)


def _agreement(models: dict, results: dict) -> None:
    """Greedy tokens of a pairing against its verifier alone (int4 rounding may flip a tie)."""
    for name, model in models.items():
        verifier = model.manifest.pair.get("verifier")
        if verifier not in results:
            continue
        same = {key: results[name]["ids"][key] == results[verifier]["ids"][key]
                for key in results[name]["ids"]}
        print(f"{name}: tokens identical to {verifier} alone: {same}")


def _target(models: dict, results: dict) -> None:
    def decode(name):
        return statistics.median(results[name]["rows"]["decode_ms_per_token"])

    small = next((n for n, m in models.items() if "0.5b" in n and not m.manifest.pair), None)
    for name, model in models.items():
        if not model.manifest.pair or small is None:
            continue
        ratio = decode(name) / decode(small)
        verdict = "ok" if ratio <= SPEC_TARGET else "MISSED"
        plain = model.manifest.pair["verifier"]
        alone = f", {decode(name) / decode(plain):.2f}x the verifier alone" if plain in results \
            else ""
        print(f"{name}: decode {ratio:.2f}x the {small}'s (target <= {SPEC_TARGET}: {verdict})"
              f"{alone}")
