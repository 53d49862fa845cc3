"""Evaluation reports: markdown with PNG plots (predicted vs oracle, error by band, coverage) + the same as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from distillery.filters.spec import FilterSpec


def write_report(out_dir: Path | str, spec: FilterSpec, evaluation: dict[str, Any], y: np.ndarray,
                 predicted: np.ndarray, lower: np.ndarray | None = None, upper: np.ndarray | None = None,
                 title: str = "", context: dict[str, Any] | None = None) -> Path:
    """Write ``report.md``, ``report.json`` and the PNGs into ``out_dir``; return the markdown path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _plot_predicted_vs_oracle(plt, out, spec.dimension_names, evaluation, y, predicted)
    _plot_error_by_band(plt, out, evaluation["error_by_band"])
    if "coverage" in evaluation:
        _plot_coverage(plt, out, spec.dimension_names, evaluation)
    doc = {"filter": spec.ref, "title": title, **(context or {}), "evaluation": evaluation}
    (out / "report.json").write_text(json.dumps(doc, indent=2, default=float), encoding="utf-8")
    path = out / "report.md"
    path.write_text("\n".join(_markdown(spec, evaluation, title, context)) + "\n", encoding="utf-8")
    return path


def _plot_predicted_vs_oracle(plt, out: Path, dims: list[str], evaluation: dict[str, Any], y: np.ndarray,
                              predicted: np.ndarray) -> None:
    n = len(dims)
    cols = min(4, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
    for j, d in enumerate(dims):
        ax = axes[j // cols][j % cols]
        ax.scatter(y[:, j], predicted[:, j], s=4, alpha=0.3)
        ax.plot([0, 10], [0, 10], color="grey", linewidth=1)
        ax.set_xlim(0, 10)
        ax.set_ylim(0, 10)
        ax.set_title(f"{d}\nMAE {evaluation['dimensions'][d]['mae']:.2f}", fontsize=8)
        ax.set_xlabel("oracle", fontsize=7)
        ax.set_ylabel("student", fontsize=7)
    for k in range(n, rows * cols):
        axes[k // cols][k % cols].axis("off")
    fig.tight_layout()
    fig.savefig(out / "predicted_vs_oracle.png", dpi=90)
    plt.close(fig)


def _plot_error_by_band(plt, out: Path, bands: dict[str, Any]) -> None:
    fig, ax = plt.subplots(figsize=(5, 3))
    names = list(bands)
    ax.bar(names, [bands[b]["overall_mae"] or 0 for b in names])
    for i, b in enumerate(names):
        ax.text(i, (bands[b]["overall_mae"] or 0), f"n={bands[b]['n']}", ha="center", va="bottom", fontsize=7)
    ax.set_xlabel("oracle overall-score band")
    ax.set_ylabel("overall MAE")
    fig.tight_layout()
    fig.savefig(out / "error_by_band.png", dpi=90)
    plt.close(fig)


def _plot_coverage(plt, out: Path, dims: list[str], evaluation: dict[str, Any]) -> None:
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar(dims, [evaluation["dimensions"][d]["coverage"] for d in dims])
    ax.axhline(0.9, color="red", linewidth=1, label="target 90%")
    ax.set_ylim(0, 1)
    ax.set_ylabel("interval coverage")
    ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "coverage.png", dpi=90)
    plt.close(fig)


def _markdown(spec: FilterSpec, e: dict[str, Any], title: str, context: dict[str, Any] | None) -> list[str]:
    """The lines of ``report.md``: headline figures, the per-dimension and per-band tables, the plots."""
    has_cov = "coverage" in e
    lines = [f"# {title or 'Evaluation'}: {spec.ref}", ""]
    for k, v in (context or {}).items():
        lines.append(f"- {k}: `{v}`")
    lines += [
        f"- articles: {e['n']}",
        (f"- MAE (calibrated / raw): **{e['mae']:.3f}** / {e['mae_raw']:.3f}; mean predictor "
        f"{e['mean_predictor_mae']:.3f}"),
        f"- overall-score MAE {e['overall_mae']:.3f}; tier agreement {e['tier_agreement']:.1%}",
        f"- recall@{e['recall_at_k']['k']} of the top oracle articles: {e['recall_at_k']['recall']:.1%}",
        (f"- false negatives at medium or above (overall >= {e['medium_or_above']['threshold']:g}): "
        f"{e['medium_or_above']['false_negatives']} of {e['medium_or_above']['n']} "
        f"({e['medium_or_above']['false_negative_rate']:.1%})"),
    ]
    if has_cov:
        lines.append(f"- interval coverage {e['coverage']:.1%} (target 90%), mean width {e['interval_width']:.2f}")
    if "uncertain" in e:
        u = e["uncertain"]
        lines.append(f"- flagged uncertain: {u['share']:.1%} of the articles ({u['n_flagged']:.0f}); their MAE "
                     f"{u['mae_flagged']:.3f} vs {u['mae_unflagged']:.3f} unflagged ({u['mae_ratio']:.2f}x)")
    lines += ["", "| dimension | MAE | MAE raw | RMSE | Spearman | mean predictor | coverage |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for d, v in e["dimensions"].items():
        cov = f"{v['coverage']:.1%}" if "coverage" in v else "-"
        lines.append(f"| {d} | {v['mae']:.3f} | {v['mae_raw']:.3f} | {v['rmse']:.3f} | {v['spearman']:.3f} | "
                     f"{v['mean_predictor_mae']:.3f} | {cov} |")
    lines += ["", "| oracle band | n | overall MAE |", "|---|---:|---:|"]
    for b, v in e["error_by_band"].items():
        mae = "-" if v["overall_mae"] is None else f"{v['overall_mae']:.3f}"
        lines.append(f"| {b} | {v['n']} | {mae} |")
    lines += ["", "![predicted vs oracle](predicted_vs_oracle.png)", "", "![error by band](error_by_band.png)"]
    if has_cov:
        lines += ["", "![coverage](coverage.png)"]
    return lines
