"""Training loops, split/augment rules and the experiment runner on tiny models (seconds, not minutes)."""

import json

import numpy as np
import pytest
import torch

from training.data.assemble import weighted_sampling_weights
from training.data.library import PatchLibrary, split_records
from training.data.paste import PasteOptions, make_pasted
from training.data.pools import MissingPoolError, draw_from_pool, open_pool
from training.experiments.report import VIEWS, markdown_table, verdict
from training.experiments.runner import ExperimentConfig, planned_runs, read_runs, run_experiment, run_key
from training.models.checkpoint import load_checkpoint
from training.models.classifier import ClassifierSpec
from training.models.segmenter import SegmenterSpec
from training.train.classifier import ClassifierData, few_positives_warning, train_classifier
from training.train.runtime import predict, resolve_device
from training.train.schedule import Schedule
from training.train.segmenter import THRESHOLD_GRID, SegmenterData, best_threshold, train_segmenter

TINY = ClassifierSpec(width=0.125, internal_px=32, input_px=32)
TINY_SCHEDULE = Schedule(iterations=6, val_every=3, batch_size=8, lr=1e-3)


@pytest.fixture
def pasted_pool(small_patchset, tmp_path):
    make_pasted(small_patchset, tmp_path / "pasted", PasteOptions(per_defect=2), seed=0, progress=False)
    return tmp_path / "pasted"


def _data(patchset, val_seed=None):
    split = split_records(patchset, val_seed)
    library = PatchLibrary(patchset)
    return ClassifierData(library.select(split.train), library.select(split.val), library.select(split.test))


def test_classifier_run_writes_a_loadable_checkpoint_and_its_metrics(small_patchset, tmp_path):
    data = _data(small_patchset)
    result = train_classifier(data, TINY, TINY_SCHEDULE, tmp_path / "run", context={"name": "t"}, progress=False)
    for key in (
        "test_f1",
        "test_auroc",
        "test_pr_auc",
        "test_f1_always_defective",
        "threshold",
        "val_auroc",
        "train_auroc",
        "test_tuned_f1",
    ):
        assert key in result
    assert 0 <= result["test_accuracy"] <= 1 and result["best_iteration"] in (3, 6)
    assert {"model.pt", "metrics.jsonl", "curves.png"} <= {p.name for p in (tmp_path / "run").iterdir()}
    checkpoint = load_checkpoint(tmp_path / "run")
    assert checkpoint.task == "classifier" and checkpoint.threshold == pytest.approx(result["threshold"])
    scores = predict(checkpoint.build(), data.test.images, resolve_device("cpu"))[:, 0]
    predicted = (scores >= 0.5).astype(float)
    accuracy = float((predicted == data.test.labels).mean())
    assert accuracy == pytest.approx(result["test_accuracy"], abs=1e-6), "the saved weights are the evaluated ones"


def test_same_seed_gives_the_same_run(small_patchset, tmp_path):
    data = _data(small_patchset)
    first = train_classifier(data, TINY, TINY_SCHEDULE, tmp_path / "a", progress=False)
    second = train_classifier(data, TINY, TINY_SCHEDULE, tmp_path / "b", progress=False)
    assert first["test_auroc"] == second["test_auroc"] and first["threshold"] == second["threshold"]


def test_weighted_sampling_gives_defects_the_share_they_would_have_after_augmenting():
    labels = np.array([1] * 5 + [0] * 95, dtype=np.float32)
    target = (5 + 20) / (100 + 20)
    weights = weighted_sampling_weights(labels, target)
    assert weights[labels > 0].sum() / weights.sum() == pytest.approx(target)


def test_synthetic_patches_only_join_training_and_never_leak_validation_groups(small_patchset, pasted_pool):
    pool = open_pool("pasted", {"pasted": pasted_pool})
    for val_seed in (1, 2, 3):
        split = split_records(small_patchset, val_seed)
        drawn = draw_from_pool(pool, 10_000, split.train_groups, np.random.default_rng(0))
        assert drawn and all(r.group in split.train_groups and r.source_group in split.train_groups for r in drawn)
        held_out = {r.group for r in split.val + split.test}
        assert not held_out & {r.source_group for r in drawn}
        assert all(r.origin == "real" for r in split.val + split.test)
        assert not {r.group for r in split.test} & {r.group for r in split.val}


def test_a_missing_pool_is_named_before_any_training(small_patchset, tmp_path):
    config = ExperimentConfig(
        task="classification", methods=("baseline", "gan"), seeds=1, sizes=(5,), schedule=TINY_SCHEDULE, spec=TINY
    )
    with pytest.raises(MissingPoolError, match="origin 'gan'.*--pool gan=DIR"):
        run_experiment(small_patchset.root, tmp_path / "exp", config, progress=False)
    assert read_runs(tmp_path / "exp") == []


