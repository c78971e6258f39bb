"""Training the patch segmenter (thesis §3.3.4): iteration-based, best validation defect IoU kept.

Loss: Dice + BCE. Defects cover ~2.5 % of a defective patch, so plain BCE is dominated by
background and learns to predict nothing; Dice is insensitive to that imbalance but
noisy on its own, BCE keeps the gradients smooth. Padding pixels (mask value 64) are
excluded from both. Prediction: sigmoid probability > threshold (0.9, as the thesis).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from tqdm import tqdm

from shared.masks import MASK_DEFECT, MASK_IGNORE
from training.data.arrays import PatchArrays
from training.metrics import per_class_segmentation, segmentation_metrics
from training.models.checkpoint import CHECKPOINT_NAME, Checkpoint, save_checkpoint
from training.models.segmenter import SegmenterSpec, create_segmenter
from training.train.augment import augment_batch
from training.train.curves import plot_curves
from training.train.distributed import SINGLE_PROCESS, ProcessGroup, shard, sync_buffers, wrap_for_processes
from training.train.runlog import RunLog
from training.train.runtime import predict, start_runtime, weights_sha256
from training.train.schedule import Schedule

_IGNORE_TARGET = 2


@dataclass(frozen=True)
class SegmenterData:
    train: PatchArrays
    val: PatchArrays
    test: PatchArrays


def _targets(masks: np.ndarray, device: torch.device) -> torch.Tensor:
    target = np.where(masks == MASK_DEFECT, 1, np.where(masks == MASK_IGNORE, _IGNORE_TARGET, 0))
    return torch.from_numpy(target.astype(np.float32)).unsqueeze(1).to(device)


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, dice: smp.losses.DiceLoss) -> torch.Tensor:
    """Dice + BCE over labelled pixels (target 0/1; ``_IGNORE_TARGET`` excluded)."""
    labelled = (target != _IGNORE_TARGET).float()
    bce = F.binary_cross_entropy_with_logits(logits, target.clamp(max=1.0), weight=labelled)
    return dice(logits, target) + bce


THRESHOLD_GRID = tuple(round(0.1 * i, 1) for i in range(1, 10))


def best_threshold(masks: np.ndarray, probabilities: np.ndarray, default: float) -> float:
    """The grid threshold with the best defect IoU on these (validation) patches; ties keep the higher one."""
    best, chosen = -1.0, default
    for threshold in THRESHOLD_GRID:
        score = segmentation_metrics(masks, probabilities, threshold)["defect_iou"]
        if not np.isnan(score) and score >= best:
            best, chosen = score, threshold
    return chosen


def _probabilities(model, arrays: PatchArrays, device) -> np.ndarray:
    return predict(model, arrays.images, device, batch_size=64)[:, 0]


def train_segmenter(
    data: SegmenterData,
    spec: SegmenterSpec,
    schedule: Schedule,
    out_dir: Path | None,
    *,
    context: dict | None = None,
    threshold: float = 0.9,
    tune_threshold: bool = False,
    progress: bool = True,
    init_state: dict[str, torch.Tensor] | None = None,
    group: ProcessGroup = SINGLE_PROCESS,
) -> dict:
    """Train, keep the best validation defect IoU, score test; writes model.pt, metrics.jsonl, curves.png.

    ``tune_threshold``: after training, the pixel threshold with the best validation defect IoU on
    :data:`THRESHOLD_GRID` replaces ``threshold`` for the test scores and the checkpoint.
    ``init_state``: a fine-tune from these weights (all of them), which must beat them on validation.
    Several processes (``group``): as :func:`training.train.classifier.train_classifier`.
    """
    context = context or {}
    main = group.is_main
    if main:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
    runtime = start_runtime(
        seed=schedule.seed, device=schedule.device, threads=schedule.threads, precision=schedule.precision
    )
    rng, device = runtime.rng, runtime.device
    part = shard(schedule.batch_size, group)
    model = create_segmenter(spec)
    if init_state is not None:
        model.load_state_dict(init_state)
    model = runtime.place(model)
    step = wrap_for_processes(model, group, device)
    dice = smp.losses.DiceLoss(mode="binary", from_logits=True, ignore_index=_IGNORE_TARGET)
    optimizer = torch.optim.AdamW(step.parameters(), lr=schedule.lr, weight_decay=schedule.weight_decay)
    lr_schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=schedule.lr, total_steps=schedule.iterations, pct_start=0.15
    )
    log = RunLog(out_dir / "metrics.jsonl") if main else None
    best, best_state, best_iteration, losses = -1.0, None, 0, []

    def validate(iteration: int) -> dict:
        nonlocal best, best_state, best_iteration
        metrics = segmentation_metrics(data.val.masks, _probabilities(model, data.val, device), threshold)
        score = -1.0 if np.isnan(metrics["defect_iou"]) else metrics["defect_iou"]
        if score > best:
            best, best_iteration, best_state = score, iteration, copy.deepcopy(model.state_dict())
        return metrics

    if main and init_state is not None:
        validate(0)  # a fine-tune keeps its parent's weights unless it beats them on validation
    started = time.perf_counter()
    bar = tqdm(range(1, schedule.iterations + 1), desc="segmenter", unit="it", disable=not (progress and main))
    for iteration in bar:
        step.train()
        batch = rng.choice(len(data.train), size=schedule.batch_size, replace=True)
        images, masks = augment_batch(
            data.train.images[batch],
            data.train.masks[batch],
            rng,
            geometric=schedule.geometric_aug,
            photometric=schedule.photometric_aug,
        )
        with runtime.autocast():
            logits = step(runtime.tensor(images[part]))
        loss = segmentation_loss(logits.float(), _targets(masks[part], device), dice)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        lr_schedule.step()
        losses.append(loss.item())
        if main and (iteration % schedule.val_every == 0 or iteration == schedule.iterations):
            metrics = validate(iteration)
            log.report("train/loss", float(np.mean(losses[-schedule.val_every :])))
            for name in ("defect_iou", "mean_iou", "patch_f1_k1"):
                log.report(f"val/{name}", metrics[name])
            log.flush(iteration=iteration)
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}", val_iou=f"{metrics['defect_iou']:.3f}")
    train_seconds = time.perf_counter() - started
    sync_buffers(model, group)
    final = weights_sha256(model)
    if not main:
        return {"rank": group.rank, "final_weights_sha256": final}
    model.load_state_dict(best_state)
    val_probabilities = _probabilities(model, data.val, device)
    if tune_threshold:
        threshold = best_threshold(data.val.masks, val_probabilities, threshold)
    test_probabilities = _probabilities(model, data.test, device)
    test = segmentation_metrics(data.test.masks, test_probabilities, threshold)
    val = segmentation_metrics(data.val.masks, val_probabilities, threshold)
    per_class = per_class_segmentation(
        data.test.masks, test_probabilities, [r.label for r in data.test.records], threshold
    )
    result = {
        **{f"test_{k}": v for k, v in test.items()},
        "val_defect_iou": val["defect_iou"],
        "threshold": threshold,
        "threshold_tuned": tune_threshold,
        "best_iteration": best_iteration,
        "train_seconds": round(train_seconds, 1),
        "train_patches": len(data.train),
        "per_class_iou": per_class["iou"],
        "per_class_recall": per_class["recall"],
        "processes": group.world_size,
        "final_weights_sha256": final,
    }
    checkpoint = Checkpoint(
        task="segmenter",
        spec=model.spec.to_dict(),
        state_dict={k: v.cpu().contiguous() for k, v in model.state_dict().items()},
        threshold=threshold,
        geometry=context.get("geometry", {}),
        data_fingerprint=context.get("data_fingerprint", ""),
        class_names=["good", "defect"],
        metrics={k: float(v) for k, v in result.items() if isinstance(v, int | float)},
        name=context.get("name", "segmenter"),
    )
    save_checkpoint(out_dir / CHECKPOINT_NAME, checkpoint)
    plot_curves(out_dir / "metrics.jsonl", out_dir / "curves.png", title=f"segmenter ({context.get('name', '')})")
    return result
