"""`pump-train gan compare`: the thesis's Table 3.2 / 4.3 — label metrics of real masks vs each SemanticGAN run.

Each run (e.g. ``semgan``, ``ours``, ``ours+ld``) draws ``count`` samples from one latent stream
(``seed``); their masks are thresholded as a pool would hold them. Rows: % of labels with a
defect, % defect pixels (all and defective only), EMD of per-image defect fractions vs real (all
and defective only) and, with a feature extractor, FID/KID of the images against the real
defective patches. Writes ``compare.json``, ``compare.md``, ``label_histogram.png`` (every run
over the real histogram, thesis Figure 3.8) and ``overlays-<name>.png`` per run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.gan.checkpoint import LoadedGenerator
from training.gan.features import FeatureExtractor
from training.gan.label_eval import sample_pairs, write_overlay_grid
from training.gan.sample import SampleRequest
from training.metrics.generative import fid, kid
from training.metrics.labels import compare_labels, defect_fractions, label_table_markdown, write_fraction_histogram
from training.outputs import provenance, write_bytes_atomic, write_json_atomic


@dataclass(frozen=True)
class CompareRequest:
    count: int = 1000
    seed: int = 0
    label_threshold: float = 0.5
    real_split: str = "train"


def compare_runs(
    *,
    runs: dict[str, LoadedGenerator],
    real_images: np.ndarray,
    real_masks: np.ndarray,
    request: CompareRequest,
    out_dir: Path,
    extractor: FeatureExtractor | None = None,
) -> dict:
    """Label metrics (and FID/KID with ``extractor``) of every run vs the real masks; writes the table and pictures."""
    side = real_masks.shape[-1]
    sample_request = SampleRequest(
        count=request.count, seed=request.seed, patch_px=side, label_threshold=request.label_threshold
    )
    fractions, images_of = {}, {}
    for name, loaded in runs.items():
        images, masks = sample_pairs(loaded, sample_request)
        fractions[name], images_of[name] = defect_fractions(masks), images
        write_overlay_grid(out_dir / f"overlays-{name}.png", images[:32], masks[:32], columns=4)
    shown = np.random.default_rng(request.seed).permutation(len(real_masks))[:32]
    write_overlay_grid(out_dir / "overlays-real.png", real_images[shown], real_masks[shown], columns=4)
    rows = compare_labels(defect_fractions(real_masks), fractions)
    if extractor is not None:
        real_features = extractor(real_images)
        scale = float(np.sqrt(np.mean(real_features**2))) or 1.0  # the unit `gan eval` uses
        for row in rows[1:]:
            fake_features = extractor(images_of[row["set"]]) / scale
            row["fid"] = round(fid(real_features / scale, fake_features), 4)
            row["kid"] = round(kid(real_features / scale, fake_features, subsets=100, subset_size=1000).mean, 6)
    histogram = write_fraction_histogram(out_dir / "label_histogram.png", defect_fractions(real_masks), fractions)
    markdown = label_table_markdown(rows)
    if extractor is not None:
        markdown += "\n" + "\n".join(f"- {r['set']}: FID {r['fid']}, KID {r['kid']}" for r in rows[1:]) + "\n"
    result = {
        "rows": rows,
        "runs": {
            name: {"run": str(g.run_dir), "checkpoint": str(g.checkpoint), "kimg": g.kimg} for name, g in runs.items()
        },
        "real": {"split": request.real_split, "masks": int(len(real_masks))},
        "extractor": extractor.name if extractor is not None else None,
        "pictures": {
            "histogram": str(histogram),
            **{name: str(out_dir / f"overlays-{name}.png") for name in ["real", *runs]},
        },
    }
    options = {**request.__dict__, "runs": list(runs)}
    write_json_atomic(
        out_dir / "compare.json", {**result, "provenance": provenance("gan compare", options, request.seed)}
    )
    write_bytes_atomic(out_dir / "compare.md", markdown.encode())
    return {**result, "markdown": markdown}