def test_experiment_runs_pairs_resumes_and_tabulates(small_patchset, pasted_pool, tmp_path):
    config = ExperimentConfig(
        task="classification",
        methods=("baseline", "weighted", "pasted"),
        seeds=2,
        sizes=(6,),
        schedule=TINY_SCHEDULE,
        spec=TINY,
        pools={"pasted": str(pasted_pool)},
    )
    assert len(planned_runs(config)) == 6
    rows = run_experiment(small_patchset.root, tmp_path / "exp", config, progress=False)
    assert sorted(r["key"] for r in rows) == sorted(
        ["baseline-n0-s0", "weighted-n6-s0", "pasted-n6-s0", "baseline-n0-s1", "weighted-n6-s1", "pasted-n6-s1"]
    )
    assert all(int(r["synthetic_drawn"]) == 6 for r in rows if r["method"] == "pasted")
    before = (tmp_path / "exp" / "runs.csv").read_bytes()
    run_experiment(small_patchset.root, tmp_path / "exp", config, progress=False)
    assert (tmp_path / "exp" / "runs.csv").read_bytes() == before, "finished runs are not redone"
    table = markdown_table(rows, "classification")
    assert "| baseline | 0 | 2 |" in table and "Always-defective reference F1" in table
    changed = ExperimentConfig(**{**config.__dict__, "schedule": Schedule(iterations=7, val_every=7, batch_size=8)})
    with pytest.raises(ValueError, match="different experiment"):
        run_experiment(small_patchset.root, tmp_path / "exp", changed, progress=False)


def test_parallel_workers_train_the_same_runs_as_one_process(small_patchset, pasted_pool, tmp_path):
    config = ExperimentConfig(
        task="classification",
        methods=("baseline", "pasted"),
        seeds=2,
        sizes=(6,),
        schedule=Schedule(**{**TINY_SCHEDULE.to_dict(), "threads": 1}),
        spec=TINY,
        pools={"pasted": str(pasted_pool)},
    )
    one = {r["key"]: r for r in run_experiment(small_patchset.root, tmp_path / "one", config, progress=False)}
    two_rows = run_experiment(small_patchset.root, tmp_path / "two", config, progress=False, workers=2)
    two = {r["key"]: r for r in two_rows}
    assert sorted(one) == sorted(two) == sorted(run_key(*run) for run in planned_runs(config))
    for key, row in one.items():  # same seed, same single thread: the same numbers
        assert float(two[key]["test_auroc"]) == pytest.approx(float(row["test_auroc"]), abs=1e-6), key
        assert two[key]["synthetic_drawn"] == row["synthetic_drawn"]
    assert len(list((tmp_path / "two" / "runs").iterdir())) == 4


def test_a_batch_with_too_few_defects_is_flagged_before_training():
    assert few_positives_warning(0.044, 64) is not None and "2.8" in few_positives_warning(0.044, 64)
    assert few_positives_warning(0.044, 192) is None, "~8 defects per batch learned on the synthetic set"
    assert few_positives_warning(0.11, 64) is None and few_positives_warning(0.0, 64) is None


def test_bf16_training_runs_and_keeps_an_fp32_checkpoint(small_patchset, tmp_path):
    schedule = Schedule(**{**TINY_SCHEDULE.to_dict(), "precision": "bf16"})
    result = train_classifier(_data(small_patchset), TINY, schedule, tmp_path / "run", progress=False)
    assert 0 <= result["test_auroc"] <= 1 or np.isnan(result["test_auroc"])
    checkpoint = load_checkpoint(tmp_path / "run")
    assert all(v.dtype in (torch.float32, torch.int64) for v in checkpoint.state_dict.values())
    with pytest.raises(ValueError, match="precision"):
        Schedule(precision="fp16")


