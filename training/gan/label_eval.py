"""The label half of `gan eval` / `gan compare` for a generator that draws masks (SemanticGAN).

Generated masks are what a pool would hold (``training.gan.sample.label_mask``: P(defect) at the
patch size, thresholded); real masks are the real defective patches' masks of one split (the
labelled pool is the training split's). The thesis's label metrics (Tables 3.2, 4.3) come from
``training.metrics.labels``; the pictures are the histogram of per-image defect fractions
(thesis Figure 3.8) and an overlay grid (defect pixels tinted red on the generated image).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from shared.masks import MASK_DEFECT
from training.data.patchset import PatchRecord, PatchSet, load_patchset
from training.gan.checkpoint import LoadedGenerator
from training.gan.sample import SampleRequest, generate_pairs, label_mask, resize_patch
from training.metrics.labels import compare_labels, defect_fractions, label_table_markdown, write_fraction_histogram
from training.outputs import write_bytes_atomic

OVERLAY_COLOR_BGR = (40, 40, 255)


def real_defect_rows(patchset: PatchSet, split: str) -> list[PatchRecord]:
    """The real defective rows of ``split``: what generated patches and labels are compared with."""
    return [r for r in patchset.records if r.origin == "real" and r.has_defect and r.split == split]


def real_masks(patches_dir: Path, split: str) -> np.ndarray:
    """uint8 [N, P, P] product masks of ``split``'s real defective patches."""
    patchset = load_patchset(patches_dir)
    rows = real_defect_rows(patchset, split)
    if not rows:
        raise ValueError(f"{patches_dir}: no real defective {split} patches to compare generated labels with")
    return np.stack([patchset.read_mask(r) for r in rows])


def sample_pairs(loaded: LoadedGenerator, request: SampleRequest) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images [N, P, P], product masks [N, P, P]) at ``request.patch_px``, as a pool would hold them."""
    images, masks = [], []
    for batch, probs in generate_pairs(loaded, request):
        if probs is None:
            raise ValueError(f"{loaded.run_dir}: a {loaded.family} run draws no labels; label metrics need semantic")
        images += [resize_patch(image, request.patch_px) for image in batch]
        masks += [label_mask(p, request.patch_px, request.label_threshold) for p in probs]
    return np.stack(images), np.stack(masks)


def overlay(image: np.ndarray, mask: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """A gray patch as BGR with its defect pixels tinted red and their outline drawn."""
    bgr = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    defect = mask == MASK_DEFECT
    tint = np.array(OVERLAY_COLOR_BGR, np.float32)
    bgr[defect] = (bgr[defect].astype(np.float32) * (1 - alpha) + tint * alpha).astype(np.uint8)
    contours, _ = cv2.findContours(defect.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(bgr, contours, -1, OVERLAY_COLOR_BGR, 1)
    return bgr


def write_overlay_grid(path: Path, images: np.ndarray, masks: np.ndarray, columns: int = 8) -> Path:
    """Pairs (image, image with its mask overlaid) side by side, ``columns`` pairs per row; atomic PNG."""
    tiles = [
        np.concatenate([cv2.cvtColor(im, cv2.COLOR_GRAY2BGR), overlay(im, m)], axis=1)
        for im, m in zip(images, masks, strict=True)
    ]
    h, w = tiles[0].shape[:2]
    rows = -(-len(tiles) // columns)
    canvas = np.full((rows * h, columns * w, 3), 255, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        canvas[r * h : (r + 1) * h, c * w : (c + 1) * w] = tile
    ok, encoded = cv2.imencode(".png", canvas)
    if not ok:
        raise OSError(f"could not encode {path}")
    return write_bytes_atomic(path, encoded.tobytes())


def label_evaluation(
    *, images: np.ndarray, masks: np.ndarray, real: np.ndarray, out_dir: Path, name: str = "generated"
) -> dict:
    """Label metrics of generated ``masks`` vs ``real`` masks; writes label_histogram.png and overlays.png."""
    real_fractions, fake_fractions = defect_fractions(real), defect_fractions(masks)
    rows = compare_labels(real_fractions, {name: fake_fractions})
    histogram = write_fraction_histogram(out_dir / "label_histogram.png", real_fractions, {name: fake_fractions})
    shown = min(32, len(images))
    grid = write_overlay_grid(out_dir / "overlays.png", images[:shown], masks[:shown], columns=4)
    return {
        "table": rows,
        "markdown": label_table_markdown(rows),
        "pictures": {"histogram": str(histogram), "overlays": str(grid)},
    }
