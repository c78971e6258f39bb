"""Synthetic pools: patch sets of one origin (``pasted``, ``gan``, ``semgan``, ``masked``) that feed training only.

A pool is passed as ``--pool ORIGIN=DIR`` and drawn from with ``--augment ORIGIN:N`` (single
runs) or an experiment method. Only rows whose destination and source groups are both
training groups of the run are drawn, so nothing leaks into a re-drawn validation split.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from training.data.library import PatchLibrary
from training.data.patchset import PatchRecord, PatchSet, load_patchset

# A pool is named by the method that draws it; most names are their rows' origin. SemanticGAN's three
# variants (thesis Tables 3.2-4.4) are three pools of one origin: --pool semgan=A --pool ours=B --pool ours+ld=C.
POOL_ORIGINS: dict[str, str] = {"ours": "semgan", "ours+ld": "semgan"}


def pool_origin(name: str) -> str:
    """The origin the rows of pool ``name`` must have."""
    return POOL_ORIGINS.get(name, name)


class MissingPoolError(ValueError):
    """A run needs a synthetic pool that was not given or does not exist."""


def missing_pool(origin: str) -> MissingPoolError:
    """The error for a pool that was not passed, naming the flag that would pass it."""
    return MissingPoolError(
        f"method needs a synthetic pool of origin {origin!r}: pass --pool {origin}=DIR "
        f"(pasted pools come from `pump-train paste`; GAN pools from the GAN commands)"
    )


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
        raise missing_pool(origin)
    path = pools[origin]
    if not (path / "patchset.json").is_file():
        raise MissingPoolError(f"pool {origin!r} at {path} does not exist or is not a patch set")
    pool = load_patchset(path)
    origins = {record.origin for record in pool.records}
    if origins != {pool_origin(origin)}:
        raise MissingPoolError(f"pool {path} holds origins {sorted(origins)}, expected only {pool_origin(origin)!r}")
    return pool


def open_pools(origins: Iterable[str], pools: dict[str, Path], progress: bool = False) -> dict[str, PatchLibrary]:
    """Every needed pool, read into memory; fails on the first missing one, before any training."""
    return {origin: PatchLibrary(open_pool(origin, pools), progress) for origin in sorted(set(origins))}


def draw_from_pool(
    pool: PatchSet, count: int, train_groups: set[str], rng: np.random.Generator, *, defective_only: bool = False
) -> list[PatchRecord]:
    """Up to ``count`` pool rows whose groups (and source groups) are all training groups.

    ``defective_only``: only rows with a defect (a segmentation run trained on defective patches
    only takes no defect-free SemanticGAN sample either).
    """
    usable = [
        record
        for record in pool.records
        if (not record.group or record.group in train_groups)
        and (not record.source_group or record.source_group in train_groups)
        and (record.has_defect or not defective_only)
    ]
    if count >= len(usable):
        return usable
    return [usable[i] for i in sorted(rng.choice(len(usable), size=count, replace=False))]
