"""`gan sample` writes a pool the experiments can draw from; `gan eval` measures it and draws the checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from training.cli import app
from training.data.assemble import assemble_run
from training.data.library import PatchLibrary, split_records
from training.data.patchset import PatchSet, load_patchset
from training.data.pools import open_pools
from training.gan.checkpoint import load_generator
from training.gan.sample import SampleRequest, generate
from training.models.checkpoint import Checkpoint, save_checkpoint
from training.models.classifier import create_classifier
from training.models.specs import ClassifierSpec

from .test_train_command import tiny_toml

runner = CliRunner()


@pytest.fixture
def gan_run(small_patchset: PatchSet, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    args = ["gan", "train", str(small_patchset.root), str(run), "-c", str(tiny_toml(tmp_path / "gan.toml"))]
    result = runner.invoke(app, [*args, "--kimg", "0.016", "-q"])
    assert result.exit_code == 0, result.output
    return run


def test_samples_depend_on_the_seed_not_on_the_batch_size(gan_run: Path):
    loaded = load_generator(gan_run)
    one = np.concatenate(list(generate(loaded, SampleRequest(count=6, seed=3, batch=6))))
    chunks = np.concatenate(list(generate(loaded, SampleRequest(count=6, seed=3, batch=4))))
    other = np.concatenate(list(generate(loaded, SampleRequest(count=6, seed=4, batch=6))))
    assert one.dtype == np.uint8 and one.shape == (6, 16, 16)
    assert np.array_equal(one, chunks) and not np.array_equal(one, other)


def test_gan_sample_writes_a_pool_that_gan_plus_pasted_draws_half_of(
    gan_run: Path, small_patchset: PatchSet, tmp_path: Path
):
    pool_dir = tmp_path / "gan-pool"
    result = runner.invoke(app, ["gan", "sample", str(gan_run), str(pool_dir), "--n", "12", "--seed", "1", "-q"])
    assert result.exit_code == 0, result.output
    pool = load_patchset(pool_dir)
    side = small_patchset.meta["geometry"]["patch_px"]
    assert len(pool.records) == 12 and {r.origin for r in pool.records} == {"gan"}
    assert all(r.has_defect and r.group == "" and r.split == "train" for r in pool.records)
    assert pool.read_image(pool.records[0]).shape == (side, side)  # up-sampled to the patch set's side
    assert (pool.read_mask(pool.records[0]) == 64).all()  # all ignore: an image GAN draws no mask
    assert pool.meta["generator"]["kimg"] == pytest.approx(0.016) and pool.meta["options"]["seed"] == 1
    again = runner.invoke(app, ["gan", "sample", str(gan_run), str(pool_dir), "--n", "12", "-q"])
    assert again.exit_code != 0, "an existing pool is not overwritten without --overwrite"

    from training.data.paste import PasteOptions, make_pasted

    make_pasted(small_patchset, tmp_path / "pasted", PasteOptions(per_defect=4), seed=0, progress=False)
    pools = open_pools(["gan", "pasted"], {"gan": pool_dir, "pasted": tmp_path / "pasted"})
    from training.experiments.sources import get_method

    assembly = get_method("gan+pasted").assembly(8)
    data = assemble_run(
        library=PatchLibrary(small_patchset),
        split=split_records(small_patchset, None),
        seed=0,
        augment=assembly["augment"],
        pools=pools,
    )
    assert data.drawn == {"gan": 4, "pasted": 4}


def test_gan_eval_reports_fid_kid_and_draws_the_checks(gan_run: Path, small_patchset: PatchSet, tmp_path: Path):
    spec = ClassifierSpec(width=0.25, input_px=small_patchset.meta["geometry"]["patch_px"], internal_px=32)
    classifier = tmp_path / "classifier"
    classifier.mkdir()
    model = create_classifier(spec)
    save_checkpoint(
        classifier / "model.pt", Checkpoint(task="classifier", spec=spec.to_dict(), state_dict=model.state_dict())
    )
    out = tmp_path / "eval"
    result = runner.invoke(
        app, ["gan", "eval", str(gan_run), str(out), "--classifier", str(classifier), "--n", "20", "--seed", "2"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "eval.json").read_text())
    assert report["fid"] > 0 and np.isfinite(report["kid"]) and report["real"]["split"] == "train"
    assert "classifier pooled features" in report["extractor"] and report["fake"]["samples"] == 20
    assert (out / "real_vs_fake.png").is_file() and (out / "nearest_real.png").is_file()
    assert (out / "nearest_real_pixels.png").is_file() and report["nearest_real_pixel_distance"]["median"] > 0
    both = runner.invoke(app, ["gan", "eval", str(gan_run), "--n", "20"])
    assert both.exit_code != 0, "an extractor must be named"
    test_out = tmp_path / "eval-test"
    args = ["gan", "eval", str(gan_run), str(test_out), "--classifier", str(classifier), "--n", "20", "--seed", "2"]
    on_test = runner.invoke(app, [*args, "--real-split", "test"])
    assert on_test.exit_code == 0, on_test.output
    test_report = json.loads((test_out / "eval.json").read_text())
    assert test_report["real"]["split"] == "test" and test_report["real"]["patches"] != report["real"]["patches"]
    assert test_report["feature_scale"] == report["feature_scale"], "train and test values share one unit"


def test_filter_classifier_keeps_only_samples_scored_as_defects_and_records_the_acceptance(
    gan_run: Path, small_patchset: PatchSet, tmp_path: Path
):
    from training.gan.sample import DefectFilter, write_gan_pool

    loaded = load_generator(gan_run)
    request = SampleRequest(count=5, seed=2, batch=4, patch_px=32)
    everything = np.concatenate(list(generate(loaded, SampleRequest(count=40, seed=2, batch=4))))
    brightness = everything.reshape(40, -1).mean(axis=1) / 255
    cut = float(np.sort(brightness)[len(brightness) // 2])  # keeps about half of the stream
    keep = DefectFilter(name="brightness", min_score=cut, score=lambda p: p.reshape(len(p), -1).mean(axis=1) / 255)
    summary = write_gan_pool(loaded=loaded, out_dir=tmp_path / "kept", request=request, keep=keep, progress=False)
    pool = load_patchset(tmp_path / "kept")
    assert len(pool.records) == 5 and summary["filter"]["kept"] == 5
    assert summary["filter"]["drawn"] > 5 and 0 < summary["filter"]["acceptance"] < 1
    assert pool.meta["summary"]["filter"]["kept_score_mean"] >= cut
    assert pool.meta["options"]["filter_classifier"] == "brightness" and pool.meta["options"]["min_score"] == cut
    for record in pool.records:  # ids name the latent index; that latent's sample passed the filter
        index = int(record.id.rsplit("-", 1)[1])
        assert brightness[index] >= cut - 1e-9
    never = DefectFilter(name="never", min_score=1.0, score=lambda p: np.zeros(len(p)))
    with pytest.raises(ValueError, match="kept 0 of 100"):
        write_gan_pool(loaded=loaded, out_dir=tmp_path / "none", request=request, keep=never, progress=False)
    assert not (tmp_path / "none").exists(), "no pool is left behind when the filter starves it"


def test_gan_sample_cli_filters_by_a_classifier_run_only_when_asked(gan_run: Path, tmp_path: Path):
    classifier = _classifier_run(tmp_path / "classifier", input_px=32)
    out = tmp_path / "pool"
    args = ["gan", "sample", str(gan_run), str(out), "--n", "4", "-q", "--filter-classifier", str(classifier)]
    result = runner.invoke(app, [*args, "--min-score", "0"])
    assert result.exit_code == 0, result.output
    meta = load_patchset(out).meta
    assert meta["summary"]["filter"]["min_score"] == 0.0 and meta["summary"]["filter"]["acceptance"] == 1.0
    assert "classifier" in meta["options"]["filter_classifier"]
    alone = runner.invoke(app, ["gan", "sample", str(gan_run), str(tmp_path / "p2"), "--n", "4", "--min-score", "0.5"])
    assert alone.exit_code != 0 and "--filter-classifier" in alone.output


def test_gan_sample_and_eval_dry_runs_print_what_they_would_do_and_write_nothing(gan_run: Path, tmp_path: Path):
    out = tmp_path / "pool"
    args = ["gan", "sample", str(gan_run), str(out), "--n", "7", "--truncation", "0.7"]
    sample = runner.invoke(app, [*args, "--dry-run"])
    assert sample.exit_code == 0, sample.output
    resolved = json.loads(sample.output)
    assert resolved["n"] == 7 and resolved["truncation_psi"] == 0.7 and resolved["checkpoint"].endswith(".pt")
    inception = tmp_path / "inception.pt"
    evaluated = runner.invoke(app, ["gan", "eval", str(gan_run), "--inception", str(inception), "--dry-run"])
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.output)["real_split"] == "train"
    assert not out.exists() and not (gan_run / "eval").exists()


def _classifier_run(run: Path, *, input_px: int) -> Path:
    spec = ClassifierSpec(width=0.25, input_px=input_px, internal_px=32)
    run.mkdir()
    model = create_classifier(spec)
    save_checkpoint(run / "model.pt", Checkpoint(task="classifier", spec=spec.to_dict(), state_dict=model.state_dict()))
    return run


@pytest.mark.slow  # a full-size Inception-v3 file (~100 MB) written, read and run: ~6 s
def test_inception_features_load_a_local_state_dict_strictly_and_refuse_anything_else(tmp_path: Path):
    from torchvision.models import inception_v3

    from training.gan.features import inception_features

    weights = tmp_path / "inception.pt"
    torch.save(inception_v3(weights=None, aux_logits=False, init_weights=False).state_dict(), weights)
    extractor = inception_features(weights)
    patches = np.random.default_rng(0).integers(0, 256, size=(2, 40, 40), dtype=np.uint8)
    features = extractor(patches)
    assert features.shape == (2, 2048) and np.isfinite(features).all() and "Inception-v3" in extractor.name
    other = tmp_path / "classifier.pt"
    torch.save(create_classifier(ClassifierSpec(width=0.25)).state_dict(), other)
    with pytest.raises(ValueError, match="not a torchvision Inception-v3 state dict"):
        inception_features(other)
    with pytest.raises(FileNotFoundError, match="no download"):
        inception_features(tmp_path / "missing.pt")


@pytest.mark.slow  # three tiny classifier runs: ~15 s
@pytest.mark.filterwarnings("ignore:training split is:RuntimeWarning")  # a batch of 8 holds few defects: expected
def test_an_experiment_tabulates_gan_rows_from_a_sampled_pool_against_baseline_and_pasted(
    gan_run: Path, small_patchset: PatchSet, tmp_path: Path
):
    from training.data.paste import PasteOptions, make_pasted
    from training.experiments.report import markdown_table
    from training.experiments.runner import ExperimentConfig, run_experiment
    from training.train.schedule import Schedule

    pool = tmp_path / "gan-pool"
    assert runner.invoke(app, ["gan", "sample", str(gan_run), str(pool), "--n", "8", "-q"]).exit_code == 0
    make_pasted(small_patchset, tmp_path / "pasted", PasteOptions(per_defect=2), seed=0, progress=False)
    config = ExperimentConfig(
        task="classification",
        methods=("baseline", "gan", "gan+pasted"),
        seeds=1,
        sizes=(4,),
        schedule=Schedule(iterations=2, val_every=2, batch_size=8, lr=1e-3),
        spec=ClassifierSpec(width=0.125, internal_px=32, input_px=32),
        pools={"pasted": str(tmp_path / "pasted"), "gan": str(pool)},
    )
    rows = run_experiment(small_patchset.root, tmp_path / "exp", config, progress=False)
    assert sorted(r["method"] for r in rows) == ["baseline", "gan", "gan+pasted"]
    assert all(int(r["synthetic_drawn"]) == 4 for r in rows if r["method"] != "baseline")
    table = markdown_table(rows, "classification")
    assert "| verdict vs baseline | verdict vs pasted |" in table and "| gan+pasted | 4 | 1 |" in table
    baseline_line = next(line for line in table.splitlines() if line.startswith("| baseline | 0"))
    assert baseline_line.rstrip().endswith("| reference |  |"), "only GAN rows are judged against pasted"
