"""The evaluation's files: results.json, results.png (metrics per variant and kind) and
confidence.png (coverage and precision against the confidence threshold)."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import CodecompError


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise CodecompError("the chart needs matplotlib",
                            fix="pip install 'jupyter-codecomp[eval]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_json(report: dict, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "results.json"
    json_path.write_text(json.dumps(report, indent=1))
    return json_path


def write_outputs(report: dict, out: Path) -> tuple[Path, Path]:
    json_path = write_json(report, out)
    png_path = out / "results.png"
    plt = _pyplot()
    rows = [r for r in report["summary"] if r["kind"] in ("line", "mid", "block")]
    kinds = sorted({r["kind"] for r in rows})
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("exact_match", "edit_similarity")):
        width = 0.8 / max(1, len(variants))
        for i, variant in enumerate(variants):
            values = [next((r[metric] for r in rows
                            if r["variant"] == variant and r["kind"] == k), 0) for k in kinds]
            ax.bar([k + i * width for k in range(len(kinds))], values, width, label=variant)
        ax.set_xticks([k + width * (len(variants) - 1) / 2 for k in range(len(kinds))], kinds)
        ax.set_title(metric.replace("_", " ") + " (%)")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{report['model']}: {report['tasks']} tasks")
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    if report.get("confidence"):
        confidence_chart(report, out / "confidence.png")
    return json_path, png_path


def confidence_chart(report: dict, path: Path) -> Path:
    """Coverage and precision (line and mid tasks) against the threshold, one line per statistic
    of the product variant, the chosen default marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    chosen = report.get("confidence_statistic")
    for name, stat in report["confidence"].items():
        curve = stat["curve"]
        xs = [p["threshold"] for p in curve]
        style = {"linewidth": 2.2} if name == chosen else {"linewidth": 0.9, "alpha": 0.6}
        line, = ax.plot(xs, [p["precision"] for p in curve], label=f"precision ({name})", **style)
        ax.plot(xs, [p["coverage"] for p in curve], linestyle="--", color=line.get_color(),
                label=f"coverage ({name})", **style)
    if report.get("min_confidence") is not None:
        ax.axvline(report["min_confidence"], color="black", linewidth=0.8)
        ax.text(report["min_confidence"], 2, f" default {report['min_confidence']}", fontsize=8)
    ax.axhline(40, color="grey", linewidth=0.5)
    ax.axhline(30, color="grey", linewidth=0.5, linestyle="--")
    ax.set_xlabel("confidence threshold (minConfidence)")
    ax.set_ylabel("%")
    ax.set_ylim(0, 100)
    ax.set_title(f"{report['model']}, {report.get('confidence_variant')}: line and mid tasks")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def print_report(report: dict, out, log) -> None:
    """The tables of a run: metrics per variant and kind, the paired comparisons with their 95 %
    intervals, coverage and precision at a few thresholds, the run's duration."""
    from rich.table import Table

    table = Table(title=f"{report['model']}: {report['tasks']} tasks, seed {report['seed']}")
    widest = max(len(row["variant"]) for row in report["summary"])
    table.add_column("variant", no_wrap=True, min_width=widest)
    table.add_column("kind")
    columns = ("n", "EM %", "edit sim %", "first token %", "empty %", "scaffolding", "p50 ms",
               "reused %")
    for column in columns:
        table.add_column(column, justify="right")
    for row in report["summary"]:
        table.add_row(row["variant"], row["kind"], str(row["n"]), f"{row['exact_match']:.1f}",
                      f"{row['edit_similarity']:.1f}", f"{row['first_token']:.1f}",
                      f"{row['empty']:.1f}", str(row["scaffolding"]),
                      f"{row['latency_ms_p50']:.0f}", f"{row['reused_pct']:.0f}")
    out.print(table)
    if report.get("comparisons"):
        paired = Table(title="paired differences, bootstrap 95 % CI (points)")
        for column in ("variant - baseline", "split", "kind", "n", "EM diff [CI]",
                       "edit sim diff [CI]", "empty diff [CI]", "EM wins/losses"):
            paired.add_column(column, no_wrap=column.startswith("variant"))
        for row in report["comparisons"]:
            if row["split"] != "all" and row["kind"] not in ("all", "line+mid"):
                continue  # per corpus: the totals only (results.json has every row)
            cells = [f"{row[m]['diff']:+.1f} [{row[m]['ci'][0]:+.1f}, {row[m]['ci'][1]:+.1f}]"
                     for m in ("exact_match", "edit_similarity", "empty")]
            paired.add_row(f"{row['variant']} - {row['baseline']}", row["split"], row["kind"],
                           str(row["n"]), *cells, f"{row['wins']}/{row['losses']}")
        out.print(paired)
    confidence = report.get("confidence") or {}
    chosen = confidence.get(report.get("confidence_statistic"))
    if chosen:
        points = [p for p in chosen["curve"] if round(p["threshold"] * 20) % 2 == 0]
        log.print(f"confidence ({report['confidence_statistic']}, {report['confidence_variant']}, "
                  "line+mid): " + "; ".join(f"{p['threshold']:.1f}: coverage {p['coverage']}% "
                                            f"precision {p['precision']}%" for p in points))
        log.print("average precision by statistic: " + ", ".join(
            f"{name} {stat['average_precision']}" for name, stat in confidence.items()))
    for variant, reasons in report.get("emptied_by", {}).items():
        if reasons:
            ranked = sorted(reasons.items(), key=lambda kv: -kv[1])
            log.print(f"{variant}: first alternative cut to nothing by "
                      + ", ".join(f"{rule} {count}" for rule, count in ranked))
    for notebook, errors in report.get("cell_errors", {}).items():
        log.print(f"[dim]{notebook}: {len(errors)} cell error(s), e.g. "
                  f"{next(iter(errors.values()))}[/]")
    log.print(f"the run took {report['seconds']:.0f} s")
