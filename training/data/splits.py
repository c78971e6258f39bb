"""Train / validation / test splits by group, never by image or patch.

Pure functions on group ids and their class labels. The test split is fixed by
``split_seed`` (or by the split the source declared); the validation split is drawn from
the remaining groups by ``val_seed`` and can be re-drawn per experiment repeat without
touching test, as the thesis did.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping

import numpy as np

TRAIN, VAL, TEST = "train", "val", "test"


def group_labels(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Group -> its most common image label (ties broken by name), for stratification."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for group, label in pairs:
        counts[group][label] += 1
    return {group: min(c.items(), key=lambda item: (-item[1], item[0]))[0] for group, c in counts.items()}


def _stratified_pick(groups: Mapping[str, str], fraction: float, seed: int) -> set[str]:
    """Groups picked per label stratum: round(fraction * n), at least 1 where n >= 2."""
    by_label: dict[str, list[str]] = defaultdict(list)
    for group, label in groups.items():
        by_label[label].append(group)
    rng = np.random.default_rng(seed)
    picked: set[str] = set()
    for label in sorted(by_label):
        members = sorted(by_label[label])
        count = int(np.floor(fraction * len(members) + 0.5))
        if fraction > 0 and count == 0 and len(members) >= 2:
            count = 1
        count = min(count, len(members) - 1) if len(members) >= 2 else count
        order = rng.permutation(len(members))
        picked.update(members[i] for i in order[:count])
    return picked


def assign_splits(
    groups: Mapping[str, str],
    test_fraction: float,
    val_fraction: float,
    split_seed: int,
    *,
    val_seed: int,
    declared_test: set[str] | None = None,
) -> dict[str, str]:
    """Split of every group: ``train``, ``val`` or ``test``.

    Args:
        groups: group id -> class label (stratum).
        test_fraction: share of groups per stratum for test (ignored if ``declared_test`` is given).
        val_fraction: share of the remaining groups per stratum for validation (thesis: 0.2).
        split_seed: seed of the test split.
        val_seed: seed of the validation split (re-draw it per experiment repeat).
        declared_test: groups the source declared as test; then no test split is drawn.
    """
    if not 0 <= test_fraction < 1 or not 0 <= val_fraction < 1:
        raise ValueError(f"fractions must be in [0, 1), got test={test_fraction}, val={val_fraction}")
    test = set(declared_test) if declared_test is not None else _stratified_pick(groups, test_fraction, split_seed)
    remaining = {group: label for group, label in groups.items() if group not in test}
    val = _stratified_pick(remaining, val_fraction, val_seed)
    return {group: TEST if group in test else VAL if group in val else TRAIN for group in groups}


def resample_validation(
    split_of_group: Mapping[str, str], groups: Mapping[str, str], val_fraction: float, val_seed: int
) -> dict[str, str]:
    """Re-draw validation among the non-test groups; test stays exactly as it was."""
    test = {group for group, split in split_of_group.items() if split == TEST}
    return assign_splits(groups, 0.0, val_fraction, 0, val_seed=val_seed, declared_test=test)
