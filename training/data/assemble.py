"""One way to assemble a training run's data, for single runs and experiment arms alike.

``pump-train classifier train --augment pasted:N --seed S --val-seed S`` and the ``pasted`` arm
of an experiment at size N and seed S call :func:`assemble_run` with the same arguments and
therefore train on the same patches: the real rows of the split, plus the same pool draws,
in the same order, from one generator seeded by (seed, size).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from training.data.arrays import PatchArrays
from training.data.library import PatchLibrary, SplitRecords, with_healthy
from training.data.pools import draw_from_pool, missing_pool

ASSEMBLY_STREAM = 7  # third entropy word of the run's generator: (seed, size, 7)
TEST_HEALTHY_SEED = 0  # the healthy test rows of a segmentation run never depend on the run's seed


@dataclass(frozen=True)
class RunData:
    """The splits of one run; pool patches, if any, are already inside ``train``."""

    train: PatchArrays
    val: PatchArrays
    test: PatchArrays
    sample_weights: np.ndarray | None = None  # per train patch; None = uniform batches
    drawn: dict[str, int] = field(default_factory=dict)  # pool origin -> patches drawn into train

    @property
    def drawn_total(self) -> int:
        return sum(self.drawn.values())


def weighted_sampling_weights(labels: np.ndarray, target_defect_share: float) -> np.ndarray:
    """Per-patch weights giving defect patches ``target_defect_share`` of the draws."""
    positives = float(labels.sum())
    negatives = float(len(labels) - positives)
    if positives == 0 or negatives == 0 or not 0 < target_defect_share < 1:
        return np.ones(len(labels))
    defect_weight = target_defect_share * negatives / (positives * (1.0 - target_defect_share))
    return np.where(labels > 0, defect_weight, 1.0)


def assemble_run(
    *,
    library: PatchLibrary,
    split: SplitRecords,
    seed: int,
    augment: Mapping[str, int] | None = None,
    pools: Mapping[str, PatchLibrary] | None = None,
    weighted_size: int | None = None,
    healthy_share: float | None = None,
) -> RunData:
    """The train/val/test arrays of one run.

    Args:
        library: the real patch set in memory.
        split: its rows by split (validation possibly re-drawn for this seed).
        seed: the run's seed; with the size it seeds the one generator of every draw here.
        augment: pool origin -> patches drawn from that pool into training (in this order).
        pools: pool origin -> the pool in memory (see :func:`training.data.pools.open_pools`).
        weighted_size: classification: oversample defects to the share they would have after
            adding this many defect patches (the ``weighted`` baseline); None = uniform batches.
        healthy_share: segmentation: defective rows plus this share of healthy ones in every
            split; None = classification (all rows).
    """
    augment, pools = dict(augment or {}), dict(pools or {})
    size = sum(augment.values()) + (weighted_size or 0)
    rng = np.random.default_rng([seed, size, ASSEMBLY_STREAM])
    train_records, val_records, test_records = list(split.train), split.val, split.test
    if healthy_share is not None:
        train_records = with_healthy(train_records, healthy_share, rng)
        val_records = with_healthy(val_records, healthy_share, rng)
        test_records = with_healthy(test_records, healthy_share, np.random.default_rng(TEST_HEALTHY_SEED))
    parts, drawn = [library.select(train_records)], {}
    for origin, count in augment.items():
        if origin not in pools:
            raise missing_pool(origin)
        defective_only = healthy_share is not None and healthy_share <= 0
        records = (
            draw_from_pool(pools[origin].patchset, count, split.train_groups, rng, defective_only=defective_only)
            if count > 0
            else []
        )
        drawn[origin] = len(records)
        if records:
            parts.append(pools[origin].select(records))
    train = PatchArrays.concat(parts) if len(parts) > 1 else parts[0]
    weights = None
    if weighted_size is not None:
        labels = train.labels
        target = (labels.sum() + weighted_size) / (len(labels) + weighted_size)
        weights = weighted_sampling_weights(labels, float(target))
    return RunData(
        train=train,
        val=library.select(val_records),
        test=library.select(test_records),
        sample_weights=weights,
        drawn=drawn,
    )
