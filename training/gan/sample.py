"""GAN samples as a synthetic pool: a patch set of the family's origin (``gan``, ``semgan``) that experiments draw from.

A SemanticGAN (family ``semantic``, origin ``semgan``) draws a label with every image: its pool
rows carry real masks — P(defect) up-sampled (bilinear) to the patch size and thresholded at
``--label-threshold`` (default 0.5, recorded) -> 255 defect / 0 good — so a segmenter trains on
them (``--augment semgan:N``). A sample whose mask has no defect pixel is written as ``good``.
Everything below about image-GAN samples holds for ``gan`` pools.

An image GAN draws no mask. Its samples are trained as *defect* patches, as in the thesis
(the GAN only ever saw defective patches), and their masks are all ``MASK_IGNORE``: nothing in
them is claimed good or defective pixel by pixel, so a segmenter never learns from them. A
sample that shows no visible defect is label noise. By default the pool keeps every sample: a
filter would tie the pool to one classifier run and hide how much of what the GAN draws is
defect-free (``gan eval`` shows the samples beside their nearest real patches so a person can
judge that share). ``--filter-classifier RUN [--min-score X]`` is the measured alternative: a
trained patch classifier scores each sample (sigmoid of its defect logit) and only samples with
score >= X (default: that run's tuned threshold) are kept; latents keep being drawn from the same
stream until ``--n`` are kept (at most ``MAX_DRAW_FACTOR`` x ``--n`` draws). The pool's
``patchset.json`` records the classifier, X, the draws and the acceptance rate. Sample ids name
their latent index (``gan-s<seed>-<index>``), so a kept sample can be redrawn.

Rows carry no ``group``: they come from the GAN's training groups as a whole, never from a
test group (``training/gan/data.py``), so :func:`training.data.pools.draw_from_pool` may draw them
into any seed's training split. (A seed whose re-drawn validation split holds a group the GAN
trained on sees that group's likeness in training; test groups never.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from shared.masks import MASK_DEFECT, MASK_GOOD, MASK_IGNORE, defect_fraction
from shared.pixels import to_model_input
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
from training.gan.families import get_family
from training.gan.loop import to_uint8
from training.outputs import atomic_output_dir, provenance, write_json_atomic

SAMPLE_LABEL = "defect"  # what an image-GAN sample is trained as (the class names of real rows stay theirs)
MAX_DRAW_FACTOR = 20  # with a filter: give up after drawing this many times --n latents


@dataclass(frozen=True)
class DefectFilter:
    """Keep a sample only if a trained classifier scores it >= ``min_score`` (``--filter-classifier``)."""

    name: str
    min_score: float
    score: Callable[[np.ndarray], np.ndarray]  # uint8 patches [N, P, P] -> defect probabilities [N]

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_score <= 1.0:
            raise ValueError(f"--min-score must be in [0, 1], got {self.min_score}")


def classifier_filter(run_dir: Path, min_score: float | None = None) -> DefectFilter:
    """A :class:`DefectFilter` from a ``classifier train`` run; ``min_score`` defaults to its tuned threshold."""
    from training.models.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(Path(run_dir))
    if checkpoint.task != "classifier":
        raise ValueError(f"{run_dir}: a {checkpoint.task} run; --filter-classifier needs a classifier run")
    model = checkpoint.build()
    input_px = int(checkpoint.spec["input_px"])

    def score(patches: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            x = torch.from_numpy(to_model_input(np.ascontiguousarray(patches)))
            if x.shape[-1] != input_px:
                x = F.interpolate(x, size=(input_px, input_px), mode="area" if x.shape[-1] > input_px else "bilinear")
            return torch.sigmoid(model(x)).reshape(-1).double().numpy()

    threshold = float(checkpoint.threshold) if min_score is None else float(min_score)
    return DefectFilter(name=f"classifier {Path(run_dir).resolve()}", min_score=threshold, score=score)


@dataclass(frozen=True)
class SampleRequest:
    """How many samples, from which latent stream, at which truncation ψ and output size."""

    count: int
    seed: int = 0
    psi: float = 1.0
    patch_px: int = 128
    batch: int = 64
    label_threshold: float = 0.5  # semantic: P(defect) at or above which a pixel is a defect

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"--n must be >= 1, got {self.count}")
        if not 0.0 <= self.psi <= 2.0:
            raise ValueError(f"--truncation must be in [0, 2], got {self.psi}")
        if not 0.0 < self.label_threshold < 1.0:
            raise ValueError(f"--label-threshold must be in (0, 1), got {self.label_threshold}")


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
    for images, _ in generate_pairs(loaded, request):
        yield images


def generate_pairs(loaded: LoadedGenerator, request: SampleRequest) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Like :func:`generate`, with each batch's P(defect) maps float32 [B, H, W] (None for an image GAN)."""
    family = get_family(loaded.family)
    sampler = family.sampler(loaded.generator, psi=request.psi, noise_mode="const")
    device = next(loaded.generator.parameters()).device
    latents = torch.Generator().manual_seed(request.seed)
    z_dim = loaded.config.z_dim
    img_channels = loaded.config.img_channels
    with torch.no_grad():
        for start in range(0, request.count, request.batch):
            n = min(request.batch, request.count - start)
            z = torch.randn(n, z_dim, generator=latents).to(device)
            out = sampler(z).float()
            labels = out[:, img_channels:]
            probs = None if labels.shape[1] == 0 else ((labels[:, 0] + 1) / 2).clamp(0, 1).cpu().numpy()
            yield to_uint8(out[:, :img_channels]), probs


