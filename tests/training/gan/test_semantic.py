"""SemanticGAN (family ``semantic``): gradient paths, R1, label ranges, the distribution loss, data, pools."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from shared.masks import MASK_DEFECT, MASK_GOOD
from training.cli import app
from training.data.patchset import PatchSet, load_patchset
from training.data.pools import MissingPoolError, open_pool
from training.data.splits import TRAIN
from training.gan.checkpoint import load_generator
from training.gan.families import get_family
from training.gan.loop import LoopOptions, train_gan
from training.gan.sample import SampleRequest, generate_pairs, label_mask
from training.gan.semantic.config import SemanticGANConfig
from training.gan.semantic.data import binary_mask, load_semantic_data
from training.gan.semantic.distribution import DistributionLoss, class_fractions, gaussian_kl
from training.gan.semantic.networks import label_to_range, mask_to_range
from training.gan.semantic.pairs import random_affine, random_flips

from .conftest import TINY_TEST
from .test_loop import blobs

FAMILY = get_family("semantic")
runner = CliRunner()


def tiny(**overrides: object) -> SemanticGANConfig:
    pinned = {"ld_real_mean": (0.1,), "ld_real_std": (0.05,)}
    return FAMILY.config("tiny", {**TINY_TEST, "sem_channels": 8, "sem_channels_max": 16, **pinned, **overrides})


def paired_data(n: int = 12, size: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
    """Blob images whose masks mark the blob (dark pixels)."""
    images = blobs(n, size, seed)
    return {"images": images, "pair_images": images, "pair_masks": (images < 100).astype(np.uint8)}


def _setup(**overrides: object):
    cfg = tiny(**overrides)
    G, D = FAMILY.build(cfg)
    loss = FAMILY.loss(cfg, G, D, FAMILY.augment(cfg))
    real = FAMILY.batches(paired_data(), torch.device("cpu"), np.random.default_rng(0)).next(cfg.batch_size)
    return cfg, G, D, loss, real


def _grad_norm(params) -> float:
    return float(sum(p.grad.abs().sum() for p in params if p.grad is not None))


# --- gradient paths ---------------------------------------------------------------------------------


@pytest.mark.parametrize("to_image", [True, False])
def test_d_sem_reaches_the_image_branch_only_with_sem_grad_to_image(to_image: bool):
    cfg, G, _, loss, real = _setup(sem_grad_to_image=to_image)
    G.requires_grad_(True)
    terms = loss.generator_terms(real, torch.randn(cfg.batch_size, cfg.z_dim))
    terms["sem"].backward()  # D_sem's term alone
    image_branch, label_branch = _grad_norm(G.image_branch()), _grad_norm(G.label_branch())
    assert label_branch > 0, "D_sem always trains the label branch"
    if to_image:
        assert image_branch > 0, "thesis: D_sem's gradient reaches ToImage"
    else:
        assert image_branch == 0, "original: D_sem sees a detached image, ToImage gets nothing from it"


def test_r1_updates_both_discriminators_including_d_img():
    cfg, G, D, loss, real = _setup()
    D.zero_grad(set_to_none=True)
    stats = loss.accumulate_gradients("D_reg", real, torch.randn(cfg.batch_size, cfg.z_dim), gain=16.0)
    assert _grad_norm(D.img.parameters()) > 0, "R1 must reach D_img's weights (SemanticGAN's bug: it did not)"
    assert _grad_norm(D.sem.parameters()) > 0
    assert all(p.grad is None for p in G.parameters()), "a D phase leaves G without gradients"
    assert stats["Loss/r1_penalty"] > 0 and stats["Loss/r1_penalty_sem"] > 0
    before = [p.detach().clone() for p in D.img.parameters()]
    torch.optim.Adam(D.parameters(), **FAMILY.optimizers(cfg)["D"]).step()
    assert any(not torch.equal(b, p) for b, p in zip(before, D.img.parameters(), strict=True))


def test_every_phase_trains_its_own_network_only():
    cfg, G, D, loss, real = _setup()
    for phase, trained, frozen in (("G_main", G, D), ("G_reg", G, D), ("D_main", D, G)):
        G.zero_grad(set_to_none=True)
        D.zero_grad(set_to_none=True)
        loss.accumulate_gradients(phase, real, torch.randn(cfg.batch_size, cfg.z_dim))
        assert _grad_norm(trained.parameters()) > 0, phase
        assert all(p.grad is None for p in frozen.parameters()), phase


# --- value ranges and pair augmentation ---------------------------------------------------------------


def test_real_and_fake_labels_reach_d_sem_in_the_same_range():
    logits = torch.tensor([-1e4, -3.0, 0.0, 3.0, 1e4]).view(1, 1, 1, 5)
    fake = label_to_range(logits)
    torch.testing.assert_close(fake, 2 * torch.sigmoid(logits) - 1)
    assert fake.min() >= -1 and fake.max() <= 1 and fake[0, 0, 0, 0] == -1 and fake[0, 0, 0, -1] == 1
    real = mask_to_range(torch.tensor([0, 1], dtype=torch.uint8))
    assert real.tolist() == [-1.0, 1.0]
    *_, loss, batch = _setup()
    _, label = loss.real_pairs(batch)
    assert set(label.unique().tolist()) <= {-1.0, 1.0}


@pytest.mark.parametrize("augment", [random_flips, random_affine])
def test_pair_augmentation_moves_image_and_label_together(augment):
    torch.manual_seed(3)
    image = torch.zeros(16, 1, 16, 16)
    image[:, :, 2:6, 3:7] = 1.0  # a bright square, its mask exactly under it
    label = (image > 0.5).float()
    out_image, out_label = augment(image, label)
    assert set(out_label.unique().tolist()) <= {0.0, 1.0}, "labels stay hard (nearest)"
    if augment is random_flips:
        assert torch.equal(out_label > 0.5, out_image > 0.5)
    else:  # bilinear edges: the mask lies on the bright square
        assert (out_image[out_label > 0.5] > 0.25).float().mean() > 0.9
    assert not torch.equal(out_label, label), "something moved"


def test_affine_pair_augmentation_is_refused_when_d_sem_reaches_the_image():
    with pytest.raises(ValueError, match="only flips"):
        tiny(sem_grad_to_image=True, pair_augment="affine")
    assert tiny(sem_grad_to_image=True).pair_augment_mode() == "flips"
    assert tiny(sem_grad_to_image=False).pair_augment_mode() == "affine"


# --- the distribution loss (thesis eq. 5) ---------------------------------------------------------------


def test_gaussian_kl_matches_the_closed_form():
    t = torch.tensor
    assert gaussian_kl(t(0.3), t(0.1), t(0.3), t(0.1)).item() == pytest.approx(0.0, abs=1e-7)
    assert gaussian_kl(t(0.0), t(1.0), t(1.0), t(1.0)).item() == pytest.approx(0.5)  # (Δμ)²/2σ²
    expected = math.log(2.0) + (1.0 + 0.25) / (2 * 4.0) - 0.5  # σ_r 1, σ_f 2, Δμ 0.5
    assert gaussian_kl(t(0.0), t(1.0), t(0.5), t(2.0)).item() == pytest.approx(expected)


def test_distribution_loss_is_zero_at_the_real_statistics_and_decays_linearly():
    logits = torch.full((4, 1, 8, 8), -20.0)  # fractions: 1/8, 2/8, 3/8, 4/8 of the pixels are defect
    for i in range(4):
        logits[i, 0, : i + 1] = 20.0
    fractions = class_fractions(logits, (1,))[:, 0]
    torch.testing.assert_close(fractions, torch.tensor([0.125, 0.25, 0.375, 0.5]))
    same = DistributionLoss(
        weight=2.0,
        classes=(1,),
        target_mean=(fractions.mean().item(),),
        target_std=(fractions.std(unbiased=False).item(),),
    )
    assert same.divergence(logits).item() == pytest.approx(0.0, abs=1e-5)
    shifted = DistributionLoss(weight=2.0, classes=(1,), target_mean=(0.9,), target_std=(0.1,), decay_kimg=10.0)
    assert shifted.divergence(logits).item() > 1.0
    assert [shifted.weight_at(k) for k in (0, 5, 10, 20)] == [2.0, 1.0, 0.0, 0.0]
    value, weight = shifted(logits, kimg=5.0)
    assert weight == 1.0 and value.item() == pytest.approx(shifted.divergence(logits).item())


def test_the_inflated_target_doubles_mean_and_variance():
    cfg = tiny(ld_inflation=2.0, ld_real_mean=(0.02,), ld_real_std=(0.03,))
    (mean,), (std,) = cfg.ld_target()
    assert mean == pytest.approx(0.04) and std**2 == pytest.approx(2 * 0.03**2)


def _defect_share(trained) -> float:
    with torch.no_grad():
        _, logits = trained.networks["G"](torch.randn(64, TINY_TEST["z_dim"]), noise_mode="const")
    return float(class_fractions(logits, (1,)).mean())


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_tiny_run_with_lambda_moves_the_generated_defect_share_toward_the_target(tmp_path: Path):
    options = LoopOptions(kimg=0.064, snapshot_kimg=1.0, tick_kimg=0.064, grid_size=2, seed=1, progress=False)
    shares = {}
    for name, weight in (("off", 0.0), ("on", 20.0)):
        torch.manual_seed(0)
        run_dir = tmp_path / name
        run_dir.mkdir()
        cfg = tiny(ld_weight=weight, ld_real_mean=(0.9,), ld_real_std=(0.05,))
        trained = train_gan(family=FAMILY, config=cfg, images=paired_data(), run_dir=run_dir, options=options)
        shares[name] = _defect_share(trained)
    assert shares["on"] > shares["off"] + 0.1, shares


# --- data, sampling, pools -------------------------------------------------------------------------------


def test_semantic_data_holds_train_groups_only_and_halves_the_labelled_groups(small_patchset: PatchSet):
    full = load_semantic_data(small_patchset.root, resolution=16)
    half = load_semantic_data(small_patchset.root, resolution=16, labelled_fraction=0.5, unlabelled_good=5)
    train_groups = {r.group for r in small_patchset.records if r.split == TRAIN}
    assert full.counts["labelled_groups"] == full.counts["train_groups"] <= len(train_groups)
    assert half.counts["labelled_groups"] == math.ceil(0.5 * full.counts["labelled_groups"])
    assert len(half.pair_masks) < len(full.pair_masks) and len(half.images) == len(full.images) + 5
    assert set(np.unique(full.pair_masks).tolist()) <= {0, 1} and full.pair_masks.any()
    assert full.pair_images.shape == full.pair_masks.shape == (len(full.pair_masks), 16, 16)
    assert full.describe()["labelled_pairs"] == len(full.pair_masks)


def test_binary_mask_keeps_defects_and_drops_ignore_pixels():
    mask = np.full((8, 8), MASK_GOOD, np.uint8)
    mask[:4, :4] = MASK_DEFECT
    mask[4:, 4:] = 64  # ignore
    small = binary_mask(mask, 4)
    assert small.tolist() == [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]


def tiny_semantic_toml(path: Path, **extra: object) -> Path:
    lines = ["[gan]", 'family = "semantic"', "grid_size = 2", "tick_kimg = 0.008", "snapshot_kimg = 0.016"]
    lines += ["threads = 1", "[gan.semantic]", "sem_channels = 8", "sem_channels_max = 16"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in {**TINY_TEST, **extra}.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def semantic_run(small_patchset: PatchSet, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    config = tiny_semantic_toml(tmp_path / "gan.toml")
    args = ["gan", "train", str(small_patchset.root), str(run), "-c", str(config), "--kimg", "0.016", "-q"]
    result = runner.invoke(app, [*args, "--ld-weight", "1", "--sem-grad-to-image", "off"])
    assert result.exit_code == 0, result.output
    return run


def test_gan_train_semantic_records_the_variant_and_the_measured_target(semantic_run: Path):
    config = json.loads((semantic_run / "config.json").read_text())["config"]
    family_config = config["family_config"]
    assert config["family"] == "semantic" and config["origin"] == "semgan"
    assert family_config["sem_grad_to_image"] is False and family_config["ld_weight"] == 1.0
    data = json.loads((semantic_run / "data.json").read_text())
    masks_mean = family_config["ld_real_mean"][0]
    assert 0 < masks_mean < 1 and data["labelled_pairs"] > 0 and data["counts"]["labelled_groups"] > 0
    assert (semantic_run / "grids" / "fakes-000000000016.png").is_file()


def test_gan_sample_writes_image_and_mask_pairs_that_the_semgan_methods_draw(
    semantic_run: Path, small_patchset: PatchSet, tmp_path: Path
):
    pool_dir = tmp_path / "pool"
    args = ["gan", "sample", str(semantic_run), str(pool_dir), "--n", "10", "--label-threshold", "0.3", "-q"]
    assert runner.invoke(app, args).exit_code == 0
    pool = load_patchset(pool_dir)
    side = small_patchset.meta["geometry"]["patch_px"]
    assert {r.origin for r in pool.records} == {"semgan"} and len(pool.records) == 10
    assert pool.meta["options"]["label_threshold"] == 0.3
    loaded = load_generator(semantic_run)
    probs = np.concatenate([p for _, p in generate_pairs(loaded, SampleRequest(count=10, seed=0, patch_px=side))])
    for record, prob in zip(pool.records, probs, strict=True):
        mask = pool.read_mask(record)
        assert np.array_equal(mask, label_mask(prob, side, 0.3)), "the mask is the label output thresholded"
        assert set(np.unique(mask).tolist()) <= {MASK_GOOD, MASK_DEFECT}
        assert record.has_defect == bool((mask == MASK_DEFECT).any()) == (record.label == "defect")
    for name in ("semgan", "ours", "ours+ld"):
        assert len(open_pool(name, {name: pool_dir}).records) == 10
    with pytest.raises(MissingPoolError, match="expected only 'pasted'"):
        open_pool("pasted", {"pasted": pool_dir})


def test_gan_eval_and_compare_report_the_label_metrics_and_draw_them(
    semantic_run: Path, small_patchset: PatchSet, tmp_path: Path
):
    from training.gan.compare import CompareRequest, compare_runs
    from training.gan.evaluate import EvalRequest, evaluate_run, real_defects
    from training.gan.features import pixel_features
    from training.gan.label_eval import real_masks

    real, masks = real_defects(small_patchset.root, TRAIN), real_masks(small_patchset.root, TRAIN)
    loaded = load_generator(semantic_run)
    report = evaluate_run(
        loaded=loaded,
        real=real,
        extractor=pixel_features(),
        request=EvalRequest(count=12),
        out_dir=tmp_path / "eval",
        real_labels=masks,
    )
    rows = report["labels"]["rows"]
    assert [r["set"] for r in rows] == ["real", "generated"] and rows[1]["count"] == 12
    assert rows[0]["pct_with_defects"] == 100.0, "the real masks are those of defective patches"
    for picture in ("histogram", "overlays"):
        assert Path(report["pictures"][picture]).stat().st_size > 0
    runs = {"a": loaded, "b": load_generator(semantic_run)}
    result = compare_runs(
        runs=runs, real_images=real, real_masks=masks, request=CompareRequest(count=8), out_dir=tmp_path / "cmp"
    )
    assert [r["set"] for r in result["rows"]] == ["real", "a", "b"]
    assert result["rows"][1]["emd_all"] == result["rows"][2]["emd_all"], "same run, same latents, same masks"
    assert (tmp_path / "cmp" / "compare.md").read_text().count("\n| ") == 3
    assert {p.name for p in (tmp_path / "cmp").iterdir()} >= {
        "compare.json",
        "label_histogram.png",
        "overlays-a.png",
        "overlays-real.png",
    }


@pytest.mark.slow  # four tiny segmenter runs: ~10 s
def test_a_segmentation_experiment_draws_the_three_variant_pools_defective_rows_only(
    semantic_run: Path, small_patchset: PatchSet, tmp_path: Path
):
    from training.data.library import split_records
    from training.experiments.report import markdown_table
    from training.experiments.runner import ExperimentConfig, run_experiment
    from training.models.segmenter import SegmenterSpec
    from training.train.schedule import Schedule

    pool = tmp_path / "pool"
    args = ["gan", "sample", str(semantic_run), str(pool), "--n", "40", "--label-threshold", "0.2", "-q"]
    assert runner.invoke(app, args).exit_code == 0
    defective = sum(r.has_defect for r in load_patchset(pool).records)
    assert defective > 0, "a threshold of 0.2 on an untrained label branch marks something"
    config = ExperimentConfig(
        task="segmentation",
        methods=("baseline", "semgan", "ours", "ours+ld"),
        seeds=1,
        sizes=(200,),
        schedule=Schedule(iterations=2, val_every=2, batch_size=4),
        spec=SegmenterSpec(encoder="tu-resnet10t", input_px=32),
        pools={"semgan": str(pool), "ours": str(pool), "ours+ld": str(pool)},
    )
    rows = run_experiment(small_patchset.root, tmp_path / "seg", config, progress=False)
    assert [r["method"] for r in rows] == ["baseline", "semgan", "ours", "ours+ld"]
    defective_train = sum(r.has_defect for r in split_records(small_patchset, 0).train)
    for row in rows[1:]:
        assert int(row["synthetic_drawn"]) == defective, "only the pool's defective pairs join a defective-only run"
        assert int(row["train_patches"]) == defective_train + defective
    table = markdown_table(rows, "segmentation")
    assert "| verdict vs baseline | verdict vs pasted |" in table and "| ours+ld | 200 |" in table


def test_gan_compare_cli_writes_the_table_and_names_a_bad_argument(semantic_run: Path, tmp_path: Path):
    out = tmp_path / "cmp"
    result = runner.invoke(app, ["gan", "compare", f"ours={semantic_run}", "--out", str(out), "--n", "4"])
    assert result.exit_code == 0, result.output
    assert "| ours | 4 |" in (out / "compare.md").read_text()
    bad = runner.invoke(app, ["gan", "compare", str(semantic_run), "--out", str(out)])
    assert bad.exit_code != 0 and "expected NAME=RUN" in bad.output
