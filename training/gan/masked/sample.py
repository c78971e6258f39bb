"""Samples of the mask-guided generator: a pool of exact image + mask pairs, and the picture beside pasting.

A sample draws a *donor* (a real training defect), moves its mask (:mod:`.masks`, the rules of
``data.json``'s placement: free → any training background and dihedral turns; fixed → a
background near the donor's tile position, no turns) onto a good training background, and
paints it there (the composite keeps every byte outside the grown mask). The pool row's mask is
the moved defect mask (255) on the background's good pixels (0): an exact pair for the
classifier (a defect patch) and the segmenter. Rows carry the background's ``group`` and the
donor's ``source_group``, so a run draws only rows whose groups are both its training groups
(:func:`training.data.pools.draw_from_pool`), like pasted rows. Backgrounds and donors come from
training-split groups only (``MaskedData``); no validation or test group is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from shared.masks import MASK_DEFECT, MASK_GOOD, defect_fraction
from training.data.blend import BlendMode, paste_defect
from training.data.patchset import (
    PATCHES_NAME,
    PATCHSET_META_NAME,
    PATCHSET_SCHEMA_VERSION,
    PatchOrigin,
    PatchRecord,
    load_patchset,
    write_patch_pixels,
)
from training.data.table import write_rows
from training.gan.checkpoint import LoadedGenerator
from training.gan.data import read_run_data
from training.gan.loop import tile_images
from training.gan.masked.composite import alpha_map, composite_uint8
from training.gan.masked.data import MaskedData, load_masked_data
from training.gan.masked.masks import MaskWarp, warp_mask
from training.gan.masked.networks import noise_maps, paint, seeded_normal
from training.gan.masked.reals import mask_tensor, to_tensor
from training.outputs import atomic_output_dir, provenance, write_json_atomic


@dataclass(frozen=True)
class Condition:
    """One sample's conditions: which real defect lends its mask, which background, the moved mask."""

    donor: int
    background: int
    mask: np.ndarray  # bool [R, R]


def run_data(loaded: LoadedGenerator, patches: Path | None = None) -> MaskedData:
    """The pairs and backgrounds of the patch set the run trained on (``data.json``), or of ``patches``."""
    source = patches or read_run_data(loaded.run_dir).get("patches")
    if not source:
        raise ValueError(f"{loaded.run_dir}: no data.json naming its patches; pass the patch set")
    return load_masked_data(Path(source), resolution=loaded.config.resolution)


def draw_conditions(data: MaskedData, count: int, rng: np.random.Generator, *, move: bool = True) -> list[Condition]:
    """``count`` conditions by the placement rule of ``data`` (``move=False``: the donor's own mask, unmoved)."""
    warp = MaskWarp(dihedral=not data.fixed_structure)
    out = []
    for _ in range(count):
        donor = int(rng.integers(len(data.images)))
        near = data.near[donor]
        background = int(near[rng.integers(len(near))])
        mask = data.masks[donor].astype(bool)
        out.append(Condition(donor, background, warp_mask(mask, rng, warp) if move else mask))
    return out


@torch.no_grad()
def paint_conditions(
    loaded: LoadedGenerator,
    data: MaskedData,
    conditions: list[Condition],
    z: torch.Tensor,
    *,
    noise: torch.Tensor | None = None,
) -> np.ndarray:
    """uint8 [N, R, R] composites: each background with its mask painted by G_ema at latent ``z[i]`` (and
    ``noise[i]`` where G has noise inputs)."""
    cfg, G = loaded.config, loaded.generator
    device = next(G.parameters()).device
    backgrounds = data.backgrounds[[c.background for c in conditions]]
    masks = mask_tensor(np.stack([c.mask for c in conditions]).astype(np.float32), device)
    alpha = alpha_map(masks, cfg.dilate_px, cfg.feather_px)
    noise = None if noise is None else noise.to(device)
    painted = paint(G, to_tensor(backgrounds, device), masks, alpha, z=z.to(device), noise=noise)
    painted_u8 = ((painted[:, 0].float().cpu().numpy() + 1.0) * 127.5).clip(0, 255)
    alpha_np = alpha[:, 0].cpu().numpy()
    return np.stack([composite_uint8(b, p, a) for b, p, a in zip(backgrounds, painted_u8, alpha_np, strict=True)])


def latents(count: int, z_dim: int, seed: int) -> torch.Tensor:
    """Sample i's latent does not depend on the batch size: one stream per seed."""
    return seeded_normal((count, z_dim), seed)


def _rows(values: torch.Tensor | None, start: int, count: int) -> torch.Tensor | None:
    return None if values is None else values[start : start + count]


def sample_noise(count: int, loaded: LoadedGenerator, seed: int) -> torch.Tensor | None:
    """Sample i's noise map (None where G has no noise inputs): a stream of its own, beside the latents'."""
    if not loaded.generator.noise:
        return None
    return noise_maps(count, loaded.config.resolution, seed=seed * 7919 + 1)


def masked_samples(
    loaded: LoadedGenerator, count: int, seed: int, *, data: MaskedData | None = None, batch: int = 64
) -> tuple[np.ndarray, np.ndarray, list[Condition], MaskedData]:
    """(uint8 images [N, R, R], {0, 1} masks [N, R, R], their conditions, the data) of ``count`` samples."""
    data = data or run_data(loaded)
    rng = np.random.default_rng([seed, 11])
    conditions = draw_conditions(data, count, rng)
    z = latents(count, loaded.config.z_dim, seed)
    noise = sample_noise(count, loaded, seed)
    images = np.concatenate(
        [
            paint_conditions(loaded, data, conditions[i : i + batch], z[i : i + batch], noise=_rows(noise, i, batch))
            for i in range(0, count, batch)
        ]
    )
    masks = np.stack([c.mask for c in conditions]).astype(np.uint8)
    return images, masks, conditions, data