def test_mask_loss_trains_a_cell_head_that_never_reaches_the_checkpoint(small_patchset, tmp_path):
    data = _data(small_patchset)
    train_classifier(data, TINY, TINY_SCHEDULE, tmp_path / "plain", progress=False)
    schedule = Schedule(**{**TINY_SCHEDULE.to_dict(), "mask_loss": 10.0})
    guided = train_classifier(data, TINY, schedule, tmp_path / "guided", progress=False)
    first, second = load_checkpoint(tmp_path / "plain"), load_checkpoint(tmp_path / "guided")
    assert first.state_dict.keys() == second.state_dict.keys(), "the exported classifier is the plain one"

    def losses(run: str) -> list[float]:
        lines = (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        return [json.loads(line)["train/loss"] for line in lines]

    assert all(g > p for g, p in zip(losses("guided"), losses("plain"), strict=True)), "the cell loss is added"
    assert 0 <= guided["test_auroc"] <= 1 or np.isnan(guided["test_auroc"])


def _row(method, seed, f1, auroc, val_auroc=0.9):
    return {
        "method": method,
        "size": "0" if method == "baseline" else "100",
        "seed": str(seed),
        "test_f1": f1,
        "test_auroc": auroc,
        "val_auroc": val_auroc,
    }


def test_verdict_rule_claims_only_clear_paired_gains_over_a_learned_baseline():
    view = VIEWS["classification"]
    clear = [_row("baseline", s, 0.30, 0.90) for s in range(3)] + [
        _row("gan", 0, 0.40, 0.91),
        _row("gan", 1, 0.41, 0.92),
        _row("gan", 2, 0.39, 0.90),
    ]
    assert verdict(clear, ("gan", 100), view).startswith("gain")
    noisy = [_row("baseline", s, 0.30, 0.90) for s in range(3)] + [
        _row("gan", 0, 0.60, 0.91),
        _row("gan", 1, 0.20, 0.92),
        _row("gan", 2, 0.31, 0.90),
    ]
    assert verdict(noisy, ("gan", 100), view).startswith("no claim"), "mean +0.07 but SE 0.12"
    auroc_falls = [_row("baseline", s, 0.30, 0.90) for s in range(3)] + [_row("gan", s, 0.40, 0.85) for s in range(3)]
    assert verdict(auroc_falls, ("gan", 100), view).startswith("no claim")
    unlearned = [_row("baseline", s, 0.30, 0.60, val_auroc=0.6) for s in range(3)] + [
        _row("gan", s, 0.50, 0.95) for s in range(3)
    ]
    assert verdict(unlearned, ("gan", 100), view).startswith("baseline not learned")


def test_gan_rows_are_judged_against_pasted_at_the_same_size_and_gan_plus_pasted_splits_the_size():
    from training.experiments.report import markdown_table
    from training.experiments.sources import get_method

    assert get_method("gan+pasted").assembly(2001)["augment"] == {"gan": 1001, "pasted": 1000}
    assert get_method("gan").assembly(500)["augment"] == {"gan": 500}
    assert get_method("baseline").assembly(500)["augment"] == {}
    view = VIEWS["classification"]
    rows = [_row("baseline", s, 0.30, 0.90) for s in range(3)]
    rows += [_row("pasted", s, 0.50, 0.92) for s in range(3)]
    rows += [_row("gan", s, 0.40 + 0.01 * s, 0.91) for s in range(3)]  # beats baseline, loses to pasted
    assert verdict(rows, ("gan", 100), view).startswith("gain")
    against_pasted = verdict(rows, ("gan", 100), view, reference="pasted")
    assert against_pasted.startswith("no claim") and "-0.09" in against_pasted
    assert verdict(rows, ("gan", 200), view, reference="pasted") == "no pasted run at 200"
    table = markdown_table([{**r, "key": f"{r['method']}-s{r['seed']}"} for r in rows], "classification")
    assert "verdict vs pasted" in table
    gan_line = next(line for line in table.splitlines() if line.startswith("| gan | 100"))
    assert gan_line.count("gain") == 1 and "no claim" in gan_line
    pasted_line = next(line for line in table.splitlines() if line.startswith("| pasted | 100"))
    assert pasted_line.rstrip().endswith("|  |")  # pasted is not judged against itself


def _defective_segmenter_data(patchset) -> SegmenterData:
    """The defective patches of each split (the segmenter's default training data)."""
    split = split_records(patchset, None)
    library = PatchLibrary(patchset)
    defect = lambda rows: [r for r in rows if r.has_defect]  # noqa: E731
    return SegmenterData(
        library.select(defect(split.train)), library.select(defect(split.val)), library.select(defect(split.test))
    )


def test_segmenter_run_reports_the_thesis_metrics(small_patchset, tmp_path):
    data = _defective_segmenter_data(small_patchset)
    spec = SegmenterSpec(encoder="resnet18", input_px=32)
    result = train_segmenter(
        data, spec, Schedule(iterations=2, val_every=2, batch_size=4), tmp_path / "seg", progress=False
    )
    for key in ("test_defect_iou", "test_healthy_iou", "test_mean_iou", "test_patch_f1_k1", "val_defect_iou"):
        assert key in result
    assert load_checkpoint(tmp_path / "seg").task == "segmenter"
    assert json.loads((tmp_path / "seg" / "metrics.jsonl").read_text().splitlines()[0])["iteration"] == 2


def test_segmentation_experiment_trains_defective_patches_and_tabulates(small_patchset, pasted_pool, tmp_path):
    config = ExperimentConfig(
        task="segmentation",
        methods=("baseline", "pasted"),
        seeds=1,
        sizes=(4,),
        schedule=Schedule(iterations=2, val_every=2, batch_size=4),
        spec=SegmenterSpec(encoder="tu-resnet10t", input_px=32),
        pools={"pasted": str(pasted_pool)},
    )
    rows = run_experiment(small_patchset.root, tmp_path / "seg", config, progress=False)
    assert [r["key"] for r in rows] == ["baseline-n0-s0", "pasted-n4-s0"]
    assert all(r["test_defect_iou"] != "" for r in rows)
    defective_train = sum(r.has_defect for r in split_records(small_patchset, 0).train)
    assert int(rows[0]["train_patches"]) == defective_train, "segmenter trains on defective patches by default"
    assert int(rows[1]["train_patches"]) == defective_train + 4
    assert "defect IoU" in markdown_table(rows, "segmentation")


def test_first_seed_shifts_the_planned_seeds_so_machines_can_share_an_experiment():
    config = ExperimentConfig(
        task="classification", methods=("baseline", "pasted"), seeds=2, sizes=(6,), schedule=TINY_SCHEDULE, spec=TINY
    )
    shifted = ExperimentConfig(**{**config.__dict__, "first_seed": 3})
    assert {seed for _, _, seed in planned_runs(config)} == {0, 1}
    assert {seed for _, _, seed in planned_runs(shifted)} == {3, 4}


def test_augmentation_keeps_masks_aligned_and_jitters_brightness_within_bounds():
    from training.train.augment import augment_geometric, augment_photometric

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (64, 16, 16), dtype=np.uint8)
    masks = (images > 200).astype(np.uint8) * 255
    turned, turned_masks = augment_geometric(images, masks, rng, "dihedral")
    assert np.array_equal(turned_masks, (turned > 200).astype(np.uint8) * 255), "masks follow their image"
    assert not np.array_equal(turned, images)
    assert sorted(map(sorted, (i.ravel() for i in turned))) == sorted(map(sorted, (i.ravel() for i in images)))
    same, _ = augment_geometric(images, None, rng, "none")
    assert same is images
    flat = np.full((200, 8, 8), 100, np.uint8)
    jittered = augment_photometric(flat, 0.2, rng)
    assert jittered.min() >= 79 and jittered.max() <= 121 and len(np.unique(jittered)) > 10
    assert augment_photometric(flat, 0.0, rng) is flat


