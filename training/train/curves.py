"""Training curves as a PNG: loss on the left, validation metrics on the right."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from training.train.runlog import read_runlog  # noqa: E402


def plot_curves(metrics_jsonl: Path, out_png: Path, title: str = "") -> Path | None:
    """Plot every ``train/*`` and ``val/*`` series of a metrics log; None if the log is empty."""
    rows = read_runlog(metrics_jsonl)
    if not rows:
        return None
    steps = [row["iteration"] for row in rows]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for key in sorted({k for row in rows for k in row}):
        values = [row.get(key) for row in rows]
        if key.startswith("train/"):
            left.plot(steps, values, label=key)
        elif key.startswith("val/"):
            right.plot(steps, values, marker=".", label=key)
    left.set_xlabel("iteration")
    right.set_xlabel("iteration")
    right.set_ylim(0, 1)
    left.legend()
    right.legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(out_png, dpi=100)
    plt.close(figure)
    return Path(out_png)
