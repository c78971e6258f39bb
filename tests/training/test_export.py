"""Checkpoint -> ONNX bundle: the round trip to ONNX Runtime, and every refusal leaves nothing behind."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from shared.bundle import MANIFEST_NAME, MODEL_NAME, REPORT_NAME, BundleError, load_bundle
from shared.config import GeometryConfig
from training.export import ExportError, ExportReport, export_bundle
from training.models.checkpoint import CHECKPOINT_NAME, Checkpoint, save_checkpoint
from training.models.classifier import ClassifierSpec, create_classifier
from training.models.segmenter import SegmenterSpec, create_segmenter
from training.outputs import OutputExistsError

GEOMETRY = GeometryConfig(crop_px=1920, tile_px=256, patch_px=128, min_overlap_px=0)
# tu-resnet10t: the quickest smp encoder to build, trace and run on 2 CPU cores (the FPN decoder dominates)
SPECS = {
    "classifier": ClassifierSpec(width=0.125, internal_px=32),
    "segmenter": SegmenterSpec(encoder="tu-resnet10t"),
}


def save_run(run_dir: Path, task: str, spec=None, geometry: GeometryConfig | None = GEOMETRY, **fields) -> Path:
    """A freshly initialised model saved as a training run folder (no training)."""
    torch.manual_seed(0)
    spec = spec or SPECS[task]
    model = create_classifier(spec) if task == "classifier" else create_segmenter(spec)
    run_dir.mkdir(parents=True)
    checkpoint = Checkpoint(
        task=task,
        spec=model.spec.to_dict(),
        state_dict=model.state_dict(),
        threshold=0.3,
        geometry=geometry.model_dump() if geometry else {},
        data_fingerprint="fp-123",
        metrics={"test_auc": 0.75, "test_f1": float("nan")},
        name=f"tiny-{task}",
        **fields,
    )
    save_checkpoint(run_dir / CHECKPOINT_NAME, checkpoint)
    return run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    return {task: save_run(root / task, task) for task in SPECS}


@pytest.fixture(scope="module")
def exported(runs, tmp_path_factory) -> dict[str, tuple[Path, ExportReport]]:
    """Each task exported once (version 1.0.0); tests that change a bundle work on a copy."""
    root = tmp_path_factory.mktemp("bundles")
    return {task: (root / task, export_bundle(run, root / task, version="1.0.0")) for task, run in runs.items()}


def copy_bundle(exported, destination: Path) -> Path:
    return Path(shutil.copytree(exported["classifier"][0], destination))


@pytest.mark.parametrize("task", ["classifier", "segmenter"])
def test_export_round_trip_matches_pytorch_in_onnx_runtime(runs, exported, task: str):
    bundle, report = exported[task]

    assert sorted(p.name for p in bundle.iterdir()) == sorted([MANIFEST_NAME, MODEL_NAME, REPORT_NAME])
    assert not [p for p in bundle.parent.iterdir() if p.name.startswith(".")], "no temporary folder left behind"
    loaded = load_bundle(bundle, expected_geometry=GEOMETRY)
    manifest = loaded.manifest
    assert (manifest.task, manifest.name, manifest.version, manifest.opset) == (task, f"tiny-{task}", "1.0.0", 17)
    assert manifest.thresholds == ({"decision": 0.3} if task == "classifier" else {"pixel": 0.3})
    assert manifest.metrics == {"test_auc": 0.75} and report.dropped_metrics == ["test_f1"]
    assert manifest.data_fingerprint == "fp-123" and manifest.geometry == GEOMETRY
    assert manifest.spec == SPECS[task].to_dict() and "torch" in manifest.producer
    assert (manifest.input.channels, manifest.input.height_px, manifest.input.color) == (1, 128, "gray")

    assert report.samples.startswith("32 random patches") and report.sample_count == 32
    assert [check.batch_size for check in report.parity] == [32, 1]
    assert report.max_abs_diff <= 1e-4
    assert json.loads((bundle / REPORT_NAME).read_text()) == report.model_dump(mode="json")

    batch = np.random.default_rng(1).random((3, 1, 128, 128), dtype=np.float32)
    session = ort.InferenceSession(str(loaded.model_path), providers=["CPUExecutionProvider"])
    (onnx_logits,) = session.run([manifest.output.name], {manifest.input.name: batch})
    with torch.inference_mode():
        torch_logits = Checkpoint(**torch.load(runs[task] / CHECKPOINT_NAME, weights_only=True)).build()(
            torch.from_numpy(batch)
        )
    expected_shape = (3, 1) if task == "classifier" else (3, 1, 128, 128)
    assert onnx_logits.shape == expected_shape
    np.testing.assert_allclose(onnx_logits, torch_logits.numpy(), atol=1e-4, rtol=0)


def test_parity_uses_real_patches_from_a_patch_set(small_patchset, tmp_path: Path):
    small = GeometryConfig(crop_px=256, tile_px=64, patch_px=32)
    spec = ClassifierSpec(width=0.125, input_px=32, internal_px=32)
    run = save_run(tmp_path / "run", "classifier", spec=spec, geometry=small)
    report = export_bundle(run, tmp_path / "bundle", patches=small_patchset.root)
    assert report.samples == f"first 32 patches of {small_patchset.root}"
    assert report.sample_count == 32 and report.max_abs_diff <= 1e-4
    assert load_bundle(tmp_path / "bundle", expected_geometry=small).manifest.input.height_px == 32

    few = Path(shutil.copytree(small_patchset.root, tmp_path / "few"))
    rows = (few / "patches.csv").read_text().splitlines(keepends=True)
    (few / "patches.csv").write_text("".join(rows[:4]))  # header + 3 patches
    report = export_bundle(run, tmp_path / "bundle-few", patches=few)
    assert report.samples == f"first 3 patches of {few}, repeated to 32" and report.sample_count == 32


def test_a_parity_failure_writes_nothing_and_keeps_an_existing_bundle(runs, exported, tmp_path: Path):
    with pytest.raises(ExportError, match=r"ONNX Runtime differs from PyTorch by .* at batch 32 \(allowed -1\)"):
        export_bundle(runs["classifier"], tmp_path / "bundle", atol=-1)
    assert list(tmp_path.iterdir()) == [], "neither the bundle nor a temporary folder may remain"

    bundle = copy_bundle(exported, tmp_path / "bundle")
    with pytest.raises(ExportError):
        export_bundle(runs["classifier"], bundle, version="2.0.0", overwrite=True, atol=-1)
    assert load_bundle(bundle).manifest.version == "1.0.0"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_an_existing_bundle_is_replaced_only_with_overwrite(runs, exported, tmp_path: Path):
    bundle = copy_bundle(exported, tmp_path / "bundle")
    with pytest.raises(OutputExistsError, match="already exists"):
        export_bundle(runs["classifier"], bundle)
    export_bundle(runs["classifier"], bundle, version="0.2.0", name="renamed", overwrite=True)
    assert load_bundle(bundle).manifest.name == "renamed"


def test_an_edited_exported_model_fails_its_checksum(exported, tmp_path: Path):
    bundle = copy_bundle(exported, tmp_path / "bundle")
    model = bundle / MODEL_NAME
    model.write_bytes(model.read_bytes()[:-1] + b"\0")
    with pytest.raises(BundleError, match="does not match model_sha256"):
        load_bundle(bundle)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"version": "v1"}, "'v1' is not a semantic version"),
        ({"opset": 13}, "opset 13 is too old"),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_written(runs, tmp_path: Path, kwargs: dict, message: str):
    with pytest.raises(ExportError, match=message):
        export_bundle(runs["classifier"], tmp_path / "bundle", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_a_checkpoint_the_edge_cannot_use_is_refused(tmp_path: Path):
    no_geometry = save_run(tmp_path / "no-geometry", "classifier", geometry=None)
    with pytest.raises(ExportError, match="checkpoint records no geometry"):
        export_bundle(no_geometry, tmp_path / "b1")
    other_size = save_run(tmp_path / "other-size", "classifier", geometry=GEOMETRY.model_copy(update={"patch_px": 64}))
    with pytest.raises(ExportError, match="spec.input_px 128 differs from geometry.patch_px 64"):
        export_bundle(other_size, tmp_path / "b2")
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        export_bundle(tmp_path / "missing", tmp_path / "b3")
    assert not (tmp_path / "b1").exists() and not (tmp_path / "b2").exists()


def test_a_retrained_bundle_records_its_parent_and_bumps_its_version(runs, exported, tmp_path: Path):
    parent_dir, parent_report = exported["classifier"]
    report = export_bundle(runs["classifier"], tmp_path / "v2", parent=parent_dir)
    manifest = load_bundle(tmp_path / "v2").manifest
    assert report.version == manifest.version == "1.0.1", "patch bump of the parent's 1.0.0"
    assert manifest.parent is not None and manifest.parent.version == "1.0.0"
    assert manifest.parent.model_sha256 == parent_report.model_sha256 and manifest.name == parent_report.name
    minor = export_bundle(runs["classifier"], tmp_path / "v3", parent=parent_dir, bump="minor")
    assert minor.version == "1.1.0"
    first = json.loads((parent_dir / MANIFEST_NAME).read_text())
    assert "parent" not in first, "a bundle without a parent has no parent key (older stations read it)"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"version": "1.0.0"}, "version 1.0.0 is not above the parent's 1.0.0; leave --version out for 1.0.1"),
        ({"version": "0.9.9"}, "not above the parent's"),
    ],
)
def test_a_version_at_or_below_the_parent_is_refused(runs, exported, tmp_path: Path, kwargs: dict, message: str):
    with pytest.raises(ExportError, match=message):
        export_bundle(runs["classifier"], tmp_path / "b", parent=exported["classifier"][0], **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_a_parent_of_another_task_is_refused(runs, exported, tmp_path: Path):
    with pytest.raises(ExportError, match="is a segmenter bundle; this checkpoint is a classifier"):
        export_bundle(runs["classifier"], tmp_path / "b", parent=exported["segmenter"][0])
    with pytest.raises(ExportError, match="--parent"):
        export_bundle(runs["classifier"], tmp_path / "b", parent=tmp_path / "nothing")
