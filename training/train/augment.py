"""Batch augmentation of the classifier and segmenter (numpy, uint8 in and out).

Label-preserving for defects: flips and 90° turns (defects have no preferred orientation;
masks follow their image) and per-patch brightness/contrast jitter. The GAN families have
their own differentiable pipeline (ADA) instead.
"""

from __future__ import annotations

import numpy as np

GEOMETRIC_AUGMENTATIONS = ("none", "flips", "dihedral")


def augment_geometric(images: np.ndarray, masks: np.ndarray | None, rng: np.random.Generator, kind: str = "flips"):
    """Random flips (and, for ``dihedral``, transposes: with flips, all eight 90° rotations/mirrors).

    Label-preserving for defects, which have no preferred orientation; masks follow their image.
    """
    if kind not in GEOMETRIC_AUGMENTATIONS:
        raise ValueError(f"geometric augmentation {kind!r}: choose one of {GEOMETRIC_AUGMENTATIONS}")
    if kind == "none":
        return images, masks
    flip_h = rng.random(len(images)) < 0.5
    flip_v = rng.random(len(images)) < 0.5
    transpose = rng.random(len(images)) < 0.5 if kind == "dihedral" else np.zeros(len(images), bool)
    images = images.copy()
    masks = None if masks is None else masks.copy()
    for array in (images, masks):
        if array is None:
            continue
        array[flip_h] = array[flip_h, :, ::-1]
        array[flip_v] = array[flip_v, ::-1]
        if transpose.any() and array.shape[1] == array.shape[2]:
            array[transpose] = np.swapaxes(array[transpose], 1, 2)
    return images, masks


def augment_photometric(images: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Per-patch contrast and brightness jitter of up to ±``strength`` (uint8 in, uint8 out).

    Real lines see exposure drift (Magnetic Tile photographs each tile under six exposures,
    the synthetic frames jitter by ±15 %); the classifier should not key on it.
    """
    if strength <= 0:
        return images
    shape = (len(images),) + (1,) * (images.ndim - 1)
    contrast = rng.uniform(1 - strength, 1 + strength, shape).astype(np.float32)
    brightness = rng.uniform(1 - strength, 1 + strength, shape).astype(np.float32)
    floats = images.astype(np.float32)
    means = floats.mean(axis=tuple(range(1, images.ndim)), keepdims=True)
    out = (floats - means) * contrast + means * brightness
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def augment_batch(
    images: np.ndarray,
    masks: np.ndarray | None,
    rng: np.random.Generator,
    *,
    geometric: str = "flips",
    photometric: float = 0.0,
):
    """Geometric, then photometric augmentation of one training batch."""
    images, masks = augment_geometric(images, masks, rng, geometric)
    return augment_photometric(images, photometric, rng), masks
