"""Multi-process training through torch.distributed: 2 CPU processes with gloo, and the 'auto' GPU-count rules."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from training.gan.families import auto_batch_for_gpus, get_family
from training.gan.loop import LoopOptions, ProcessGroup, train_gan

from .conftest import TINY_TEST
from .test_loop import blobs

FAMILY = get_family("stylegan2")


def _worker(rank: int, world: int, tmp: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/rendezvous", rank=rank, world_size=world)
    try:
        run_dir = Path(tmp) / f"run-rank{rank}"  # one folder each, so that a stray write by rank 1 shows
        run_dir.mkdir()
        ada = {"ada_interval": 1, "ada_kimg": 0.05, "ada_target": -1.5}  # below any r_t: p rises every step
        config = FAMILY.config("tiny", {**TINY_TEST, "batch_size": 2, **ada})
        options = LoopOptions(kimg=0.024, snapshot_kimg=1.0, tick_kimg=0.008, grid_size=2, seed=5, progress=False)
        trained = train_gan(
            family=FAMILY,
            config=config,
            images=blobs(),
            run_dir=run_dir,
            options=options,
            group=ProcessGroup(rank=rank, world_size=world),
        )
        weights = {name: net.state_dict() for name, net in trained.networks.items()}
        torch.save({**weights, "p": trained.augment_p, "steps": trained.steps}, Path(tmp) / f"held-{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_hold_identical_weights_and_only_rank_0_writes(tmp_path: Path):
    mp.spawn(_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"held-{rank}.pt", weights_only=True) for rank in (0, 1))
    assert r0["steps"] == r1["steps"] == 6, "2 processes x batch 2 = 4 images a step: 6 steps to 0.024 kimg"
    assert r0["p"] == r1["p"] == pytest.approx(6 * 4 / 50), "p moves by the images of both processes (ada_kimg 0.05)"
    for net in ("G", "D", "G_ema"):
        for name, tensor in r0[net].items():
            torch.testing.assert_close(r1[net][name], tensor, rtol=0, atol=0, msg=f"{net}.{name}")
    assert sorted(p.name for p in (tmp_path / "run-rank0").iterdir()) == ["checkpoints", "grids", "stats.jsonl"]
    assert list((tmp_path / "run-rank1").iterdir()) == [], "rank 1 wrote nothing"


@pytest.mark.parametrize(
    ("gpus", "batch", "gamma", "ema_kimg"), [(1, 32, 0.1024, 10.0), (2, 32, 0.0512, 20.0), (4, 16, 0.0512, 20.0)]
)
def test_the_paper_preset_follows_the_auto_rules_for_the_gpu_count(gpus, batch, gamma, ema_kimg):
    cfg = FAMILY.for_gpus(FAMILY.config("paper"), gpus)
    assert (cfg.batch_size, cfg.r1_gamma, cfg.ema_kimg) == (batch, pytest.approx(gamma), pytest.approx(ema_kimg))
    assert auto_batch_for_gpus(32, gpus) == min(64, 32 * gpus)
