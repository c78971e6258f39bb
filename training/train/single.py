"""One training run from the command line: assemble the splits, train, write the run folder.

The run folder (written atomically) explains itself: ``config.json`` (spec, schedule,
augmentation, data fingerprint, versions), ``metrics.jsonl``, ``curves.png``,
``model.pt`` and ``result.json``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from training.data.arrays import PatchArrays
from training.data.patchset import load_patchset
from training.experiments.data import PatchLibrary, split_records, with_healthy
from training.experiments.sources import draw_from_pool, open_pool, parse_augment, parse_pools
from training.models.checkpoint import load_checkpoint
from training.models.classifier import ClassifierSpec
from training.models.segmenter import SegmenterSpec
from training.outputs import atomic_output_dir, provenance, write_json_atomic
from training.train.classifier import ClassifierData, train_classifier, weighted_sampling_weights
from training.train.schedule import Schedule
from training.train.segmenter import SegmenterData, train_segmenter


def _with_pools(
    train: PatchArrays, augment: list[str], pool: list[str], train_groups: set[str], rng: np.random.Generator
) -> tuple[PatchArrays, dict[str, int]]:
    counts, pools = parse_augment(augment), parse_pools(pool)
    drawn: dict[str, int] = {}
    parts = [train]
    for origin, count in counts.items():
        pool_set = open_pool(origin, pools)
        records = draw_from_pool(pool_set, count, train_groups, rng)
        drawn[origin] = len(records)
        if records:
            parts.append(PatchLibrary(pool_set).select(records))
    return PatchArrays.concat(parts), drawn


def _context(patchset, name: str) -> dict:
    return {
        "geometry": patchset.meta.get("geometry", {}),
        "name": name,
        "data_fingerprint": patchset.meta.get("dataset", {}).get("fingerprint", ""),
    }


def load_init_weights(path: Path) -> dict[str, torch.Tensor]:
    """A local state_dict or checkpoint (loaded with weights_only=True; no downloads)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"--init-weights {path}: file not found")
    try:
        return load_checkpoint(path).state_dict
    except ValueError:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise ValueError(f"--init-weights {path}: expected a state_dict or a checkpoint") from None
        return state


def train_classifier_command(
    patches_dir: Path,
    out: Path,
    spec: ClassifierSpec,
    schedule: Schedule,
    augment: list[str],
    pool: list[str],
    weighted: bool,
    init_weights: Path | None,
    val_seed: int | None,
    progress: bool = True,
) -> dict:
    patchset = load_patchset(patches_dir)
    split = split_records(patchset, val_seed)
    library = PatchLibrary(patchset, progress)
    rng = np.random.default_rng([schedule.seed, 11])
    real_train = library.select(split.train)
    train, drawn = _with_pools(real_train, augment, pool, split.train_groups, rng)
    weights = None
    if weighted:
        added = sum(parse_augment(augment).values())
        labels = real_train.labels
        weights = weighted_sampling_weights(labels, float((labels.sum() + added) / (len(labels) + added)))
    data = ClassifierData(train, library.select(split.val), library.select(split.test), weights)
    with atomic_output_dir(out) as tmp:
        config = {
            "spec": spec.to_dict(),
            "schedule": schedule.to_dict(),
            "augment": augment,
            "pools": pool,
            "drawn": drawn,
            "weighted_sampling": weighted,
            "val_seed": val_seed,
            "init_weights": str(init_weights) if init_weights else None,
        }
        write_json_atomic(
            tmp / "config.json",
            provenance("classifier train", config, schedule.seed, inputs={"patches": str(Path(patches_dir).resolve())}),
        )
        result = train_classifier(
            data,
            spec,
            schedule,
            tmp,
            _context(patchset, "classifier"),
            progress,
            init_state=load_init_weights(init_weights) if init_weights else None,
        )
        write_json_atomic(tmp / "result.json", result)
    return result


def train_segmenter_command(
    patches_dir: Path,
    out: Path,
    spec: SegmenterSpec,
    schedule: Schedule,
    augment: list[str],
    pool: list[str],
    healthy_share: float,
    threshold: float,
    val_seed: int | None,
    progress: bool = True,
) -> dict:
    patchset = load_patchset(patches_dir)
    split = split_records(patchset, val_seed)
    library = PatchLibrary(patchset, progress)
    rng = np.random.default_rng([schedule.seed, 13])
    train, drawn = _with_pools(
        library.select(with_healthy(split.train, healthy_share, rng)), augment, pool, split.train_groups, rng
    )
    data = SegmenterData(
        train,
        library.select(with_healthy(split.val, healthy_share, rng)),
        library.select(with_healthy(split.test, healthy_share, np.random.default_rng(0))),
    )
    with atomic_output_dir(out) as tmp:
        config = {
            "spec": spec.to_dict(),
            "schedule": schedule.to_dict(),
            "augment": augment,
            "pools": pool,
            "drawn": drawn,
            "healthy_share": healthy_share,
            "threshold": threshold,
            "val_seed": val_seed,
        }
        write_json_atomic(
            tmp / "config.json",
            provenance("segmenter train", config, schedule.seed, inputs={"patches": str(Path(patches_dir).resolve())}),
        )
        result = train_segmenter(data, spec, schedule, tmp, _context(patchset, "segmenter"), threshold, progress)
        write_json_atomic(tmp / "result.json", result)
    return result
