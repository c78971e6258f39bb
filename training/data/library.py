"""A patch set in memory and its real rows split by group (test fixed, validation re-drawable).

Real patches are read once into a :class:`PatchLibrary`; each run only selects rows.
Validation is re-drawn per seed by group (test never changes); synthetic rows are not part
of a split — they join the training rows of one run (:func:`training.data.assemble.assemble_run`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.data.arrays import PatchArrays, load_arrays
from training.data.patchset import PatchOrigin, PatchRecord, PatchSet
from training.data.splits import TEST, TRAIN, VAL, group_labels, resample_validation


class PatchLibrary:
    """All rows of a patch set in memory, selectable by row."""

    def __init__(self, patchset: PatchSet, progress: bool = False) -> None:
        self.patchset = patchset
        self.arrays = load_arrays(patchset, patchset.records, progress=progress)
        self.index = {record.id: i for i, record in enumerate(patchset.records)}

    def select(self, records: list[PatchRecord]) -> PatchArrays:
        return self.arrays.subset([self.index[record.id] for record in records])


@dataclass(frozen=True)
class SplitRecords:
    train: list[PatchRecord]
    val: list[PatchRecord]
    test: list[PatchRecord]

    @property
    def train_groups(self) -> set[str]:
        return {record.group for record in self.train}


def split_records(patchset: PatchSet, val_seed: int | None, val_fraction: float = 0.2) -> SplitRecords:
    """Real rows by split; with ``val_seed`` the validation groups are re-drawn (test is kept).

    Line patches a person labelled (``pump-train label``: origin ``line``, split ``train``) join
    the training rows whatever the seed; unlabelled line rows (split ``pool``) are in no split.
    """
    real = [record for record in patchset.records if record.origin == PatchOrigin.REAL.value]
    if not real:
        raise ValueError(f"{patchset.root}: no real patches (is this a synthetic pool?)")
    split_of_group = {record.group: record.split for record in real}
    if val_seed is not None:
        labels = group_labels((record.group, record.label) for record in real)
        split_of_group = resample_validation(split_of_group, labels, val_fraction, val_seed)
    rows = {TRAIN: [], VAL: [], TEST: []}
    for record in real:
        rows[split_of_group[record.group]].append(record)
    rows[TRAIN].extend(labelled_line_records(patchset))
    for name, selected in rows.items():
        if not selected:
            raise ValueError(f"{patchset.root}: the {name} split is empty")
    return SplitRecords(rows[TRAIN], rows[VAL], rows[TEST])


def labelled_line_records(patchset: PatchSet) -> list[PatchRecord]:
    """Line patches a person labelled (``pump-train label``): training rows of every run."""
    return [r for r in patchset.records if r.origin == PatchOrigin.LINE.value and r.split == TRAIN]


def defective(records: list[PatchRecord]) -> list[PatchRecord]:
    return [record for record in records if record.has_defect]


def with_healthy(records: list[PatchRecord], healthy_share: float, rng: np.random.Generator) -> list[PatchRecord]:
    """Defective rows plus healthy ones so that healthy rows make ``healthy_share`` of the result."""
    defects = defective(records)
    if healthy_share <= 0:
        return defects
    healthy = [record for record in records if not record.has_defect]
    wanted = min(len(healthy), int(round(len(defects) * healthy_share / (1.0 - healthy_share))))
    picked = [healthy[i] for i in sorted(rng.choice(len(healthy), size=wanted, replace=False))]
    return defects + picked
