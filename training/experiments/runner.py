"""Running an experiment: seeds x sizes x methods, resumable, one CSV row per finished run.

Each seed re-draws the validation groups and the synthetic draws; all methods of one
seed share that split (paired comparison). A run's row is appended to ``runs.csv`` as
soon as it finishes, so an interrupted experiment resumes where it stopped.

``workers > 1`` trains that many runs at once in forked processes, splitting the CPU
threads between them: small convolutions scale poorly over threads, so on the team's
2-core machines two single-thread runs side by side train 1.4x (fp32) to 1.8x (bf16) the
patches/s of one two-thread run (benchmarks/train_throughput.py). Forking shares the
loaded patch arrays copy-on-write.
"""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from training.data.assemble import assemble_run
from training.data.library import PatchLibrary, SplitRecords, split_records
from training.data.patchset import load_patchset
from training.data.pools import open_pools
from training.experiments.sources import Method, get_method
from training.models.classifier import ClassifierSpec
from training.models.segmenter import SegmenterSpec
from training.outputs import provenance, write_json_atomic
from training.train.classifier import ClassifierData, train_classifier
from training.train.schedule import Schedule
from training.train.segmenter import SegmenterData, train_segmenter

RUNS_NAME = "runs.csv"
CLASSIFICATION, SEGMENTATION = "classification", "segmentation"


@dataclass(frozen=True)
class ExperimentConfig:
    task: str
    methods: tuple[str, ...]
    seeds: int
    sizes: tuple[int, ...]
    schedule: Schedule
    spec: ClassifierSpec | SegmenterSpec
    val_fraction: float = 0.2
    healthy_share: float = 0.0  # segmentation: share of healthy patches in training (0 = defective only)
    threshold: float = 0.9  # segmentation: pixel threshold
    tune_threshold: bool = False  # segmentation: choose the threshold on validation after training
    pools: dict[str, str] = field(default_factory=dict)
    first_seed: int = 0  # seeds run first_seed .. first_seed + seeds - 1 (spread one experiment over machines)

    def identity(self) -> dict:
        """What must match for runs of an existing OUT to be reused."""
        return {
            "task": self.task,
            "schedule": self.schedule.to_dict(),
            "spec": self.spec.to_dict(),
            "val_fraction": self.val_fraction,
            "healthy_share": self.healthy_share,
            "threshold": self.threshold,
            **({"tune_threshold": True} if self.tune_threshold else {}),  # old experiment folders stay resumable
        }


def run_key(method: str, size: int, seed: int) -> str:
    return f"{method}-n{size}-s{seed}"


def planned_runs(config: ExperimentConfig) -> list[tuple[str, int, int]]:
    """(method, size, seed) triples; the baseline does not depend on the size and runs once per seed."""
    runs = []
    for seed in range(config.first_seed, config.first_seed + config.seeds):
        for size in config.sizes:
            for method in config.methods:
                effective = 0 if method == "baseline" else size
                if (method, effective, seed) not in runs:
                    runs.append((method, effective, seed))
    return runs


def read_runs(out_dir: Path) -> list[dict]:
    path = Path(out_dir) / RUNS_NAME
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _append_run(out_dir: Path, row: dict) -> None:
    rows = read_runs(out_dir) + [{key: str(value) for key, value in row.items()}]
    columns = list(dict.fromkeys(key for r in rows for key in r))
    tmp = out_dir / f".{RUNS_NAME}.tmp-{os.getpid()}"
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, out_dir / RUNS_NAME)


def _flatten(result: dict) -> dict:
    flat = {}
    for key, value in result.items():
        if key == "per_class_iou":
            flat.update({f"iou_{label}": v for label, v in value.items()})
        elif isinstance(value, dict):
            flat.update({f"recall_{label}": v for label, v in value.items()})
        else:
            flat[key] = value
    return flat


def _run(state: _RunState, method: Method, *, size: int, seed: int, progress: bool) -> dict:
    """One arm of one seed: :func:`assemble_run` (the call a single run makes), then train."""
    config = state.config
    key = run_key(method.key, size, seed)
    run = assemble_run(
        library=state.library,
        split=state.splits[seed],
        seed=seed,
        pools=state.pools,
        healthy_share=config.healthy_share if config.task == SEGMENTATION else None,
        **method.assembly(size),
    )
    schedule = config.schedule.model_copy(update={"seed": seed})
    run_dir, context = state.out_dir / "runs" / key, {**state.context, "name": key}
    if config.task == SEGMENTATION:
        data = SegmenterData(run.train, run.val, run.test)
        result = train_segmenter(
            data,
            config.spec,
            schedule,
            run_dir,
            context=context,
            threshold=config.threshold,
            tune_threshold=config.tune_threshold,
            progress=progress,
        )
    else:
        data = ClassifierData(run.train, run.val, run.test, run.sample_weights)
        result = train_classifier(data, config.spec, schedule, run_dir, context=context, progress=progress)
    return {
        "key": key,
        "method": method.key,
        "size": size,
        "seed": seed,
        "synthetic_drawn": run.drawn_total,
        **_flatten(result),
    }


