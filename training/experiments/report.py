"""Experiment tables (Markdown shaped like the thesis's), verdicts, and sweep plots.

Verdict rule, stated in every table: a method's gain over the baseline counts only if
(1) the baseline learned at all — mean validation AUROC >= 0.8 (segmentation: mean
validation defect IoU >= 0.25) — otherwise the table says "baseline not learned" and
claims nothing; (2) the mean paired difference of the main metric (F1 at 0.5; defect
IoU) exceeds both the minimum gain (0.05; 0.03) and 2 standard errors of the paired
differences; (3) the secondary metric (AUROC; mean IoU) does not fall on average.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.experiments.runner import CLASSIFICATION
from training.experiments.sources import METHODS, Method


@dataclass(frozen=True)
class TaskView:
    columns: tuple[tuple[str, str], ...]  # (csv column, header)
    main: str
    secondary: str
    gate: str
    gate_min: float
    min_gain: float


VIEWS = {
    CLASSIFICATION: TaskView(
        columns=(
            ("test_accuracy", "accuracy"),
            ("test_precision", "precision"),
            ("test_recall", "recall"),
            ("test_f1", "F1"),
            ("test_tuned_f1", "F1 (val-tuned thr.)"),
            ("test_auroc", "AUROC"),
            ("test_pr_auc", "PR-AUC"),
            ("val_auroc", "val AUROC"),
            ("train_auroc", "train AUROC"),
        ),
        main="test_f1",
        secondary="test_auroc",
        gate="val_auroc",
        gate_min=0.8,
        min_gain=0.05,
    ),
    "segmentation": TaskView(
        columns=(
            ("test_defect_iou", "defect IoU"),
            ("test_healthy_iou", "healthy IoU"),
            ("test_mean_iou", "mean IoU"),
            ("test_defect_iou_patch_mean", "defect IoU (per patch)"),
            ("test_patch_precision_k1", "precision"),
            ("test_patch_recall_k1", "recall"),
            ("test_patch_f1_k1", "F1"),
            ("val_defect_iou", "val defect IoU"),
        ),
        main="test_defect_iou",
        secondary="test_mean_iou",
        gate="val_defect_iou",
        gate_min=0.25,
        min_gain=0.03,
    ),
}


def _float(value: str | float | None) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def _mean_std(values: list[float]) -> str:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}"


def verdict(rows: list[dict], arm: tuple[str, int], view: TaskView, reference: str = "baseline") -> str:
    """The stated rule applied to one arm against ``reference`` runs of the same seeds.

    The learning gate is always the baseline's. A reference other than the baseline (the GAN
    rows against ``pasted``) is paired at the same synthetic size, so both arms add as many patches.
    """
    baseline = {r["seed"]: r for r in rows if r["method"] == "baseline"}
    if not baseline:
        return "no baseline run"
    gate_values = [_float(r[view.gate]) for r in baseline.values()]
    if np.nanmean(gate_values) < view.gate_min:
        return f"baseline not learned ({view.gate} {np.nanmean(gate_values):.3f} < {view.gate_min}): no claim"
    if reference != "baseline":
        baseline = {r["seed"]: r for r in rows if r["method"] == reference and int(r["size"]) == arm[1]}
        if not baseline:
            return f"no {reference} run at {arm[1]}"
    pairs = [(r, baseline[r["seed"]]) for r in rows if (r["method"], int(r["size"])) == arm and r["seed"] in baseline]
    if len(pairs) < 2:
        return "needs >= 2 paired seeds"
    deltas = np.array([_float(a[view.main]) - _float(b[view.main]) for a, b in pairs])
    secondary = np.array([_float(a[view.secondary]) - _float(b[view.secondary]) for a, b in pairs])
    mean, se = float(np.mean(deltas)), float(np.std(deltas, ddof=1) / math.sqrt(len(deltas)))
    text = (
        f"Δ{view.main.removeprefix('test_')} {mean:+.4f} (SE {se:.4f}), Δ{view.secondary.removeprefix('test_')} "
        f"{float(np.mean(secondary)):+.4f}"
    )
    if mean > max(view.min_gain, 2 * se) and float(np.mean(secondary)) >= 0:
        return "gain: " + text
    return "no claim: " + text


def _methods_of(rows: list[dict]) -> list[Method]:
    return [METHODS[key] for key in sorted({r["method"] for r in rows}) if key in METHODS]


def markdown_table(rows: list[dict], task: str, title: str = "") -> str:
    """Mean ± std per arm, verdicts, per-class recall, and every run."""
    view = VIEWS[task]
    arms: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for row in rows:
        arms[(row["method"], int(row["size"]))].append(row)
    lines = [
        f"## {title}" if title else "",
        "",
        f"Verdict rule: {__doc__.split('Verdict rule, stated in every table: ')[1]}".replace("\n", " ").strip(),
        "",
    ]
    second = sorted({m.compare_with for m in _methods_of(rows) if m.compare_with})
    header = ["method", "synthetic", "runs", *[h for _, h in view.columns], "verdict vs baseline"]
    header += [f"verdict vs {reference}" for reference in second]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for arm, arm_rows in sorted(arms.items(), key=lambda item: (item[0][0] != "baseline", item[0])):
        cells = [arm[0], str(arm[1]), str(len(arm_rows))]
        cells += [_mean_std([_float(r.get(column)) for r in arm_rows]) for column, _ in view.columns]
        cells.append("reference" if arm[0] == "baseline" else verdict(rows, arm, view))
        for reference in second:
            method = METHODS.get(arm[0])
            compared = method is not None and method.compare_with == reference
            cells.append(verdict(rows, arm, view, reference=reference) if compared else "")
        lines.append("| " + " | ".join(cells) + " |")
    if task == CLASSIFICATION and rows:
        pi = np.nanmean(
            [
                _float(r.get("test_positives"))
                / max(1.0, _float(r.get("test_positives")) + _float(r.get("test_negatives")))
                for r in rows
            ]
        )
        lines += [
            "",
            f"Always-defective reference F1 = 2π/(1+π) = {2 * pi / (1 + pi):.4f} (test defect share π = "
            f"{pi:.4f}). Thesis baseline F1: 0.1668.",
        ]
    for prefix, what in (("iou_", "defect IoU"), ("recall_", "recall")):
        columns = sorted({k for r in rows for k in r if k.startswith(prefix) and r[k] != ""})
        if not columns:
            continue
        pixel = " (pixels)" if task != CLASSIFICATION else ""
        lines += [
            "",
            f"Per-class test {what}{pixel} (mean over runs):",
            "",
            "| method | synthetic | " + " | ".join(c.removeprefix(prefix) for c in columns) + " |",
            "|" + "---|" * (len(columns) + 2),
        ]
        for arm, arm_rows in sorted(arms.items()):
            values = [f"{np.nanmean([_float(r.get(c)) for r in arm_rows]):.3f}" for c in columns]
            lines.append(f"| {arm[0]} | {arm[1]} | " + " | ".join(values) + " |")
    lines += [
        "",
        "Every run:",
        "",
        "| run | " + " | ".join(h for _, h in view.columns) + " | seconds |",
        "|" + "---|" * (len(view.columns) + 2),
    ]
    for row in rows:
        values = [f"{_float(row.get(c)):.4f}" for c, _ in view.columns]
        lines.append(f"| {row['key']} | " + " | ".join(values) + f" | {row.get('train_seconds', '')} |")
    return "\n".join(lines) + "\n"


def plot_sweep(rows: list[dict], task: str, out_png: Path) -> Path | None:
    """Main metrics against synthetic-set size, one line per method (thesis Tables A.1/A.2)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    view = VIEWS[task]
    metrics = (
        ("test_f1", "test_recall", "test_precision", "test_auroc")
        if task == CLASSIFICATION
        else ("test_defect_iou", "test_mean_iou", "test_patch_recall_k1")
    )
    methods = sorted({r["method"] for r in rows})
    figure, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.4))
    baseline = [r for r in rows if r["method"] == "baseline"]
    for axis, metric in zip(axes, metrics, strict=True):
        for method in methods:
            if method == "baseline":
                continue
            sizes = sorted({int(r["size"]) for r in rows if r["method"] == method})
            means = [
                np.nanmean([_float(r[metric]) for r in rows if r["method"] == method and int(r["size"]) == s])
                for s in sizes
            ]
            if baseline:
                sizes, means = [0, *sizes], [np.nanmean([_float(r[metric]) for r in baseline]), *means]
            axis.plot(sizes, means, marker="o", label=method)
        axis.set_title(metric.removeprefix("test_"))
        axis.set_xlabel("synthetic patches added")
        axis.set_ylim(0, 1)
    axes[0].legend()
    figure.suptitle(f"{task} sweep ({view.main.removeprefix('test_')} is the main metric)")
    figure.tight_layout()
    figure.savefig(out_png, dpi=100)
    plt.close(figure)
    return out_png