def write_masked_pool(
    *, loaded: LoadedGenerator, out_dir: Path, count: int, seed: int, overwrite: bool = False, progress: bool = True
) -> dict:
    """``count`` samples as a pool patch set of origin ``masked`` in ``out_dir`` (atomic); returns its summary."""
    data = run_data(loaded)
    parent = load_patchset(data.patches)
    records: list[PatchRecord] = []
    with atomic_output_dir(out_dir, overwrite=overwrite) as tmp:
        (tmp / "images").mkdir()
        (tmp / "masks").mkdir()
        bar = tqdm(total=count, unit="patch", desc="masked sample", disable=not progress)
        step = 256
        for start in range(0, count, step):
            n = min(step, count - start)
            images, masks, conditions, _ = masked_samples(loaded, n, seed * 1_000_003 + start, data=data)
            for offset, (image, mask, condition) in enumerate(zip(images, masks, conditions, strict=True)):
                label_mask = np.where(mask > 0, MASK_DEFECT, MASK_GOOD).astype(np.uint8)
                patch_id = f"masked-s{seed}-{start + offset:06d}"
                image_rel, mask_rel = write_patch_pixels(tmp, patch_id, image, label_mask)
                donor = data.pair_records[condition.donor]
                background = data.background_records[condition.background]
                records.append(
                    PatchRecord(
                        id=patch_id,
                        image=image_rel,
                        mask=mask_rel,
                        source_image=background.source_image,
                        group=background.group,
                        label=donor.label,
                        x=background.x,
                        y=background.y,
                        crop_px=background.crop_px,
                        patch_px=image.shape[0],
                        has_defect=True,
                        defect_fraction=round(defect_fraction(label_mask), 6),
                        valid_fraction=1.0,
                        mean_intensity=round(float(image.mean()), 3),
                        split="train",
                        origin=PatchOrigin.MASKED.value,
                        source_patch=donor.id,
                        source_group=donor.source_group or donor.group,
                        dest_patch=background.id,
                    )
                )
            bar.update(n)
        bar.close()
        options = {"n": count, "seed": seed, "patch_px": int(data.images.shape[-1])}
        summary = {
            "samples": len(records),
            "placement": data.describe()["placement"],
            "mask_warp": MaskWarp(dihedral=not data.fixed_structure).__dict__,
            "label": "the donor defect's class; mask = the moved defect mask (255) on good background (0)",
            "mean_defect_fraction": round(float(np.mean([r.defect_fraction for r in records])), 5),
        }
        meta = {
            "schema_version": PATCHSET_SCHEMA_VERSION,
            "origin": PatchOrigin.MASKED.value,
            "parent": {"path": str(data.patches.resolve()), "fingerprint": data.fingerprint},
            "dataset": parent.meta.get("dataset"),
            "geometry": parent.meta.get("geometry"),
            "options": options,
            "generator": {
                "run": str(Path(loaded.run_dir).resolve()),
                "family": loaded.family,
                "checkpoint": str(loaded.checkpoint),
                "kimg": loaded.kimg,
            },
            "split_rule": "training only: donors and backgrounds from training-split groups; rows carry both groups",
            "summary": summary,
            "provenance": provenance("gan sample", options, seed, inputs={"run": str(loaded.run_dir)}),
        }
        write_rows(tmp / PATCHES_NAME, records, PatchRecord)
        write_json_atomic(tmp / PATCHSET_META_NAME, meta)
    return {"out": str(out_dir), **summary, "kimg": loaded.kimg, "checkpoint": str(loaded.checkpoint)}


def write_comparison_grid(
    loaded: LoadedGenerator, data: MaskedData, path: Path, *, rows: int = 8, seed: int = 0, scale: int = 2
) -> Path:
    """Per row: background | mask | painted (z1) | painted (z2) | the same defect pasted (``paste`` alpha blend).

    The donor's own mask, unmoved, on a background chosen by the placement rule: the painted and the
    pasted defect share mask and background, so the picture shows what learning adds over pasting.
    """
    rng = np.random.default_rng([seed, 23])
    conditions = draw_conditions(data, rows, rng, move=False)
    z = latents(2 * rows, loaded.config.z_dim, seed)
    noise = sample_noise(2 * rows, loaded, seed)
    first, second = (None, None) if noise is None else (noise[:rows], noise[rows:])
    first, second = (
        paint_conditions(loaded, data, conditions, z[:rows], noise=first),
        paint_conditions(loaded, data, conditions, z[rows:], noise=second),
    )
    tiles = []
    for i, condition in enumerate(conditions):
        background = data.backgrounds[condition.background]
        defect = np.where(condition.mask, MASK_DEFECT, MASK_GOOD).astype(np.uint8)
        pasted, _ = paste_defect(
            data.images[condition.donor],
            defect,
            background,
            np.zeros_like(defect),
            dilate_px=3,
            feather_px=1.5,
            mode=BlendMode.ALPHA,
        )
        tiles += [background, defect, first[i], second[i], pasted]
    grid = tile_images(np.stack(tiles), 5)
    grid = cv2.resize(grid, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), grid):
        raise OSError(f"could not write {path}")
    return path
