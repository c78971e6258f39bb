"""GAN samples as a synthetic pool: a patch set of ``origin = gan`` that experiments draw from.

An image GAN draws no mask. Its samples are trained as *defect* patches, as in the thesis
(the GAN only ever saw defective patches), and their masks are all ``MASK_IGNORE``: nothing in
them is claimed good or defective pixel by pixel, so a segmenter never learns from them. A
sample that shows no visible defect is label noise; the pool keeps every sample (no filter by a
trained classifier's score): a filter would tie the pool to one classifier run and hide how
much of what the GAN draws is defect-free. ``gan eval`` shows the samples beside their nearest
real patches so a person can judge that share.

Rows carry no ``group``: they come from the GAN's training groups as a whole, never from a
test group (``training/gan/data.py``), so :func:`training.data.pools.draw_from_pool` may draw them
into any seed's training split. (A seed whose re-drawn validation split holds a group the GAN
trained on sees that group's likeness in training; test groups never.)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from shared.masks import MASK_IGNORE
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
from training.gan.families import get_family
from training.gan.loop import to_uint8
from training.outputs import atomic_output_dir, provenance, write_json_atomic

SAMPLE_LABEL = "defect"  # what an image-GAN sample is trained as (the class names of real rows stay theirs)


@dataclass(frozen=True)
class SampleRequest:
    """How many samples, from which latent stream, at which truncation ψ and output size."""

    count: int
    seed: int = 0
    psi: float = 1.0
    patch_px: int = 128
    batch: int = 64

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"--n must be >= 1, got {self.count}")
        if not 0.0 <= self.psi <= 2.0:
            raise ValueError(f"--truncation must be in [0, 2], got {self.psi}")


def resize_patch(image: np.ndarray, patch_px: int) -> np.ndarray:
    """To the patch set's side: cubic up-sampling (64 -> 128 for ``tiny``), area when shrinking."""
    if image.shape[0] == patch_px:
        return image
    interpolation = cv2.INTER_CUBIC if patch_px > image.shape[0] else cv2.INTER_AREA
    return cv2.resize(image, (patch_px, patch_px), interpolation=interpolation)


def generate(loaded: LoadedGenerator, request: SampleRequest) -> Iterator[np.ndarray]:
    """Batches of uint8 samples [B, H, W] at the generator's resolution, from ``request.seed``'s latents.

    The latents of sample i do not depend on the batch size: they are drawn in one stream.
    """
    family = get_family(loaded.family)
    sampler = family.sampler(loaded.generator, psi=request.psi, noise_mode="const")
    device = next(loaded.generator.parameters()).device
    latents = torch.Generator().manual_seed(request.seed)
    z_dim = loaded.config.z_dim
    with torch.no_grad():
        for start in range(0, request.count, request.batch):
            n = min(request.batch, request.count - start)
            z = torch.randn(n, z_dim, generator=latents).to(device)
            yield to_uint8(sampler(z))


def write_gan_pool(
    *, loaded: LoadedGenerator, out_dir: Path, request: SampleRequest, overwrite: bool = False, progress: bool = True
) -> dict:
    """Write ``request.count`` samples as a pool patch set in ``out_dir`` (atomic); returns its summary."""
    data = _run_data(loaded.run_dir)
    parent = load_patchset(Path(data["patches"])) if data.get("patches") else None
    geometry = parent.meta.get("geometry") if parent else None
    mask = np.full((request.patch_px, request.patch_px), MASK_IGNORE, np.uint8)
    records: list[PatchRecord] = []
    with atomic_output_dir(out_dir, overwrite=overwrite) as tmp:
        (tmp / "images").mkdir()
        (tmp / "masks").mkdir()
        bar = tqdm(total=request.count, unit="patch", desc="gan sample", disable=not progress)
        for batch in generate(loaded, request):
            for image in batch:
                patch = resize_patch(image, request.patch_px)
                patch_id = f"gan-s{request.seed}-{len(records):06d}"
                image_rel, mask_rel = write_patch_pixels(tmp, patch_id, patch, mask)
                records.append(
                    PatchRecord(
                        id=patch_id,
                        image=image_rel,
                        mask=mask_rel,
                        source_image="",
                        group="",
                        label=SAMPLE_LABEL,
                        x=0,
                        y=0,
                        crop_px=request.patch_px,
                        patch_px=request.patch_px,
                        has_defect=True,
                        defect_fraction=0.0,  # unknown: the image GAN draws no mask (all-ignore mask)
                        valid_fraction=1.0,
                        mean_intensity=round(float(patch.mean()), 3),
                        split="train",
                        origin=PatchOrigin.GAN.value,
                    )
                )
            bar.update(len(batch))
        bar.close()
        options = {
            "n": request.count,
            "truncation_psi": request.psi,
            "seed": request.seed,
            "patch_px": request.patch_px,
            "generator_px": loaded.config.resolution,
            "resize": "cubic" if request.patch_px > loaded.config.resolution else "area/none",
        }
        summary = {
            "samples": len(records),
            "mean_intensity": round(float(np.mean([r.mean_intensity for r in records])), 3),
            "label": SAMPLE_LABEL,
            "mask": "all ignore (an image GAN draws no mask)",
        }
        meta = {
            "schema_version": PATCHSET_SCHEMA_VERSION,
            "origin": PatchOrigin.GAN.value,
            "parent": {"path": data.get("patches"), "fingerprint": data.get("fingerprint")},
            "dataset": parent.meta.get("dataset") if parent else None,
            "geometry": geometry,
            "options": options,
            "generator": {
                "run": str(Path(loaded.run_dir).resolve()),
                "family": loaded.family,
                "checkpoint": str(loaded.checkpoint),
                "kimg": loaded.kimg,
                "data_rule": data.get("rule"),
            },
            "split_rule": "training only; the GAN saw only training-split groups (no validation or test group)",
            "summary": summary,
            "provenance": provenance("gan sample", options, request.seed, inputs={"run": str(loaded.run_dir)}),
        }
        write_rows(tmp / PATCHES_NAME, records, PatchRecord)
        write_json_atomic(tmp / PATCHSET_META_NAME, meta)
    return {"out": str(out_dir), **summary, "kimg": loaded.kimg, "checkpoint": str(loaded.checkpoint)}


def _run_data(run_dir: Path) -> dict:
    """The run's ``data.json`` (which patches it trained on); {} for a run folder without one."""
    import json

    path = Path(run_dir) / "data.json"
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))