def test_patch_input_norm_ignores_exposure():
    import torch

    from training.models.classifier import create_classifier

    model = create_classifier(ClassifierSpec(width=0.25, internal_px=32, input_px=32, input_norm="patch")).eval()
    x = torch.rand(4, 1, 32, 32) * 0.5 + 0.2
    with torch.inference_mode():
        assert torch.allclose(model(x), model(x * 1.5 + 0.05), atol=1e-4)


def test_best_threshold_picks_the_validation_best_grid_value():
    masks = np.zeros((2, 4, 4), np.uint8)
    masks[:, :2] = 255
    probabilities = np.where(masks == 255, 0.35, 0.25).astype(np.float32)  # only 0.3 separates them
    assert best_threshold(masks, probabilities, default=0.9) == 0.3
    assert best_threshold(np.zeros((1, 4, 4), np.uint8), probabilities[:1], default=0.7) == 0.7  # nothing to score


def test_segmenter_tunes_its_threshold_on_validation_and_reports_per_class(small_patchset, tmp_path):
    data = _defective_segmenter_data(small_patchset)
    spec = SegmenterSpec(arch="unet", encoder="tu-resnet10t", input_px=32, decoder_channels=(16, 16, 8, 8, 8))
    result = train_segmenter(
        data,
        spec,
        Schedule(iterations=2, val_every=2, batch_size=4),
        tmp_path / "seg",
        threshold=0.9,
        tune_threshold=True,
        progress=False,
    )
    assert result["threshold_tuned"] and result["threshold"] in THRESHOLD_GRID
    assert load_checkpoint(tmp_path / "seg").threshold == result["threshold"]
    labels = {r.label for r in data.test.records}
    assert set(result["per_class_iou"]) == labels == set(result["per_class_recall"])
