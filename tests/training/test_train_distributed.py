"""Classifier and segmenter training under torch.distributed (2 CPU processes, gloo), and fine-tunes (--init-from)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from typer.testing import CliRunner

from training.cli import app
from training.models.checkpoint import load_checkpoint
from training.models.classifier import ClassifierSpec, create_classifier
from training.outputs import sha256_file
from training.train.distributed import ProcessGroup, shard
from training.train.runtime import weights_sha256
from training.train.schedule import Schedule
from training.train.single import load_parent_run, train_classifier_command

TINY = ClassifierSpec(width=0.125, internal_px=32, input_px=32)
# mask_loss on: the training-only cell head must be averaged over the processes too
SCHEDULE = Schedule(iterations=4, val_every=2, batch_size=8, lr=1e-3, threads=1, mask_loss=1.0)


def _classifier_worker(rank: int, world: int, tmp: str, patches: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/rendezvous", rank=rank, world_size=world)
    try:
        result = train_classifier_command(
            patches_dir=Path(patches),
            out=Path(tmp) / "run",
            spec=TINY,
            schedule=SCHEDULE,
            progress=False,
            group=ProcessGroup(rank=rank, world_size=world),
        )
        (Path(tmp) / f"result-{rank}.json").write_text(json.dumps(result, default=float))
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_train_one_classifier_and_only_rank_0_writes(small_patchset, tmp_path: Path):
    tmp_path = tmp_path / "work"  # the patch set lives beside it
    tmp_path.mkdir()
    mp.spawn(_classifier_worker, args=(2, str(tmp_path), str(small_patchset.root)), nprocs=2, join=True)
    r0, r1 = (json.loads((tmp_path / f"result-{rank}.json").read_text()) for rank in (0, 1))
    assert r0["final_weights_sha256"] == r1["final_weights_sha256"], "every rank holds the same weights"
    assert r1 == {"rank": 1, "final_weights_sha256": r1["final_weights_sha256"]}, "rank 1 reports no metrics"
    assert r0["processes"] == 2 and "test_auroc" in r0
    run = tmp_path / "run"
    assert sorted(p.name for p in run.iterdir()) == [
        "config.json",
        "curves.png",
        "metrics.jsonl",
        "model.pt",
        "result.json",
    ]
    assert json.loads((run / "config.json").read_text())["config"]["processes"] == 2
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["iteration"] for line in lines] == [2, 4], "one log, written by rank 0"
    torch.manual_seed(SCHEDULE.seed)
    assert r0["final_weights_sha256"] != weights_sha256(create_classifier(TINY)), "the weights moved"
    written = sorted(p.name for p in tmp_path.iterdir() if p.name != "rendezvous")
    assert written == ["result-0.json", "result-1.json", "run"], "no stray run folder or temp folder of rank 1"


def test_a_global_batch_splits_into_equal_shards():
    assert [shard(8, ProcessGroup(rank, 2)) for rank in (0, 1)] == [slice(0, 4), slice(4, 8)]
    assert shard(8, ProcessGroup()) == slice(0, 8)
    with pytest.raises(ValueError, match="batch size 7 does not split over 2 processes"):
        shard(7, ProcessGroup(0, 2))


@pytest.mark.skipif(shutil.which("torchrun", path=os.path.dirname(sys.executable)) is None, reason="needs torchrun")
def test_torchrun_runs_the_segmenter_command_on_two_cpu_processes(small_patchset, tmp_path: Path):
    tmp_path = tmp_path / "work"  # the patch set lives beside it
    tmp_path.mkdir()
    bin_dir = Path(sys.executable).parent
    command = [
        str(bin_dir / "torchrun"),
        "--standalone",
        "--nproc-per-node",
        "2",
        str(bin_dir / "pump-train"),
        "segmenter",
        "train",
        str(small_patchset.root),
        str(tmp_path / "seg"),
        "--encoder",
        "tu-resnet10t",
        "--iterations",
        "2",
        "--val-every",
        "2",
        "--batch-size",
        "4",
        "--precision",
        "fp32",
        "--quiet",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count('"test_defect_iou"') == 1, "only rank 0 prints the result"
    assert json.loads((tmp_path / "seg" / "result.json").read_text())["processes"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seg"]


def test_a_fine_tune_starts_from_its_parent_and_keeps_it_unless_it_beats_it(small_patchset, tmp_path: Path):
    parent = train_classifier_command(
        patches_dir=small_patchset.root, out=tmp_path / "parent", spec=TINY, schedule=SCHEDULE, progress=False
    )
    patch_px = small_patchset.records[0].patch_px
    frozen = SCHEDULE.model_copy(update={"lr": 1e-12, "iterations": 2})  # learns nothing: the parent must stay
    child = train_classifier_command(
        patches_dir=small_patchset.root,
        out=tmp_path / "child",
        spec=TINY,
        schedule=frozen,
        init_from=load_parent_run(tmp_path / "parent", "classifier", patch_px),
        progress=False,
    )
    assert child["best_iteration"] == 0 and child["val_f1"] == pytest.approx(parent["val_f1"])
    kept, original = load_checkpoint(tmp_path / "child"), load_checkpoint(tmp_path / "parent")
    for name, tensor in original.state_dict.items():
        torch.testing.assert_close(kept.state_dict[name], tensor, rtol=0, atol=0, msg=name)
    recorded = json.loads((tmp_path / "child" / "config.json").read_text())["config"]["init_from"]
    assert recorded["model_sha256"] == sha256_file(tmp_path / "parent" / "model.pt")


def test_init_from_refuses_another_task_other_patches_or_model_flags(small_patchset, tmp_path: Path):
    train_classifier_command(
        patches_dir=small_patchset.root, out=tmp_path / "parent", spec=TINY, schedule=SCHEDULE, progress=False
    )
    with pytest.raises(ValueError, match="a classifier run; a segmenter fine-tune needs a segmenter run"):
        load_parent_run(tmp_path / "parent", "segmenter", 32)
    with pytest.raises(ValueError, match="trained on 32 px patches; these patches are 128 px"):
        load_parent_run(tmp_path / "parent", "classifier", 128)
    args = [
        "classifier",
        "train",
        str(small_patchset.root),
        str(tmp_path / "c"),
        "--init-from",
        str(tmp_path / "parent"),
    ]
    refused = CliRunner().invoke(app, [*args, "--width", "0.5"])
    assert refused.exit_code != 0 and "drop --width" in refused.output
