"""Label-distribution metrics of generated masks (thesis Tables 3.2 / 4.3, Figure 3.8): pure functions.

A mask's defect fraction f = defect pixels / labelled pixels. Fractions are zero-inflated (≈95 %
of random patches have none, defective ones ≈2.5 % on pumps), so one number hides the story:
report P(f > 0), the mean f (over all masks and over defective ones), and the Earth-Mover
(Wasserstein-1) distance of the per-image fractions to the real ones over all masks and over
defective masks only (``scipy.stats.wasserstein_distance``; sample sizes may differ).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.stats import wasserstein_distance

from shared.masks import MASK_DEFECT, MASK_IGNORE


def defect_fractions(masks: np.ndarray) -> np.ndarray:
    """float64 [N] defect fractions of masks [N, H, W] (product values, or bool: True = defect, all labelled)."""
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks must be [N, H, W], got shape {masks.shape}")
    if masks.dtype == bool:
        return masks.reshape(len(masks), -1).mean(axis=1, dtype=np.float64)
    flat = masks.reshape(len(masks), -1)
    defect = (flat == MASK_DEFECT).sum(axis=1)
    labelled = (flat != MASK_IGNORE).sum(axis=1)
    return np.where(labelled > 0, defect / np.maximum(labelled, 1), 0.0).astype(np.float64)


@dataclass(frozen=True)
class LabelMetrics:
    """Summary of one set's fractions: how often a defect appears apart from how big it is (fractions 0..1)."""

    count: int
    share_with_defects: float  # 0..1
    mean_defect_fraction: float  # over all masks
    mean_defect_fraction_defective: float  # over masks with a defect (nan if none)

    def to_dict(self) -> dict:
        """JSON-ready fields plus ``pct_*`` percent versions (6 decimals); NaN becomes None."""

        def pct(x: float) -> float | None:
            return None if math.isnan(x) else round(100 * x, 6)

        values = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}
        return {
            **values,
            "pct_with_defects": pct(self.share_with_defects),
            "pct_defect_pixels": pct(self.mean_defect_fraction),
            "pct_defect_pixels_defective": pct(self.mean_defect_fraction_defective),
        }


def label_metrics(fractions: np.ndarray) -> LabelMetrics:
    """Metrics of per-image defect fractions (0..1); an empty set gives NaN shares, not a crash."""
    f = np.asarray(fractions, dtype=np.float64)
    defective = f[f > 0]
    return LabelMetrics(
        count=int(len(f)),
        share_with_defects=float((f > 0).mean()) if len(f) else math.nan,
        mean_defect_fraction=float(f.mean()) if len(f) else math.nan,
        mean_defect_fraction_defective=float(defective.mean()) if len(defective) else math.nan,
    )


def label_distance(real_fractions: np.ndarray, fake_fractions: np.ndarray) -> dict:
    """EMD of per-image fractions, over all masks and over defective ones (None where a side has none)."""
    real, fake = np.asarray(real_fractions, np.float64), np.asarray(fake_fractions, np.float64)
    real_d, fake_d = real[real > 0], fake[fake > 0]
    return {
        "emd_all": float(wasserstein_distance(real, fake)),
        "emd_defective": float(wasserstein_distance(real_d, fake_d)) if len(real_d) and len(fake_d) else None,
        "real": label_metrics(real).to_dict(),
        "fake": label_metrics(fake).to_dict(),
    }


def compare_labels(real_fractions: np.ndarray, variants: dict[str, np.ndarray]) -> list[dict]:
    """Rows: real first (EMD 0), then each variant with its metrics and EMD vs real."""
    real = np.asarray(real_fractions, np.float64)
    self_defective = 0.0 if np.any(real > 0) else None  # like label_distance: None where a side has no defects
    rows = [{"set": "real", **label_metrics(real).to_dict(), "emd_all": 0.0, "emd_defective": self_defective}]
    for name, fractions in variants.items():
        distance = label_distance(real, fractions)
        rows.append(
            {
                "set": name,
                **distance["fake"],
                "emd_all": distance["emd_all"],
                "emd_defective": distance["emd_defective"],
            }
        )
    return rows


def label_table_markdown(rows: list[dict]) -> str:
    """The rows of :func:`compare_labels` as a Markdown table (percent; EMD in fraction units)."""

    def fmt(value: float | None, digits: int) -> str:
        return "–" if value is None else f"{value:.{digits}f}"

    lines = [
        "| set | images | % with defects | % defect pixels | % defect pixels (defective only) "
        "| EMD all | EMD defective |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['set']} | {r['count']} | {fmt(r['pct_with_defects'], 2)} | {fmt(r['pct_defect_pixels'], 2)} | "
            f"{fmt(r['pct_defect_pixels_defective'], 2)} | {fmt(r['emd_all'], 4)} | {fmt(r['emd_defective'], 4)} |"
        )
    return "\n".join(lines) + "\n"


def write_fraction_histogram(
    path: Path, real_fractions: np.ndarray, variants: dict[str, np.ndarray], bins: int = 40
) -> Path:
    """Step histograms (density) of per-image defect % for real and each variant: all masks | defective only."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = {
        "real": np.asarray(real_fractions, np.float64),
        **{k: np.asarray(v, np.float64) for k, v in variants.items()},
    }
    top = max(100 * max((float(v.max()) for v in sets.values() if len(v)), default=1.0), 1e-3)
    edges = np.linspace(0, top, bins + 1)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, title, keep in (
        (axes[0], "all patches", lambda v: v),
        (axes[1], "defective patches only", lambda v: v[v > 0]),
    ):
        for name, values in sets.items():
            shown = 100 * keep(values)
            if len(shown):
                ax.hist(
                    shown,
                    bins=edges,
                    density=True,
                    histtype="step",
                    linewidth=1.6 if name == "real" else 1.2,
                    label=f"{name} (n={len(shown)})",
                )
        ax.set_title(title)
        ax.set_xlabel("defect pixels per patch (%)")
        ax.set_ylabel("density")
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.png")
    try:
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return path
