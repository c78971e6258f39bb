"""Multi-process training through torch.distributed: 2 CPU processes with gloo, and the 'auto' GPU-count rules."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from training.gan.families import auto_batch_for_gpus, get_family
from training.gan.loop import LoopOptions, train_gan
from training.train.distributed import ProcessGroup

from .conftest import TINY_TEST
from .test_loop import blobs

FAMILY = get_family("stylegan2")


def _family_setup(key: str) -> tuple:
    """(family, its tiny test overrides, its real data) for ``key``."""
    if key == "semantic":
        from .test_semantic import paired_data

        pinned = {
            "sem_channels": 8,
            "sem_channels_max": 16,
            "ld_weight": 1.0,
            "ld_real_mean": [0.1],
            "ld_real_std": [0.05],
        }
        return get_family(key), pinned, paired_data()
    return get_family(key), {}, blobs()


def _worker(rank: int, world: int, tmp: str, key: str = "stylegan2") -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/rendezvous", rank=rank, world_size=world)
    try:
        run_dir = Path(tmp) / f"run-rank{rank}"  # one folder each, so that a stray write by rank 1 shows
        run_dir.mkdir()
        ada = {"ada_interval": 1, "ada_kimg": 0.05, "ada_target": -1.5}  # below any r_t: p rises every step
        family, extra, data = _family_setup(key)
        config = family.config("tiny", {**TINY_TEST, "batch_size": 2, **ada, **extra})
        options = LoopOptions(kimg=0.024, snapshot_kimg=1.0, tick_kimg=0.008, grid_size=2, seed=5, progress=False)
        trained = train_gan(
            family=family,
            config=config,
            images=data,
            run_dir=run_dir,
            options=options,
            group=ProcessGroup(rank=rank, world_size=world),
        )
        weights = {name: net.state_dict() for name, net in trained.networks.items()}
        torch.save({**weights, "p": trained.augment_p, "steps": trained.steps}, Path(tmp) / f"held-{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("key", ["stylegan2", "semantic"])
def test_two_gloo_processes_hold_identical_weights_and_only_rank_0_writes(tmp_path: Path, key: str):
    mp.spawn(_worker, args=(2, str(tmp_path), key), nprocs=2, join=True)
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
