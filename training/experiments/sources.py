"""Methods (how a run's training data is made) and the synthetic pools they draw from.

A method names an augmentation *origin* (``pasted``, later ``gan``, ``semgan``) and/or
weighted sampling. Pools are patch sets of that origin passed as ``--pool ORIGIN=DIR``;
the GAN issue only registers new methods here. Synthetic patches are drawn into the
training split only, and only those whose destination and source groups are both in
this run's training groups (no leakage into a re-drawn validation split).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.data.patchset import PatchRecord, PatchSet, load_patchset


@dataclass(frozen=True)
class Method:
    key: str
    description: str
    augment_origin: str | None = None  # draw --augment-size patches from this pool
    weighted: bool = False  # oversample real defects to the share the pool would give


METHODS: dict[str, Method] = {
    method.key: method
    for method in (
        Method("baseline", "real training patches, uniform batches"),
        Method("weighted", "real patches; defects oversampled to the share after adding the pool", weighted=True),
        Method("pasted", "real + defect-pasted patches (thesis §3.2.1)", augment_origin="pasted"),
        Method("gan", "real + StyleGAN2-ADA patches", augment_origin="gan"),
        Method("semgan", "real + SemanticGAN image/mask pairs", augment_origin="semgan"),
    )
}


class MissingPoolError(ValueError):
    """A method needs a synthetic pool that was not given or does not exist."""


def get_method(key: str) -> Method:
    if key not in METHODS:
        raise ValueError(f"unknown method {key!r}; choose from {sorted(METHODS)}")
    return METHODS[key]


def parse_pools(values: list[str]) -> dict[str, Path]:
    """``ORIGIN=DIR`` flags -> {origin: path}."""
    pools: dict[str, Path] = {}
    for value in values:
        origin, sep, path = value.partition("=")
        if not sep or not origin or not path:
            raise ValueError(f"--pool {value!r}: expected ORIGIN=DIR, e.g. pasted=data/pasted")
        pools[origin] = Path(path)
    return pools


def parse_augment(values: list[str]) -> dict[str, int]:
    """``SOURCE:N`` flags -> {origin: count}."""
    counts: dict[str, int] = {}
    for value in values:
        origin, sep, count = value.partition(":")
        if not sep or not count.isdigit():
            raise ValueError(f"--augment {value!r}: expected SOURCE:N, e.g. pasted:2000")
        counts[origin] = int(count)
    return counts


def open_pool(origin: str, pools: dict[str, Path]) -> PatchSet:
    """The pool patch set of ``origin``; a missing one is a clear error naming what to pass."""
    if origin not in pools:
        raise MissingPoolError(
            f"method needs a synthetic pool of origin {origin!r}: pass --pool {origin}=DIR "
            f"(pasted pools come from `pump-train paste`; GAN pools from the GAN commands)"
        )
    path = pools[origin]
    if not (path / "patchset.json").is_file():
        raise MissingPoolError(f"pool {origin!r} at {path} does not exist or is not a patch set")
    pool = load_patchset(path)
    origins = {record.origin for record in pool.records}
    if origins != {origin}:
        raise MissingPoolError(f"pool {path} holds origins {sorted(origins)}, expected only {origin!r}")
    return pool


def draw_from_pool(pool: PatchSet, count: int, train_groups: set[str], rng: np.random.Generator) -> list[PatchRecord]:
    """Up to ``count`` pool rows whose groups (and source groups) are all training groups."""
    usable = [
        record
        for record in pool.records
        if (not record.group or record.group in train_groups)
        and (not record.source_group or record.source_group in train_groups)
    ]
    if count >= len(usable):
        return usable
    return [usable[i] for i in sorted(rng.choice(len(usable), size=count, replace=False))]
