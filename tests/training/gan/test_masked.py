"""The mask-guided generator (family ``masked``): the composite, the data it may see, a training step, the pool."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from shared.masks import MASK_DEFECT, MASK_GOOD
from training.cli import app
from training.data.patchset import PatchSet, load_patchset
from training.data.pools import open_pool
from training.data.splits import TRAIN
from training.gan.checkpoint import load_generator
from training.gan.families import get_family
from training.gan.masked.composite import alpha_map, composite, composite_uint8, fill_hole
from training.gan.masked.data import load_masked_data, near_backgrounds
from training.gan.masked.masks import MaskWarp, warp_mask
from training.gan.masked.reals import MaskedBatches
from training.gan.masked.sample import draw_conditions, masked_samples

FAMILY = get_family("masked")
runner = CliRunner()
TINY = {
    "resolution": 32,
    "z_dim": 8,
    "g_channels": [8, 16],
    "d_channels": [8, 16],
    "local_px": 16,
    "batch_size": 4,
    "noise_inputs": True,
    "rec_pool_px": 2,
    "fm_weight": 1.0,
}


def _masks(n: int = 6, size: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), np.uint8)
    for m in masks:
        y, x = rng.integers(2, size - 8, size=2)
        m[y : y + rng.integers(1, 6), x : x + rng.integers(1, 6)] = 1
    return masks


# --- the composite --------------------------------------------------------------------------------


@pytest.mark.parametrize(("dilate", "feather"), [(0, 0), (3, 2), (1, 4)])
def test_the_composite_leaves_every_pixel_outside_the_grown_mask_byte_identical(dilate: int, feather: int):
    rng = np.random.default_rng(1)
    masks = _masks()
    backgrounds = rng.integers(0, 256, size=masks.shape, dtype=np.uint8)
    painted = rng.uniform(0, 255, size=masks.shape).astype(np.float32)
    alpha = alpha_map(torch.from_numpy(masks.astype(np.float32))[:, None], dilate, feather)[:, 0].numpy()
    for mask, background, paint, a in zip(masks, backgrounds, painted, alpha, strict=True):
        out = composite_uint8(background, paint, a)
        # Chebyshev distance to the defect: the grown mask is everything within dilate + feather px
        grown = torch.nn.functional.max_pool2d(
            torch.from_numpy(mask[None, None].astype(np.float32)), 2 * (dilate + feather) + 1, 1, dilate + feather
        )[0, 0].numpy()
        outside = grown == 0
        assert outside.any() and np.array_equal(out[outside], background[outside])
        assert (a[mask > 0] == 1).all(), "the defect itself is painted, not blended"
        inside = (a > 0) & (a < 1)
        if feather:
            assert inside.any(), "a soft border"


def test_the_torch_composite_is_exactly_the_background_where_alpha_is_zero():
    masks = torch.from_numpy(_masks().astype(np.float32))[:, None]
    alpha = alpha_map(masks, 2, 2)
    background, painted = torch.rand_like(masks), torch.rand_like(masks)
    out = composite(background, painted, alpha)
    assert torch.equal(out[alpha == 0], background[alpha == 0])
    assert torch.allclose(out[alpha == 1], painted[alpha == 1])


def test_fill_hole_changes_only_the_hole_and_stays_within_the_surroundings():
    image = torch.linspace(-1, 1, 32).repeat(32, 1)[None, None].repeat(2, 1, 1, 1)
    hole = torch.zeros_like(image)
    hole[:, :, 10:20, 10:20] = 1
    filled = fill_hole(image, hole)
    assert torch.equal(filled[hole == 0], image[hole == 0])
    assert filled[hole == 1].min() >= image.min() and filled[hole == 1].max() <= image.max()
    assert torch.equal(fill_hole(image, torch.zeros_like(image)), image)


def test_a_warped_mask_stays_a_defect_and_fixed_structure_keeps_its_orientation():
    rng = np.random.default_rng(0)
    mask = np.zeros((32, 32), bool)
    mask[4:8, 20:30] = True
    for _ in range(20):
        moved = warp_mask(mask, rng, MaskWarp(dihedral=False, elastic_px=1.0))
        ys, xs = np.nonzero(moved)
        assert moved.any() and ys.mean() < 12 and xs.mean() > 18, "no turn: the defect stays near its place"
    assert not warp_mask(np.zeros((32, 32), bool), rng).any()


def test_fixed_structure_moves_masks_only_to_backgrounds_near_their_tile():
    class Row:
        def __init__(self, x: int, y: int) -> None:
            self.x, self.y = x, y

    defects, goods = [Row(0, 0), Row(500, 500)], [Row(10, 5), Row(480, 520), Row(900, 900)]
    assert [n.tolist() for n in near_backgrounds(defects, goods, fixed=True)] == [[0], [1]]
    assert [n.tolist() for n in near_backgrounds(defects, goods, fixed=False)] == [[0, 1, 2], [0, 1, 2]]


# --- data, a training step --------------------------------------------------------------------------


def test_the_data_holds_training_split_groups_only(small_patchset: PatchSet):
    data = load_masked_data(small_patchset.root, resolution=32)
    assert len(data.pair_records) == len(data.images) > 0 and len(data.background_records) == len(data.backgrounds)
    assert {r.split for r in data.pair_records} == {TRAIN} == {r.split for r in data.background_records}
    assert all(r.has_defect for r in data.pair_records) and not any(r.has_defect for r in data.background_records)
    assert data.masks.max() == 1 and all(m.any() for m in data.masks)
    rng = np.random.default_rng(0)
    for condition in draw_conditions(data, 50, rng):
        assert data.pair_records[condition.donor].split == TRAIN
        assert data.background_records[condition.background].split == TRAIN


def _setup(small_patchset: PatchSet):
    cfg = FAMILY.config("tiny", TINY)
    torch.manual_seed(0)
    G, D = FAMILY.build(cfg)
    loss = FAMILY.loss(cfg, G, D, None)
    data = load_masked_data(small_patchset.root, resolution=32)
    real = MaskedBatches(data.loop_input(), torch.device("cpu"), np.random.default_rng(0)).next(cfg.batch_size)
    return cfg, G, D, loss, real


def _grad(module: torch.nn.Module) -> float:
    return float(sum(p.grad.abs().sum() for p in module.parameters() if p.grad is not None))


def test_each_phase_trains_only_its_network_and_every_term_is_live(small_patchset: PatchSet):
    cfg, G, D, loss, real = _setup(small_patchset)
    z = torch.randn(cfg.batch_size, cfg.z_dim)
    stats = loss.accumulate_gradients("G_main", real, z)
    assert {"Loss/G/adv", "Loss/G/rec", "Loss/G/div", "Loss/G/fm"} <= set(stats)
    assert _grad(G) > 0 and _grad(D) == 0
    G.zero_grad(set_to_none=True)
    for phase in ("D_main", "D_reg"):
        D.zero_grad(set_to_none=True)
        stats = loss.accumulate_gradients(phase, real, z)
        assert _grad(D) > 0 and _grad(G) == 0, phase
    assert stats["Loss/r1_penalty"] > 0, "R1 reaches the real image through both discriminators"
    assert loss.accumulate_gradients("G_reg", real, z) == {}, "no generator regulariser"


def test_the_latent_changes_the_painting_and_nothing_outside_the_mask(small_patchset: PatchSet):
    cfg, G, _, loss, real = _setup(small_patchset)
    background, mask, alpha = loss.conditions(real, cfg.batch_size)
    with torch.no_grad():
        first = composite(
            background, loss.paint(background, mask, alpha, torch.randn(cfg.batch_size, cfg.z_dim)), alpha
        )
        second = composite(
            background, loss.paint(background, mask, alpha, torch.randn(cfg.batch_size, cfg.z_dim)), alpha
        )
    assert torch.equal(first[alpha == 0], second[alpha == 0])
    assert (first - second).abs()[alpha > 0].max() > 0


def test_noise_paints_texture_inside_the_mask_and_the_reconstruction_stays_deterministic(
    small_patchset: PatchSet,
):
    cfg, G, _, loss, real = _setup(small_patchset)
    stats = loss.accumulate_gradients("G_main", real, torch.randn(cfg.batch_size, cfg.z_dim))
    strengths = [block.noise_strength for block in G.up]
    assert stats["Loss/G/rec"] > 0 and all(s.grad is not None and s.grad.abs().sum() > 0 for s in strengths)
    with torch.no_grad():
        for s in strengths:
            s.fill_(0.5)
        background, mask, alpha = loss.conditions(real, cfg.batch_size)
        z = torch.randn(cfg.batch_size, cfg.z_dim)
        first, second = (composite(background, loss.paint(background, mask, alpha, z), alpha) for _ in range(2))
        assert torch.equal(first[alpha == 0], second[alpha == 0])
        assert (first - second).abs()[alpha > 0].max() > 0, "same z, new noise: another texture"
        quiet = [loss.paint(background, mask, alpha, z, noisy=False) for _ in range(2)]
        assert torch.equal(*quiet), "the z = 0 reconstruction sees no noise"


def test_the_pooled_reconstruction_forgives_texture_but_not_brightness(small_patchset: PatchSet):
    cfg, G, D, _, real = _setup(small_patchset)
    alpha = alpha_map(real["mask"], cfg.dilate_px, cfg.feather_px)
    target = real["image"]
    checker = (torch.arange(32)[:, None] + torch.arange(32)[None, :]).remainder(2).float() * 0.4 - 0.2
    textured, brighter = target + checker, target + 0.2
    per_pixel = FAMILY.loss(FAMILY.config("tiny", {**TINY, "rec_pool_px": 1}), G, D, None).reconstruction
    pooled = FAMILY.loss(FAMILY.config("tiny", {**TINY, "rec_pool_px": 2}), G, D, None).reconstruction
    assert float(per_pixel(textured, target, alpha)) == pytest.approx(float(per_pixel(brighter, target, alpha)))
    assert float(pooled(textured, target, alpha)) < 0.5 * float(pooled(brighter, target, alpha)), (
        "on 2 x 2 means a texture costs little, a brightness shift all"
    )


def test_feature_matching_is_zero_for_the_real_pair_and_grows_with_a_changed_defect(small_patchset: PatchSet):
    cfg, _, _, loss, real = _setup(small_patchset)
    paired = cfg.batch_size - loss.unpaired(cfg.batch_size)

    def matching(image: torch.Tensor) -> float:
        taps: list[torch.Tensor] = []
        with torch.no_grad():
            loss.run_D(image, real["mask"][:paired], taps)
            return float(loss.feature_matching(taps, real, paired))

    assert matching(real["image"][:paired]) == 0.0
    alpha = alpha_map(real["mask"][:paired], cfg.dilate_px, cfg.feather_px)
    small, large = (real["image"][:paired] + shift * alpha for shift in (0.1, 0.5))
    assert 0 < matching(small) < matching(large)


# --- the command, the pool, the eval ----------------------------------------------------------------


@pytest.fixture
def masked_run(small_patchset: PatchSet, tmp_path: Path) -> Path:
    config = tmp_path / "gan.toml"
    lines = ["[gan]", 'family = "masked"', "grid_size = 2", "tick_kimg = 0.008", "snapshot_kimg = 0.016"]
    lines += ["threads = 1", "[gan.masked]", *(f"{k} = {json.dumps(v)}" for k, v in TINY.items())]
    config.write_text("\n".join(lines) + "\n")
    run = tmp_path / "run"
    args = ["gan", "train", str(small_patchset.root), str(run), "-c", str(config), "--kimg", "0.016", "-q"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return run


def test_gan_train_masked_writes_a_run_with_grids_and_the_placement_rule(masked_run: Path):
    config = json.loads((masked_run / "config.json").read_text())["config"]
    assert config["family"] == "masked" and config["origin"] == "masked"
    data = json.loads((masked_run / "data.json").read_text())
    assert data["counts"]["pairs"] > 0 and data["counts"]["backgrounds"] > 0 and "free" in data["placement"]
    assert (masked_run / "grids" / "fakes-000000000016.png").is_file()


def test_gan_sample_writes_exact_pairs_from_training_groups_that_the_masked_methods_draw(
    masked_run: Path, small_patchset: PatchSet, tmp_path: Path
):
    pool_dir = tmp_path / "pool"
    result = runner.invoke(app, ["gan", "sample", str(masked_run), str(pool_dir), "--n", "12", "-q"])
    assert result.exit_code == 0, result.output
    pool = load_patchset(pool_dir)
    train_groups = {r.group for r in small_patchset.records if r.split == TRAIN and r.origin == "real"}
    parent = small_patchset.by_id()
    assert len(pool.records) == 12 and {r.origin for r in pool.records} == {"masked"}
    for record in pool.records:
        assert record.group in train_groups and record.source_group in train_groups, "never a test group"
        assert parent[record.source_patch].split == TRAIN and parent[record.dest_patch].split == TRAIN
        mask = pool.read_mask(record)
        assert set(np.unique(mask).tolist()) == {MASK_GOOD, MASK_DEFECT} and record.has_defect
        background = small_patchset.read_image(parent[record.dest_patch])
        far = torch.nn.functional.max_pool2d(
            torch.from_numpy((mask == MASK_DEFECT)[None, None].astype(np.float32)), 11, 1, 5
        )
        outside = far[0, 0].numpy() == 0
        assert np.array_equal(pool.read_image(record)[outside], background[outside]), "the background, byte for byte"
    for name in ("masked",):
        assert len(open_pool(name, {name: pool_dir}).records) == 12
    loaded = load_generator(masked_run)
    assert loaded.generator.noise, "the run has noise inputs: the pool's noise comes from its seed too"
    images, masks, _, _ = masked_samples(loaded, 12, 0, batch=5)
    for record, image in zip(pool.records, images, strict=True):
        assert np.array_equal(pool.read_image(record), image), "a pool is its seed's samples, whatever the batch"


def test_gan_eval_masked_reports_label_metrics_and_draws_the_comparison_with_pasting(
    masked_run: Path, small_patchset: PatchSet, tmp_path: Path
):
    from training.gan.evaluate import EvalRequest, evaluate_run, real_defects
    from training.gan.features import pixel_features
    from training.gan.label_eval import real_masks
    from training.gan.masked.sample import write_comparison_grid

    loaded = load_generator(masked_run)
    images, masks, _, data = masked_samples(loaded, 12, 0)
    report = evaluate_run(
        loaded=loaded,
        real=real_defects(small_patchset.root, TRAIN),
        extractor=pixel_features(),
        request=EvalRequest(count=12),
        out_dir=tmp_path / "eval",
        real_labels=real_masks(small_patchset.root, TRAIN),
        samples=(images, masks * MASK_DEFECT),
    )
    rows = report["labels"]["rows"]
    assert rows[1]["pct_with_defects"] == 100.0, "every masked sample carries its mask"
    grid = write_comparison_grid(loaded, data, tmp_path / "cmp.png", rows=3)
    import cv2

    picture = cv2.imread(str(grid), cv2.IMREAD_GRAYSCALE)
    assert picture.shape == (3 * 32 * 2, 5 * 32 * 2), "rows x (background, mask, two paintings, pasted)"
