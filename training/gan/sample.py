"""GAN samples as a synthetic pool: a patch set of ``origin = gan`` that experiments draw from.

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

from shared.masks import MASK_IGNORE
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
    mask = np.full((request.patch_px, request.patch_px), MASK_IGNORE, np.uint8)
    records: list[PatchRecord] = []
    scores: list[float] = []
    drawn = 0
    stream = request if keep is None else replace(request, count=request.count * MAX_DRAW_FACTOR)
    with atomic_output_dir(out_dir, overwrite=overwrite) as tmp:
        (tmp / "images").mkdir()
        (tmp / "masks").mkdir()
        bar = tqdm(total=request.count, unit="patch", desc="gan sample", disable=not progress)
        for batch in generate(loaded, stream):
            patches = np.stack([resize_patch(image, request.patch_px) for image in batch])
            batch_scores = keep.score(patches) if keep is not None else np.full(len(patches), np.nan)
            for patch, score in zip(patches, batch_scores, strict=True):
                drawn += 1
                if keep is not None and score < keep.min_score:
                    continue
                patch_id = f"gan-s{request.seed}-{drawn - 1:06d}"  # the latent's index in the stream
                image_rel, mask_rel = write_patch_pixels(tmp, patch_id, patch, mask)
                records.append(_record(patch_id, image_rel, mask_rel, patch))
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
        }
        summary = {
            "samples": len(records),
            "mean_intensity": round(float(np.mean([r.mean_intensity for r in records])), 3),
            "label": SAMPLE_LABEL,
            "mask": "all ignore (an image GAN draws no mask)",
            "filter": _filter_summary(keep, drawn=drawn, scores=scores),
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


def _record(patch_id: str, image_rel: str, mask_rel: str, patch: np.ndarray) -> PatchRecord:
    """A pool row: trained as a defect patch, no group (see the module docstring), training split only."""
    side = patch.shape[0]
    return PatchRecord(
        id=patch_id,
        image=image_rel,
        mask=mask_rel,
        source_image="",
        group="",
        label=SAMPLE_LABEL,
        x=0,
        y=0,
        crop_px=side,
        patch_px=side,
        has_defect=True,
        defect_fraction=0.0,  # unknown: the image GAN draws no mask (all-ignore mask)
        valid_fraction=1.0,
        mean_intensity=round(float(patch.mean()), 3),
        split="train",
        origin=PatchOrigin.GAN.value,
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
