"""Training the patch classifier (thesis §3.3.2): iteration-based, best validation F1 kept.

Each iteration draws one random batch (uniformly, or with per-patch weights for the
"weighted sampling" baseline), augments it (flips, 90° turns, brightness/contrast) and
takes an AdamW step on BCE with a one-cycle learning rate (optionally with a bfloat16
forward pass, ``Schedule.precision``; with ``Schedule.mask_loss`` also on where the masks say
the defect is, :class:`DefectCellLoss`). Every ``val_every``
iterations the model is scored on validation; the weights with the best (F1 at 0.5,
then AUROC) are kept. At the end the decision threshold is tuned on validation and the
test split is scored at 0.5 and at that threshold.
"""

from __future__ import annotations

import copy
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from training.data.arrays import PatchArrays, defect_targets
from training.metrics import classification_metrics, per_class_recall, roc_auc, tune_threshold
from training.models.checkpoint import CHECKPOINT_NAME, Checkpoint, save_checkpoint
from training.models.classifier import ClassifierSpec, create_classifier
from training.train.augment import augment_batch
from training.train.curves import plot_curves
from training.train.distributed import SINGLE_PROCESS, ProcessGroup, shard, sync_buffers, wrap_for_processes
from training.train.runlog import RunLog
from training.train.runtime import Runtime, predict, start_runtime, weights_sha256
from training.train.schedule import Schedule

TRAIN_AUROC_SAMPLE = 3000


@dataclass(frozen=True)
class ClassifierData:
    """The splits of one run; synthetic patches, if any, are already inside ``train``."""

    train: PatchArrays
    val: PatchArrays
    test: PatchArrays
    sample_weights: np.ndarray | None = None  # per train patch; None = uniform


MIN_POSITIVES_PER_BATCH = 4.0


def few_positives_warning(defect_share: float, batch_size: int) -> str | None:
    """A hint when a batch holds too few defect patches for the baseline to learn in a short schedule.

    Measured on the synthetic pump set (4.4 % defective): batch 64 (~3 defects per batch)
    had not learned in 2500 iterations, batch 192 at width 0.25 (~8, same step time) had.
    """
    expected = defect_share * batch_size
    if defect_share <= 0 or expected >= MIN_POSITIVES_PER_BATCH:
        return None
    return (
        f"training split is {defect_share:.1%} defective: a batch of {batch_size} holds ~{expected:.1f} defect "
        f"patches, too few to learn from in a short schedule; raise --batch-size (e.g. --width 0.25 "
        f"--batch-size 192 keeps the step time of the cpu preset) or use --weighted-sampling"
    )


