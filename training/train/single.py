"""One training run from the command line: assemble the splits, train, write the run folder.

The run folder (written atomically) explains itself: ``config.json`` (spec, schedule,
augmentation, data fingerprint, versions), ``metrics.jsonl``, ``curves.png``,
``model.pt`` and ``result.json``. The data is assembled by
:func:`training.data.assemble.assemble_run`, the same call an experiment arm makes: with
``--val-seed S`` and ``--seed S`` a single run trains on the patches of the experiment's
arm of seed S.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import torch

from training.data.assemble import RunData, assemble_run
from training.data.library import PatchLibrary, split_records
from training.data.patchset import PatchSet, load_patchset
from training.data.pools import open_pools, parse_augment, parse_pools
from training.models.checkpoint import CHECKPOINT_NAME, Checkpoint, load_checkpoint
from training.models.classifier import ClassifierSpec
from training.models.segmenter import SegmenterSpec
from training.outputs import OutputExistsError, atomic_output_dir, provenance, sha256_file, write_json_atomic
from training.train.classifier import ClassifierData, train_classifier
from training.train.distributed import SINGLE_PROCESS, ProcessGroup
from training.train.schedule import Schedule
from training.train.segmenter import SegmenterData, train_segmenter


def assemble_single_run(
    patchset: PatchSet,
    *,
    seed: int,
    augment: list[str],
    pool: list[str],
    val_seed: int | None = None,
    weighted: bool = False,
    healthy_share: float | None = None,
    progress: bool = False,
) -> RunData:
    """The data of a single run from its flags (``--augment SOURCE:N``, ``--pool ORIGIN=DIR``, …).

    ``weighted`` (``--weighted-sampling``) oversamples real defects to the share the
    ``--augment`` patches would give instead of adding them, as the experiment's ``weighted``
    arm does; no pool is read then.
    """
    counts = parse_augment(augment)
    pools = {} if weighted else open_pools(counts, parse_pools(pool), progress)
    split = split_records(patchset, val_seed)
    return assemble_run(
        library=PatchLibrary(patchset, progress),
        split=split,
        seed=seed,
        augment={} if weighted else counts,
        pools=pools,
        weighted_size=sum(counts.values()) if weighted else None,
        healthy_share=healthy_share,
    )


def _context(patchset: PatchSet, name: str) -> dict:
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


@dataclass(frozen=True)
class ParentRun:
    """The run a fine-tune starts from (``--init-from RUN``): its checkpoint and where it lives."""

    path: Path
    checkpoint: Checkpoint
    sha256: str

    def record(self) -> dict:
        """What the new run's config.json and checkpoint say about it."""
        return {
            "run": str(self.path.resolve()),
            "model_sha256": self.sha256,
            "name": self.checkpoint.name,
            "metrics": dict(self.checkpoint.metrics),
        }


def load_parent_run(path: Path, task: str, patch_px: int) -> ParentRun:
    """``--init-from RUN``: a run folder (or its model.pt) of the same task and patch size."""
    path = Path(path)
    file = path / CHECKPOINT_NAME if path.is_dir() else path
    checkpoint = load_checkpoint(file)
    if checkpoint.task != task:
        raise ValueError(f"--init-from {path}: a {checkpoint.task} run; a {task} fine-tune needs a {task} run")
    parent_px = int(checkpoint.geometry.get("patch_px") or checkpoint.spec.get("input_px") or patch_px)
    if parent_px != patch_px:
        raise ValueError(f"--init-from {path}: trained on {parent_px} px patches; these patches are {patch_px} px")
    return ParentRun(path=path, checkpoint=checkpoint, sha256=sha256_file(file))


def _refuse_existing(out: Path) -> None:
    """Every rank checks before training, so a taken run folder stops all of them at once."""
    if Path(out).exists():
        raise OutputExistsError(f"{out} already exists; choose a new run folder")


