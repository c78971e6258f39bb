"""One way to assemble a run: a single run and the experiment arm of the same seed train on the same patches."""

from pathlib import Path

import numpy as np
import pytest

from training.data.assemble import assemble_run
from training.data.library import PatchLibrary, split_records
from training.data.paste import PasteOptions, make_pasted
from training.data.pools import MissingPoolError, draw_from_pool, open_pool, open_pools
from training.experiments.runner import ExperimentConfig, run_experiment
from training.models.classifier import ClassifierSpec
from training.models.segmenter import SegmenterSpec
from training.train.schedule import Schedule
from training.train.single import train_classifier_command, train_segmenter_command

TINY = ClassifierSpec(width=0.125, internal_px=32, input_px=32)
SCHEDULE = Schedule(iterations=2, val_every=2, batch_size=4)
RESULT = {"test_f1": 0.0, "test_auroc": 0.5, "val_auroc": 0.5, "train_seconds": 0.0}


@pytest.fixture
def pasted_pool(small_patchset, tmp_path) -> Path:
    make_pasted(small_patchset, tmp_path / "pasted", PasteOptions(per_defect=2), seed=0, progress=False)
    return tmp_path / "pasted"


@pytest.fixture
def trained(monkeypatch) -> dict[str, list]:
    """Replaces the training loops behind both paths: records the data and schedule each was given."""
    seen: dict[str, list] = {"single": [], "experiment": []}

    def recorder(path: str):
        def train(data, spec, schedule, out_dir, **_):
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            seen[path].append((data, schedule))
            return dict(RESULT)

        return train

    for module, path in (("training.train.single", "single"), ("training.experiments.runner", "experiment")):
        monkeypatch.setattr(f"{module}.train_classifier", recorder(path))
        monkeypatch.setattr(f"{module}.train_segmenter", recorder(path))
    return seen


def _ids(arrays) -> list[str]:
    return [record.id for record in arrays.records]


def _assert_same_data(single, experiment) -> None:
    for name in ("train", "val", "test"):
        assert _ids(getattr(single, name)) == _ids(getattr(experiment, name)), name
        assert np.array_equal(getattr(single, name).images, getattr(experiment, name).images), name
        assert np.array_equal(getattr(single, name).masks, getattr(experiment, name).masks), name


def _experiment(patchset, pool: Path, out: Path, task: str, method: str, size: int, seed: int, **extra) -> None:
    spec = TINY if task == "classification" else SegmenterSpec(encoder="tu-resnet10t", input_px=32)
    config = ExperimentConfig(
        task=task,
        methods=(method,),
        seeds=1,
        first_seed=seed,
        sizes=(size,),
        schedule=SCHEDULE,
        spec=spec,
        pools={"pasted": str(pool)},
        **extra,
    )
    run_experiment(patchset.root, out, config, progress=False)


def test_a_single_pasted_run_and_the_experiment_arm_of_its_seed_train_on_the_same_patches(
    small_patchset, pasted_pool, trained, tmp_path
):
    seed, size = 1, 6
    usable = draw_from_pool(
        open_pool("pasted", {"pasted": pasted_pool}),
        10_000,
        split_records(small_patchset, seed).train_groups,
        np.random.default_rng(0),
    )
    assert len(usable) > size, "the pool must offer more than N patches, or any draw would pass"
    train_classifier_command(
        patches_dir=small_patchset.root,
        out=tmp_path / "single",
        spec=TINY,
        schedule=SCHEDULE.model_copy(update={"seed": seed}),
        augment=[f"pasted:{size}"],
        pool=[f"pasted={pasted_pool}"],
        val_seed=seed,
        progress=False,
    )
    _experiment(small_patchset, pasted_pool, tmp_path / "exp", "classification", "pasted", size, seed)
    (single, single_schedule), (experiment, experiment_schedule) = trained["single"][0], trained["experiment"][0]
    _assert_same_data(single, experiment)
    assert sum(record.origin == "pasted" for record in single.train.records) == size
    assert single_schedule == experiment_schedule and single_schedule.seed == seed
    assert single.sample_weights is None and experiment.sample_weights is None


def test_weighted_sampling_of_a_single_run_is_the_experiments_weighted_arm(
    small_patchset, pasted_pool, trained, tmp_path
):
    seed, size = 2, 6
    train_classifier_command(
        patches_dir=small_patchset.root,
        out=tmp_path / "single",
        spec=TINY,
        schedule=SCHEDULE.model_copy(update={"seed": seed}),
        augment=[f"pasted:{size}"],
        weighted=True,
        val_seed=seed,
        progress=False,
    )
    _experiment(small_patchset, pasted_pool, tmp_path / "exp", "classification", "weighted", size, seed)
    (single, _), (experiment, _) = trained["single"][0], trained["experiment"][0]
    _assert_same_data(single, experiment)
    assert all(record.origin == "real" for record in single.train.records), "weighted sampling adds no pool patch"
    assert np.array_equal(single.sample_weights, experiment.sample_weights)
    assert single.sample_weights.max() > 1.0, "defects are oversampled"


def test_a_single_segmenter_run_and_its_experiment_arm_draw_the_same_healthy_and_pool_patches(
    small_patchset, pasted_pool, trained, tmp_path
):
    seed, size = 0, 4
    train_segmenter_command(
        patches_dir=small_patchset.root,
        out=tmp_path / "single",
        spec=SegmenterSpec(encoder="tu-resnet10t", input_px=32),
        schedule=SCHEDULE,
        augment=[f"pasted:{size}"],
        pool=[f"pasted={pasted_pool}"],
        healthy_share=0.5,
        val_seed=seed,
        progress=False,
    )
    _experiment(small_patchset, pasted_pool, tmp_path / "exp", "segmentation", "pasted", size, seed, healthy_share=0.5)
    (single, _), (experiment, _) = trained["single"][0], trained["experiment"][0]
    _assert_same_data(single, experiment)
    assert any(not record.has_defect for record in single.train.records), "healthy patches were drawn"


def test_assembly_draws_pool_patches_into_training_only_and_names_a_missing_pool(small_patchset, pasted_pool):
    split = split_records(small_patchset, 3)
    library = PatchLibrary(small_patchset)
    pools = open_pools(["pasted"], {"pasted": pasted_pool})
    run = assemble_run(library=library, split=split, seed=3, augment={"pasted": 5}, pools=pools)
    assert run.drawn == {"pasted": 5} and run.drawn_total == 5 and len(run.train) == len(split.train) + 5
    assert {r.origin for r in run.val.records + run.test.records} == {"real"}
    again = assemble_run(library=library, split=split, seed=3, augment={"pasted": 5}, pools=pools)
    assert _ids(again.train) == _ids(run.train), "same seed and size, same draw"
    other = assemble_run(library=library, split=split, seed=4, augment={"pasted": 5}, pools=pools)
    assert _ids(other.train) != _ids(run.train), "another seed draws other pool patches"
    with pytest.raises(MissingPoolError, match="--pool gan=DIR"):
        assemble_run(library=library, split=split, seed=3, augment={"gan": 5}, pools=pools)