def load_matching(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> int:
    """Load the entries whose name (with or without a ``backbone.`` prefix) and shape match.

    A local torchvision ResNet-18 file (3-channel stem, 1000 classes) thereby seeds every
    layer but the stem and the head. Raises if nothing matches.
    """
    own = model.state_dict()
    matched = {}
    for key, value in state.items():
        for candidate in (key, f"backbone.{key}"):
            if candidate in own and own[candidate].shape == value.shape:
                matched[candidate] = value
    if not matched:
        raise ValueError("--init-weights: no tensor matches the model's names and shapes")
    model.load_state_dict(matched, strict=False)
    return len(matched)


class DefectCellLoss:
    """Training-only deep supervision (``Schedule.mask_loss``): which cells of the last stage hold defect pixels.

    A 1x1 convolution on the backbone's last stage (4x4 cells at 128 px) is trained, with BCE,
    on the max of the defect mask over each cell. The patch label says only *that* a patch has
    a defect; the cells say *where*, so the shared features learn the defect rather than its
    surroundings. The head lives here, not in the exported module: the checkpoint and the
    ONNX graph are the plain classifier.
    """

    def __init__(self, model: torch.nn.Module, runtime: Runtime) -> None:
        stage = model.backbone.layer4
        self._features: torch.Tensor | None = None
        self._hook = stage.register_forward_hook(self._keep)
        self.head = runtime.place(nn.Conv2d(model.backbone.fc.in_features, 1, kernel_size=1))
        self.device = runtime.device

    def _keep(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        self._features = output

    def cells(self) -> torch.Tensor:
        """The head's cell logits for the batch of the last forward pass."""
        return self.head(self._features)

    def __call__(self, masks: np.ndarray, cells: torch.Tensor | None = None) -> torch.Tensor:
        """The loss for the batch of the last forward pass (call it inside the same autocast)."""
        logits = (self.cells() if cells is None else cells).float()
        targets = torch.from_numpy(defect_targets(masks))[:, None].to(self.device)
        return F.binary_cross_entropy_with_logits(logits, F.adaptive_max_pool2d(targets, logits.shape[-2:]))

    def close(self) -> None:
        self._hook.remove()
        self._features = None


class _TrainingStep(nn.Module):
    """What a training step runs, as one module (for DistributedDataParallel): the classifier and the cell head."""

    def __init__(self, model: nn.Module, cell_loss: DefectCellLoss | None) -> None:
        super().__init__()
        self.model = model
        self.head = cell_loss.head if cell_loss else None
        self.cell_loss = cell_loss

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        logits = self.model(images)[:, 0]
        return logits, (self.cell_loss.cells() if self.cell_loss else None)


def _scores(model: torch.nn.Module, arrays: PatchArrays, device: torch.device) -> np.ndarray:
    return predict(model, arrays.images, device)[:, 0]


def train_classifier(
    data: ClassifierData,
    spec: ClassifierSpec,
    schedule: Schedule,
    out_dir: Path | None,
    *,
    context: dict | None = None,
    progress: bool = True,
    init_state: dict[str, torch.Tensor] | None = None,
    init_strict: bool = False,
    group: ProcessGroup = SINGLE_PROCESS,
) -> dict:
    """Train, keep the best validation weights, score test; writes model.pt, metrics.jsonl, curves.png.

    ``context`` carries what the checkpoint records besides the weights: ``geometry``,
    ``data_fingerprint`` and the run's ``name``. ``init_state``: start from these weights
    (``init_strict``: all of them, a fine-tune of the same model, whose own validation score is
    the one to beat; else the tensors that match, :func:`load_matching`).

    With several processes (``group``, torchrun) every rank draws the same global batch and
    trains on its shard under DistributedDataParallel; only rank 0 validates and writes
    (``out_dir`` is ignored elsewhere) and returns the result; the other ranks return
    ``rank`` and ``final_weights_sha256`` (equal on every rank).
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
    model = create_classifier(spec)
    if init_state is not None:
        if init_strict:
            model.load_state_dict(init_state)
        else:
            load_matching(model, init_state)
    model = runtime.place(model)
    cell_loss = DefectCellLoss(model, runtime) if schedule.mask_loss > 0 else None
    step = wrap_for_processes(_TrainingStep(model, cell_loss), group, device)
    optimizer = torch.optim.AdamW(step.parameters(), lr=schedule.lr, weight_decay=schedule.weight_decay)
    lr_schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=schedule.lr, total_steps=schedule.iterations, pct_start=0.15
    )
    labels = data.train.labels
    probabilities = None
    if data.sample_weights is not None:
        probabilities = data.sample_weights / data.sample_weights.sum()
    sampled_share = float(labels.mean() if probabilities is None else probabilities[labels > 0].sum())
    hint = few_positives_warning(sampled_share, schedule.batch_size)
    if hint:
        warnings.warn(hint, RuntimeWarning, stacklevel=2)
    pos_weight = torch.tensor(schedule.pos_weight, device=device)
    log = RunLog(out_dir / "metrics.jsonl") if main else None
    val_labels = data.val.labels
    best: tuple[float, float] = (-1.0, -1.0)
    best_state, best_iteration, losses = None, 0, []

    def validate(iteration: int) -> dict:
        nonlocal best, best_state, best_iteration
        metrics = classification_metrics(val_labels, _scores(model, data.val, device), 0.5)
        key = (metrics["f1"], 0.0 if np.isnan(metrics["auroc"]) else metrics["auroc"])
        if key > best:
            best, best_iteration, best_state = key, iteration, copy.deepcopy(model.state_dict())
        return metrics

    if main and init_state is not None and init_strict:
        validate(0)  # a fine-tune keeps its parent's weights unless it beats them on validation
    started = time.perf_counter()
    bar = tqdm(range(1, schedule.iterations + 1), desc="classifier", unit="it", disable=not (progress and main))
    for iteration in bar:
        step.train()
        batch = rng.choice(len(labels), size=schedule.batch_size, replace=True, p=probabilities)
        images, masks = augment_batch(
            data.train.images[batch],
            data.train.masks[batch] if cell_loss else None,
            rng,
            geometric=schedule.geometric_aug,
            photometric=schedule.photometric_aug,
        )
        with runtime.autocast():
            logits, cells = step(runtime.tensor(images[part]))
            loss = F.binary_cross_entropy_with_logits(
                logits.float(), torch.from_numpy(labels[batch][part]).to(device), pos_weight=pos_weight
            )
            if cell_loss:
                loss = loss + schedule.mask_loss * cell_loss(masks[part], cells)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        lr_schedule.step()
        losses.append(loss.item())
        if main and (iteration % schedule.val_every == 0 or iteration == schedule.iterations):
            metrics = validate(iteration)
            log.report("train/loss", float(np.mean(losses[-schedule.val_every :])))
            for name in ("f1", "auroc", "pr_auc", "precision", "recall"):
                log.report(f"val/{name}", metrics[name])
            log.flush(iteration=iteration)
            bar.set_postfix(
                loss=f"{np.mean(losses[-50:]):.3f}", val_f1=f"{metrics['f1']:.3f}", val_auroc=f"{metrics['auroc']:.3f}"
            )
    train_seconds = time.perf_counter() - started
    if cell_loss:
        cell_loss.close()
    sync_buffers(model, group)
    final = weights_sha256(model)
    if not main:
        return {"rank": group.rank, "final_weights_sha256": final}
    model.load_state_dict(best_state)
    result = _evaluate(
        model,
        data,
        spec=spec,
        runtime=runtime,
        out_dir=out_dir,
        context=context,
        best_iteration=best_iteration,
        train_seconds=train_seconds,
    )
    return {**result, "processes": group.world_size, "final_weights_sha256": final}


def _evaluate(
    model: torch.nn.Module,
    data: ClassifierData,
    *,
    spec: ClassifierSpec,
    runtime: Runtime,
    out_dir: Path,
    context: dict,
    best_iteration: int,
    train_seconds: float,
) -> dict:
    """Tune the threshold on validation, score test, save the checkpoint and the curves."""
    device = runtime.device
    val_scores = _scores(model, data.val, device)
    threshold, _ = tune_threshold(data.val.labels, val_scores)
    test_scores = _scores(model, data.test, device)
    sample = runtime.rng.choice(len(data.train), size=min(TRAIN_AUROC_SAMPLE, len(data.train)), replace=False)
    train_auroc = roc_auc(data.train.labels[sample], _scores(model, data.train.subset(sample), device))
    test_labels = data.test.labels
    at_half = classification_metrics(test_labels, test_scores, 0.5)
    tuned = classification_metrics(test_labels, test_scores, threshold)
    val = classification_metrics(data.val.labels, val_scores, 0.5)
    result = {
        **{f"test_{k}": v for k, v in at_half.items()},
        **{f"test_tuned_{k}": tuned[k] for k in ("accuracy", "precision", "recall", "f1")},
        "threshold": float(threshold),
        "val_f1": val["f1"],
        "val_auroc": val["auroc"],
        "train_auroc": train_auroc,
        "best_iteration": best_iteration,
        "train_seconds": round(train_seconds, 1),
        "train_patches": len(data.train),
        "train_defect_share": float(data.train.labels.mean()),
        "per_class_recall": per_class_recall(
            test_labels, test_scores >= 0.5, [record.label for record in data.test.records]
        ),
    }
    checkpoint = Checkpoint(
        task="classifier",
        spec=spec.to_dict(),
        state_dict={k: v.cpu().contiguous() for k, v in model.state_dict().items()},
        threshold=float(threshold),
        geometry=context.get("geometry", {}),
        data_fingerprint=context.get("data_fingerprint", ""),
        class_names=["good", "defect"],
        metrics={k: float(v) for k, v in result.items() if isinstance(v, int | float)},
        name=context.get("name", "classifier"),
    )
    save_checkpoint(out_dir / CHECKPOINT_NAME, checkpoint)
    plot_curves(out_dir / "metrics.jsonl", out_dir / "curves.png", title=f"classifier ({context.get('name', '')})")
    return result