def train_classifier_command(
    *,
    patches_dir: Path,
    out: Path,
    spec: ClassifierSpec,
    schedule: Schedule,
    augment: list[str] = (),
    pool: list[str] = (),
    weighted: bool = False,
    init_weights: Path | None = None,
    init_from: ParentRun | None = None,
    val_seed: int | None = None,
    progress: bool = True,
    group: ProcessGroup = SINGLE_PROCESS,
) -> dict:
    """``pump-train classifier train``: one classifier run folder; returns its test metrics.

    ``init_from``: fine-tune the parent run's model (same spec, all weights). Under torchrun
    (``group``) only rank 0 writes the run folder and returns the metrics.
    """
    if init_from is not None and init_weights is not None:
        raise ValueError("--init-from RUN and --init-weights FILE exclude each other")
    _refuse_existing(out)
    patchset = load_patchset(patches_dir)
    run = assemble_single_run(
        patchset,
        seed=schedule.seed,
        augment=list(augment),
        pool=list(pool),
        val_seed=val_seed,
        weighted=weighted,
        progress=progress,
    )
    data = ClassifierData(run.train, run.val, run.test, run.sample_weights)
    init_state = (
        init_from.checkpoint.state_dict if init_from else (load_init_weights(init_weights) if init_weights else None)
    )
    train = functools.partial(
        train_classifier,
        data,
        spec,
        schedule,
        context=_context(patchset, "classifier"),
        progress=progress,
        init_state=init_state,
        init_strict=init_from is not None,
        group=group,
    )
    if not group.is_main:
        return train(None)
    with atomic_output_dir(out) as tmp:
        config = {
            "spec": spec.to_dict(),
            "schedule": schedule.to_dict(),
            "augment": list(augment),
            "pools": list(pool),
            "drawn": run.drawn,
            "weighted_sampling": weighted,
            "val_seed": val_seed,
            "init_weights": str(init_weights) if init_weights else None,
            "init_from": init_from.record() if init_from else None,
            "processes": group.world_size,
        }
        write_json_atomic(
            tmp / "config.json",
            provenance("classifier train", config, schedule.seed, inputs={"patches": str(Path(patches_dir).resolve())}),
        )
        result = train(tmp)
        write_json_atomic(tmp / "result.json", result)
    return result


def train_segmenter_command(
    *,
    patches_dir: Path,
    out: Path,
    spec: SegmenterSpec,
    schedule: Schedule,
    augment: list[str] = (),
    pool: list[str] = (),
    healthy_share: float = 0.0,
    threshold: float = 0.9,
    tune_threshold: bool = False,
    init_from: ParentRun | None = None,
    val_seed: int | None = None,
    progress: bool = True,
    group: ProcessGroup = SINGLE_PROCESS,
) -> dict:
    """``pump-train segmenter train``: one segmenter run folder; returns its test metrics (as the classifier's)."""
    _refuse_existing(out)
    patchset = load_patchset(patches_dir)
    run = assemble_single_run(
        patchset,
        seed=schedule.seed,
        augment=list(augment),
        pool=list(pool),
        val_seed=val_seed,
        healthy_share=healthy_share,
        progress=progress,
    )
    data = SegmenterData(run.train, run.val, run.test)
    train = functools.partial(
        train_segmenter,
        data,
        spec,
        schedule,
        context=_context(patchset, "segmenter"),
        threshold=threshold,
        tune_threshold=tune_threshold,
        progress=progress,
        init_state=init_from.checkpoint.state_dict if init_from else None,
        group=group,
    )
    if not group.is_main:
        return train(None)
    with atomic_output_dir(out) as tmp:
        config = {
            "spec": spec.to_dict(),
            "schedule": schedule.to_dict(),
            "augment": list(augment),
            "pools": list(pool),
            "drawn": run.drawn,
            "healthy_share": healthy_share,
            "threshold": threshold,
            "tune_threshold": tune_threshold,
            "val_seed": val_seed,
            "init_from": init_from.record() if init_from else None,
            "processes": group.world_size,
        }
        write_json_atomic(
            tmp / "config.json",
            provenance("segmenter train", config, schedule.seed, inputs={"patches": str(Path(patches_dir).resolve())}),
        )
        result = train(tmp)
        write_json_atomic(tmp / "result.json", result)
    return result