def run_experiment(
    patches_dir: Path, out_dir: Path, config: ExperimentConfig, *, progress: bool = True, workers: int = 1
) -> list[dict]:
    """Run (or resume) every planned run, ``workers`` at a time; returns all rows of runs.csv."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    identity_path = out_dir / "experiment.json"
    if identity_path.is_file():
        saved = json.loads(identity_path.read_text())
        if saved.get("identity") != json.loads(json.dumps(config.identity())):
            raise ValueError(f"{out_dir} holds runs of a different experiment config; choose a new output folder")
    patchset = load_patchset(patches_dir)
    methods = [get_method(key) for key in config.methods]
    pool_paths = {origin: Path(path) for origin, path in config.pools.items()}
    needed = {origin for m in methods for origin in m.assembly(1)["augment"]}
    pools = open_pools(needed, pool_paths, progress)  # fails before any training when a pool is missing
    write_json_atomic(
        identity_path,
        {
            "identity": config.identity(),
            "methods": list(config.methods),
            "seeds": config.seeds,
            "sizes": list(config.sizes),
            "pools": config.pools,
            "patches": str(Path(patches_dir).resolve()),
            "provenance": provenance(
                f"experiment {config.task}",
                config.identity(),
                None,
                inputs={"dataset": patchset.meta.get("dataset", {}).get("fingerprint", "")},
            ),
        },
    )
    done = {row["key"] for row in read_runs(out_dir)}
    library = PatchLibrary(patchset, progress)
    context = {
        "geometry": patchset.meta.get("geometry", {}),
        "data_fingerprint": patchset.meta.get("dataset", {}).get("fingerprint", ""),
    }
    pending = [run for run in planned_runs(config) if run_key(*run) not in done]
    splits = {
        seed: split_records(patchset, val_seed=seed, val_fraction=config.val_fraction)
        for seed in sorted({seed for _, _, seed in pending})
    }
    state = _RunState(config=config, library=library, splits=splits, pools=pools, out_dir=out_dir, context=context)
    if workers <= 1 or len(pending) <= 1:
        for run in pending:
            print(f"run {run_key(*run)}", flush=True)
            _append_run(out_dir, state.run(*run, progress=progress))
    else:
        _run_parallel(state, pending, workers, progress)
    return read_runs(out_dir)


@dataclass(frozen=True)
class _RunState:
    """What every run of one experiment shares (inherited by forked workers, not pickled)."""

    config: ExperimentConfig
    library: PatchLibrary
    splits: dict[int, SplitRecords]
    pools: dict[str, PatchLibrary]
    out_dir: Path
    context: dict

    def run(self, method_key: str, size: int, seed: int, progress: bool) -> dict:
        return _run(self, get_method(method_key), size=size, seed=seed, progress=progress)


_WORKER_STATE: _RunState | None = None
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _init_worker(threads: int) -> None:
    import ctypes
    import signal

    import torch

    # die with the experiment process, so a killed experiment leaves no run training on
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    os.environ["OMP_NUM_THREADS"] = str(threads)  # keeps train_*'s set_threads from taking every core
    torch.set_num_threads(threads)


def _run_in_worker(method_key: str, size: int, seed: int) -> dict:
    assert _WORKER_STATE is not None, "worker started without the experiment's state"
    return _WORKER_STATE.run(method_key, size, seed, progress=False)


def _run_parallel(state: _RunState, pending: list[tuple[str, int, int]], workers: int, progress: bool) -> None:
    """Train ``workers`` runs at once; rows are appended by this process as runs finish."""
    global _WORKER_STATE
    if sys.platform != "linux":
        raise ValueError("--workers > 1 needs Linux (forked workers share the loaded patches)")
    workers = min(workers, len(pending))
    threads = max(1, (os.cpu_count() or 1) // workers)
    _WORKER_STATE = state
    try:
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(threads,)) as pool:
            futures = {pool.submit(_run_in_worker, *run): run_key(*run) for run in pending}
            print(f"{len(pending)} runs, {workers} at a time, {threads} thread(s) each", flush=True)
            bar = tqdm(total=len(pending), desc="runs", unit="run", disable=not progress)
            for future in as_completed(futures):
                row = future.result()  # a failed run stops the experiment; finished rows are kept
                _append_run(state.out_dir, row)
                bar.update(1)
                bar.write(f"done {futures[future]} in {row.get('train_seconds', '?')} s of training")
            bar.close()
    finally:
        _WORKER_STATE = None