def label_mask(probability: np.ndarray, patch_px: int, threshold: float) -> np.ndarray:
    """P(defect) [h, w] -> a product mask at ``patch_px`` (bilinear, then >= threshold: 255, else 0)."""
    if probability.shape[0] != patch_px:
        probability = cv2.resize(probability, (patch_px, patch_px), interpolation=cv2.INTER_LINEAR)
    return np.where(probability >= threshold, MASK_DEFECT, MASK_GOOD).astype(np.uint8)


def write_gan_pool(
    *,
    loaded: LoadedGenerator,
    out_dir: Path,
    request: SampleRequest,
    keep: DefectFilter | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Write ``request.count`` samples as a pool patch set in ``out_dir`` (atomic); returns its summary.

    With ``keep`` only samples the classifier scores >= ``keep.min_score`` are written, drawing on
    from the same latent stream until ``request.count`` are kept (ValueError, and no pool, if
    ``MAX_DRAW_FACTOR`` x that many draws do not suffice).
    """
    data = read_run_data(loaded.run_dir)
    parent = load_patchset(Path(data["patches"])) if data.get("patches") else None
    geometry = parent.meta.get("geometry") if parent else None
    ignore = np.full((request.patch_px, request.patch_px), MASK_IGNORE, np.uint8)
    origin = get_family(loaded.family).origin
    records: list[PatchRecord] = []
    scores: list[float] = []
    drawn = 0
    stream = request if keep is None else replace(request, count=request.count * MAX_DRAW_FACTOR)
    with atomic_output_dir(out_dir, overwrite=overwrite) as tmp:
        (tmp / "images").mkdir()
        (tmp / "masks").mkdir()
        bar = tqdm(total=request.count, unit="patch", desc="gan sample", disable=not progress)
        for batch, probs in generate_pairs(loaded, stream):
            patches = np.stack([resize_patch(image, request.patch_px) for image in batch])
            masks = (
                [label_mask(p, request.patch_px, request.label_threshold) for p in probs]
                if probs is not None
                else [ignore] * len(patches)
            )
            batch_scores = keep.score(patches) if keep is not None else np.full(len(patches), np.nan)
            for patch, mask, score in zip(patches, masks, batch_scores, strict=True):
                drawn += 1
                if keep is not None and score < keep.min_score:
                    continue
                patch_id = f"{origin}-s{request.seed}-{drawn - 1:06d}"  # the latent's index in the stream
                image_rel, mask_rel = write_patch_pixels(tmp, patch_id, patch, mask)
                records.append(_record(patch_id, image_rel, mask_rel, patch, mask=mask, origin=origin))
                scores.append(float(score))
                if len(records) == request.count:
                    break
            bar.n = len(records)
            bar.refresh()
            if len(records) == request.count:
                break
        bar.close()
        if len(records) < request.count:
            raise ValueError(
                f"--filter-classifier kept {len(records)} of {drawn} samples (score >= {keep.min_score}); "
                f"--n {request.count} needs a lower --min-score or a better generator"
            )
        options = {
            "n": request.count,
            "truncation_psi": request.psi,
            "seed": request.seed,
            "patch_px": request.patch_px,
            "generator_px": loaded.config.resolution,
            "resize": "cubic" if request.patch_px > loaded.config.resolution else "area/none",
            "filter_classifier": keep.name if keep else None,
            "min_score": keep.min_score if keep else None,
            "label_threshold": request.label_threshold if origin != PatchOrigin.GAN.value else None,
        }
        summary = {
            "samples": len(records),
            "mean_intensity": round(float(np.mean([r.mean_intensity for r in records])), 3),
            "label": SAMPLE_LABEL if origin == PatchOrigin.GAN.value else "defect if its mask has a defect pixel",
            "mask": (
                "all ignore (an image GAN draws no mask)"
                if origin == PatchOrigin.GAN.value
                else f"generated label: P(defect) >= {request.label_threshold} -> 255"
            ),
            "with_defect": sum(r.has_defect for r in records),
            "filter": _filter_summary(keep, drawn=drawn, scores=scores),
        }
        meta = {
            "schema_version": PATCHSET_SCHEMA_VERSION,
            "origin": origin,
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


def _record(
    patch_id: str, image_rel: str, mask_rel: str, patch: np.ndarray, *, mask: np.ndarray, origin: str
) -> PatchRecord:
    """A pool row, no group (see the module docstring), training split only.

    Image GAN: trained as a defect patch, defect fraction unknown (all-ignore mask). SemanticGAN:
    defect or good as its generated mask says, with that mask's defect fraction.
    """
    side = patch.shape[0]
    labelled = origin != PatchOrigin.GAN.value
    has_defect = bool((mask == MASK_DEFECT).any()) if labelled else True
    return PatchRecord(
        id=patch_id,
        image=image_rel,
        mask=mask_rel,
        source_image="",
        group="",
        label=SAMPLE_LABEL if has_defect else "good",
        x=0,
        y=0,
        crop_px=side,
        patch_px=side,
        has_defect=has_defect,
        defect_fraction=round(defect_fraction(mask), 6) if labelled else 0.0,  # image GAN: unknown (all ignore)
        valid_fraction=1.0,
        mean_intensity=round(float(patch.mean()), 3),
        split="train",
        origin=origin,
    )


def _filter_summary(keep: DefectFilter | None, *, drawn: int, scores: list[float]) -> dict | None:
    if keep is None:
        return None
    return {
        "classifier": keep.name,
        "min_score": keep.min_score,
        "drawn": drawn,
        "kept": len(scores),
        "acceptance": round(len(scores) / max(drawn, 1), 4),
        "kept_score_mean": round(float(np.mean(scores)), 4) if scores else None,
    }
