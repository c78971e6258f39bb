"""`gan eval`: FID/KID of a GAN run against real patches, and the pictures a person checks.

Real patches default to the *training* split's real defective patches (what the GAN learnt
from); ``--real-split test`` measures against defects of groups the GAN never saw. Both sets
are compared at the pool's patch size (samples up-sampled as ``gan sample`` does). Writes
``eval.json`` (numbers, extractor, snapshot, sizes), ``real_vs_fake.png`` (top half real,
bottom half generated), ``nearest_real.png`` (each sample beside its nearest real patch in
feature space: a memorisation check — a sample that equals its neighbour was copied) and
``nearest_real_pixels.png`` (the same in pixel space at 32 px, where exact copies stand out).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from training.data.patchset import load_patchset
from training.data.splits import TEST, TRAIN
from training.gan.checkpoint import LoadedGenerator
from training.gan.features import FeatureExtractor, pixel_features
from training.gan.label_eval import label_evaluation, real_defect_rows, sample_pairs
from training.gan.loop import tile_images
from training.gan.sample import SampleRequest, generate, resize_patch
from training.metrics.generative import fid, kid
from training.outputs import provenance, write_json_atomic

NEIGHBOUR_ROWS = 8  # samples shown in nearest_real.png (pairs per row: 4)


@dataclass(frozen=True)
class EvalRequest:
    """What to compare: how many samples, which real split, the latent seed and ψ."""

    count: int = 1000
    real_split: str = TRAIN
    seed: int = 0
    psi: float = 1.0
    label_threshold: float = 0.5  # semantic: P(defect) at or above which a generated mask pixel is a defect

    def __post_init__(self) -> None:
        if self.real_split not in (TRAIN, TEST):
            raise ValueError(f"--real-split must be {TRAIN} or {TEST}, got {self.real_split!r}")


def real_defects(patches_dir: Path, split: str) -> np.ndarray:
    """uint8 [N, P, P] real defective patches of ``split`` (gray)."""
    patchset = load_patchset(patches_dir)
    rows = real_defect_rows(patchset, split)
    if len(rows) < 2:
        raise ValueError(f"{patches_dir}: {len(rows)} real defective {split} patches; FID/KID need at least 2")
    images = [patchset.read_image(r) for r in rows]
    return np.stack([im if im.ndim == 2 else cv2.cvtColor(im, cv2.COLOR_BGR2GRAY) for im in images])


def evaluate_run(
    *,
    loaded: LoadedGenerator,
    real: np.ndarray,
    extractor: FeatureExtractor,
    request: EvalRequest,
    out_dir: Path,
    scale_reference: np.ndarray | None = None,
    real_labels: np.ndarray | None = None,
    samples: tuple[np.ndarray, np.ndarray | None] | None = None,
) -> dict:
    """FID/KID of ``request.count`` samples vs ``real``; writes eval.json and the two grids into ``out_dir``.

    ``real_labels`` (masks; a generator that draws labels): also the label metrics of the same samples'
    masks against these real masks, the fraction histogram and the overlay grid (``label_eval``).

    ``samples``: (images, masks) drawn by the caller instead of from latents (the masked family).
    ``scale_reference``: the patches whose features set the unit (default ``real``); the CLI passes
    the training split's defects, so values against the train and the test split share one unit.
    """
    side = real.shape[-1]
    sample_request = SampleRequest(
        count=request.count, seed=request.seed, psi=request.psi, patch_px=side, label_threshold=request.label_threshold
    )
    labelled = real_labels is not None
    if samples is not None:  # drawn by the caller (a generator that needs conditions: the masked family)
        fakes, fake_masks = samples
        fakes = np.stack([resize_patch(im, side) for im in fakes])
    elif labelled:
        fakes, fake_masks = sample_pairs(loaded, sample_request)
    else:
        fakes = np.stack([resize_patch(im, side) for batch in generate(loaded, sample_request) for im in batch])
    real_features, fake_features = extractor(real), extractor(fakes)
    # One scalar so the real features have unit RMS per dimension: a classifier's max-pooled features
    # run to the tens, where the cubic KID kernel explodes. Both sets share the scalar (distances keep
    # their ratios); FID is in these units, so compare FIDs of one extractor only.
    unit = real_features if scale_reference is None else extractor(scale_reference)
    scale = float(np.sqrt(np.mean(unit**2))) or 1.0
    real_features, fake_features = real_features / scale, fake_features / scale
    kid_result = kid(real_features, fake_features, subsets=100, subset_size=1000, seed=request.seed)
    nearest, feature_distances = _memorisation(fake_features, real_features)
    pixels = pixel_features()
    nearest_pixels, pixel_distances = _memorisation(pixels(fakes), pixels(real))
    report = {
        "fid": round(fid(real_features, fake_features), 4),
        "kid": round(kid_result.mean, 6),
        "kid_std": round(kid_result.std, 6),
        "kid_subset_size": kid_result.subset_size,
        "real": {"split": request.real_split, "patches": len(real)},
        "fake": {"samples": len(fakes), "psi": request.psi, "seed": request.seed},
        "extractor": extractor.name,
        "feature_scale": round(scale, 6),
        "snapshot": {"checkpoint": str(loaded.checkpoint), "kimg": loaded.kimg, "family": loaded.family},
        "nearest_real_distance": feature_distances,
        "nearest_real_pixel_distance": {**pixel_distances, "space": pixels.name},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(request.seed)
    shown = min(32, len(real), len(fakes))
    _write(
        out_dir / "real_vs_fake.png",
        np.concatenate([real[rng.choice(len(real), shown, replace=False)], fakes[:shown]]),
        columns=8,
    )
    shown_pairs = range(min(NEIGHBOUR_ROWS * 4, len(fakes)))
    for name, index in (("nearest_real", nearest), ("nearest_real_pixels", nearest_pixels)):
        pairs = [im for i in shown_pairs for im in (fakes[i], real[index[i]])]
        _write(out_dir / f"{name}.png", np.stack(pairs), columns=8)
    report["pictures"] = {
        name: str(out_dir / f"{name}.png") for name in ("real_vs_fake", "nearest_real", "nearest_real_pixels")
    }
    if labelled:
        labels = label_evaluation(images=fakes, masks=fake_masks, real=real_labels, out_dir=out_dir)
        report["labels"] = {"threshold": request.label_threshold, "rows": labels["table"]}
        report["pictures"].update(labels["pictures"])
    write_json_atomic(
        out_dir / "eval.json",
        {**report, "provenance": provenance("gan eval", report["fake"], request.seed, {"run": str(loaded.run_dir)})},
    )
    return report


def _memorisation(fake: np.ndarray, real: np.ndarray) -> tuple[np.ndarray, dict]:
    """Each sample's nearest real patch, and its distances beside the real patches' own spacing.

    A sample much closer to a real patch than real patches are to each other (``min`` far below
    ``real_to_real_median``) was likely memorised; the grids show the pairs.
    """
    nearest, distance = _nearest(fake, real)
    stats = {
        "median": round(float(np.median(distance)), 4),
        "min": round(float(np.min(distance)), 4),
        "real_to_real_median": round(float(np.median(_nearest(real, real, skip_self=True)[1])), 4),
    }
    return nearest, stats


def _nearest(queries: np.ndarray, refs: np.ndarray, *, skip_self: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Index and Euclidean distance of each query's nearest reference (in chunks: N×M can be large)."""
    indices, distances = [], []
    ref_sq = (refs**2).sum(axis=1)
    for start in range(0, len(queries), 256):
        q = queries[start : start + 256]
        d2 = (q**2).sum(axis=1)[:, None] + ref_sq[None, :] - 2 * q @ refs.T
        if skip_self:
            rows = np.arange(len(q))
            d2[rows, start + rows] = np.inf
        best = d2.argmin(axis=1)
        indices.append(best)
        distances.append(np.sqrt(np.maximum(d2[np.arange(len(q)), best], 0)))
    return np.concatenate(indices), np.concatenate(distances)


def _write(path: Path, images: np.ndarray, columns: int) -> None:
    if not cv2.imwrite(str(path), tile_images(images, columns)):
        raise OSError(f"could not write {path}")
