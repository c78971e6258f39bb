"""The family-blind loop: files it writes, resume equality, EMA, ADA p, lazy-reg phases (tiny, CPU)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from training.gan.checkpoint import list_checkpoints, load_checkpoint, load_generator
from training.gan.families import get_family
from training.gan.loop import STATS_NAME, LoopOptions, TrainedGan, train_gan
from training.train.runlog import read_runlog

from .conftest import TINY_TEST

FAMILY = get_family("stylegan2")


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: at 16 px threads only add overhead, and the machine is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(**overrides: object):
    return FAMILY.config("tiny", {**TINY_TEST, **overrides})


def blobs(n: int = 24, size: int = 16, seed: int = 0) -> np.ndarray:
    """Gray patches with one dark blob each: something to fit."""
    rng = np.random.default_rng(seed)
    images = np.full((n, size, size), 170, dtype=np.uint8)
    for image in images:
        x, y = rng.integers(3, size - 3, 2)
        cv2.circle(image, (int(x), int(y)), 2, 40, -1)
    return images


def run(run_dir: Path, kimg: float, resume: bool = False, **overrides: object) -> TrainedGan:
    run_dir.mkdir(exist_ok=True)
    options = LoopOptions(kimg=kimg, snapshot_kimg=1.0, tick_kimg=0.016, grid_size=2, seed=3, progress=False)
    return train_gan(
        family=FAMILY, config=tiny(**overrides), images=blobs(), run_dir=run_dir, options=options, resume=resume
    )


def state(run_dir: Path) -> dict:
    return load_checkpoint(list_checkpoints(run_dir)[-1][1])


def test_a_few_steps_write_a_checkpoint_grids_and_a_jsonl_of_losses_and_progress(tmp_path: Path):
    trained = run(tmp_path, kimg=0.032)
    assert trained.steps == 8 and trained.kimg == pytest.approx(0.032)
    assert [images for images, _ in list_checkpoints(tmp_path)] == [32]
    for name in ("reals.png", "fakes-init.png", "fakes-000000000032.png"):
        grid = cv2.imread(str(tmp_path / "grids" / name), cv2.IMREAD_UNCHANGED)
        assert grid is not None and grid.shape == (32, 32), name
    lines = read_runlog(tmp_path / STATS_NAME)
    assert [line["Progress/kimg"] for line in lines] == pytest.approx([0.016, 0.032])
    assert {"Loss/G/loss", "Loss/D/loss", "Loss/D/reg", "Loss/G/reg", "Progress/augment_p"} <= set(lines[0])
    assert all(np.isfinite(line["Loss/D/loss"]) for line in lines)
    loaded = load_generator(tmp_path)
    assert loaded.family == "stylegan2" and loaded.kimg == pytest.approx(0.032) and not loaded.generator.training
    assert loaded.generator(torch.randn(2, 16)).shape == (2, 1, 16, 16)


def test_resume_continues_exactly_as_a_run_that_never_stopped(tmp_path: Path):
    run(tmp_path / "straight", kimg=0.032)
    run(tmp_path / "halves", kimg=0.016)
    run(tmp_path / "halves", kimg=0.032, resume=True)
    straight, halves = state(tmp_path / "straight"), state(tmp_path / "halves")
    assert straight["progress"] == halves["progress"]
    assert straight["augment"]["p"] == pytest.approx(halves["augment"]["p"])
    for net in ("G", "D", "G_ema"):
        for name, tensor in straight[net].items():
            torch.testing.assert_close(halves[net][name], tensor, rtol=1e-4, atol=1e-5, msg=f"{net}.{name}")
    torch.testing.assert_close(halves["loss"]["pl_mean"], straight["loss"]["pl_mean"])


def test_ema_follows_g_with_its_ramp_up_and_differs_from_it(tmp_path: Path):
    run(tmp_path, kimg=0.032)
    data = state(tmp_path)
    differs = [not torch.equal(data["G"][k], data["G_ema"][k]) for k in data["G"] if k.endswith("weight")]
    assert any(differs), "G_ema is a moving average, not a copy"
    gap = max((data["G"][k] - data["G_ema"][k]).abs().max().item() for k in data["G"])
    assert gap < 0.5, "with the 0.05 ramp-up the EMA stays close to G early in training"


def test_ada_p_rises_in_the_loop_while_rt_stays_above_the_target(tmp_path: Path):
    # a fast controller (p can move 0 -> 1 in 0.05 kimg) and target 0: D scores a tiny fixed set positive at once
    run(tmp_path, kimg=0.064, ada_interval=1, ada_kimg=0.05, ada_target=0.0)
    lines = read_runlog(tmp_path / STATS_NAME)
    ps = [line["Progress/augment_p"] for line in lines]
    assert ps[-1] > 0 and ps[-1] > ps[0], ps
    assert lines[-1]["Progress/rt"] > 0, "D scores the reals positive: r_t above the target pushes p up"


def test_ada_p_falls_in_the_loop_while_rt_stays_below_the_target(tmp_path: Path):
    # the mirror case: target 1.0 is above any r_t a D reaches on mixed signs, so p only falls (floored at 0)
    run(tmp_path, kimg=0.064, ada_interval=1, ada_kimg=0.05, ada_target=1.0, augment_p=0.5)
    lines = read_runlog(tmp_path / STATS_NAME)
    ps = [line["Progress/augment_p"] for line in lines]
    assert ps[-1] < 0.5 and ps == sorted(ps, reverse=True), ps
    assert all(line["Progress/rt"] < 1.0 for line in lines)


def test_lazy_regularisation_runs_every_interval_with_its_gain(tmp_path: Path, monkeypatch):
    calls = []
    build = FAMILY.loss

    def recording_loss(*args, **kwargs):
        loss = build(*args, **kwargs)
        inner = loss.accumulate_gradients

        def accumulate(phase, real_img, gen_z, gain=1.0):
            calls.append((phase, gain))
            return inner(phase, real_img, gen_z, gain)

        loss.accumulate_gradients = accumulate
        return loss

    family = dataclasses.replace(FAMILY, loss=recording_loss)
    config = tiny(g_reg_interval=4, d_reg_interval=8)
    options = LoopOptions(kimg=0.032, snapshot_kimg=1.0, grid_size=1, progress=False)
    train_gan(family=family, config=config, images=blobs(), run_dir=tmp_path, options=options)
    phases = [phase for phase, _ in calls]
    assert phases.count("G_main") == 8 and phases.count("D_main") == 8
    assert phases.count("G_reg") == 2 and phases.count("D_reg") == 1
    assert {gain for phase, gain in calls if phase == "G_reg"} == {4.0}
    assert {gain for phase, gain in calls if phase == "D_reg"} == {8.0}
    assert {gain for phase, gain in calls if phase.endswith("main")} == {1.0}
