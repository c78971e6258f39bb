"""``export --quantize int8``: the int8 model is written beside float32 only when its test metrics hold.

The held-back labels here are the float32 model's own decisions (patches and pixels close to the
threshold are left out or marked ignore), so float32 scores F1 / defect IoU = 1 by construction
and whatever the int8 model loses is the quantisation's: a good calibration keeps it, a black
calibration set (every activation range collapses to one value) must be refused.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from shared.bundle import INT8_MODEL_NAME, MANIFEST_NAME, MODEL_NAME, REPORT_NAME, load_bundle
from shared.config import GeometryConfig
from shared.masks import MASK_DEFECT, MASK_IGNORE
from tests.conftest import write_folder_source
from training.data.dataset import load_dataset
from training.data.importers import ImportOptions, get_importer, run_import
from training.data.patches import PatchMode, PatchOptions, make_patches
from training.data.patchset import PATCHES_NAME, PatchRecord, PatchSet, load_patchset
from training.data.table import write_rows
from training.export import ExportError, export_bundle
from training.export.quantize import Int8Request, read_patches
from training.models.checkpoint import CHECKPOINT_NAME, Checkpoint, save_checkpoint
from training.models.classifier import ClassifierSpec, create_classifier
from training.models.segmenter import SegmenterSpec, create_segmenter

GEOMETRY = GeometryConfig(crop_px=256, tile_px=64, patch_px=32)
SPECS = {
    "classifier": ClassifierSpec(width=0.125, input_px=32, internal_px=32),
    "segmenter": SegmenterSpec(encoder="tu-resnet10t", input_px=32),
}
# Test patches (classifier) or pixels (segmenter) this close to the threshold logit are left out: far more
# than the int8 model's logit error (measured: < 0.1 for the classifier below, < 0.3 for the segmenter).
MARGIN_LOGIT = {"classifier": 0.5, "segmenter": 1.0}


@pytest.fixture(scope="module")
def patches(tmp_path_factory) -> Path:
    """192 grid patches of 32 px (64 in the test split) from twelve images, every second with a defect."""
    root = tmp_path_factory.mktemp("int8-data")
    src = write_folder_source(root / "src", count=12)
    run_import(get_importer("folder"), src, root / "ds", ImportOptions(), progress=False)
    options = PatchOptions(mode=PatchMode.GRID, test_fraction=0.25)
    make_patches(load_dataset(root / "ds"), root / "patches", GEOMETRY, options, seed=0, progress=False)
    return root / "patches"


def fit_a_few_steps(model: torch.nn.Module, patchset: PatchSet, steps: int = 20) -> None:
    """Adam on 8 defective + 8 good train patches: enough for outputs that differ between patches
    (a fresh classifier gives every patch nearly the same logit, finer than int8 resolves)."""
    train = [record for record in patchset.records if record.split != "test"]
    picked = [r for r in train if r.has_defect][:8] + [r for r in train if not r.has_defect][:8]
    batch = read_patches(patchset, picked, 1, 32)
    inputs, labels = torch.from_numpy(batch.inputs), torch.from_numpy(batch.labels)[:, None]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(model(inputs), labels).backward()
        optimizer.step()
    model.eval()


def _teacher(task: str, patchset: PatchSet) -> torch.nn.Module:
    if task == "classifier":
        model = create_classifier(SPECS[task])
        fit_a_few_steps(model, patchset)
        return model
    return create_segmenter(SPECS[task]).eval()  # a fresh segmenter's pixel logits already spread (std ~0.8)


def trained_like_run(run_dir: Path, task: str, patches: Path, relabelled: Path) -> Path:
    """A seeded model saved as a run whose threshold is the median test logit, and ``relabelled``:
    ``patches`` with test labels (classifier) or masks (segmenter) set to the model's own decisions."""
    torch.manual_seed(0)
    patchset = load_patchset(patches)
    test = [record for record in patchset.records if record.split == "test"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on a busy 2-core machine two spinning OpenMP threads make these steps 50x slower
    try:
        model = _teacher(task, patchset)
        with torch.inference_mode():
            logits = model(torch.from_numpy(read_patches(patchset, test, 1, 32).inputs)).numpy()[:, 0]
    finally:
        torch.set_num_threads(threads)
    cut, margin = float(np.median(logits)), MARGIN_LOGIT[task]
    shutil.copytree(patches, relabelled)
    if task == "classifier":
        rows = [record for record in patchset.records if record.split != "test"]
        for record, logit in zip(test, logits, strict=True):
            if abs(logit - cut) > margin:
                rows.append(dataclasses.replace(record, has_defect=bool(logit > cut)))
        write_rows(relabelled / PATCHES_NAME, rows, PatchRecord)
    else:
        for record, logit in zip(test, logits, strict=True):
            mask = np.where(logit > cut, MASK_DEFECT, 0).astype(np.uint8)
            mask[np.abs(logit - cut) <= margin] = MASK_IGNORE
            cv2.imwrite(str(relabelled / record.mask), mask)
    run_dir.mkdir(parents=True)
    checkpoint = Checkpoint(
        task=task,
        spec=model.spec.to_dict(),
        state_dict=model.state_dict(),
        threshold=float(1.0 / (1.0 + np.exp(-cut))),
        geometry=GEOMETRY.model_dump(),
        name=f"tiny-{task}",
    )
    save_checkpoint(run_dir / CHECKPOINT_NAME, checkpoint)
    return run_dir


def black_copy(patches: Path, destination: Path) -> Path:
    """The patch set with every image black: a calibration set that says nothing about the line."""
    shutil.copytree(patches, destination)
    for image in (destination / "images").iterdir():
        cv2.imwrite(str(image), np.zeros((32, 32), np.uint8))
    return destination


@pytest.fixture(scope="module")
def classifier_run(patches, tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("classifier")
    return trained_like_run(root / "run", "classifier", patches, root / "labelled"), root / "labelled"


def test_int8_model_is_written_beside_float32_with_its_parity_report(classifier_run, tmp_path: Path):
    run, labelled = classifier_run
    report = export_bundle(run, tmp_path / "bundle", patches=labelled, int8=Int8Request(calibration=labelled))

    bundle = tmp_path / "bundle"
    assert sorted(p.name for p in bundle.iterdir()) == sorted([MANIFEST_NAME, MODEL_NAME, INT8_MODEL_NAME, REPORT_NAME])
    loaded = load_bundle(bundle, expected_geometry=GEOMETRY)
    entry = loaded.manifest.int8
    assert entry is not None and loaded.int8_model_path == (bundle / INT8_MODEL_NAME).resolve()
    assert (entry.quant_format, entry.weights) == ("QDQ", "int8 symmetric per-channel")
    parity = entry.parity
    assert parity.metric == "f1" and parity.fp32 == 1.0 and parity.fp32 - parity.int8 <= 0.01
    assert parity.sample_count == len([r for r in load_patchset(labelled).records if r.split == "test"])
    assert parity.int8_metrics["positives"] > 0 and parity.samples.startswith("test split: ")
    calibration = entry.calibration
    assert calibration.patch_count == 128 and calibration.source == str(labelled) and calibration.method == "minmax"
    assert report.int8 == entry
    assert json.loads((bundle / REPORT_NAME).read_text())["int8"]["parity"]["metric"] == "f1"

    # The same calibration patches give the same fingerprint; the int8 graph really holds int8 weights.
    import onnx

    graph = onnx.load(str(loaded.int8_model_path)).graph
    assert any(node.op_type == "DequantizeLinear" for node in graph.node)
    assert any(init.data_type == onnx.TensorProto.INT8 for init in graph.initializer)


def test_int8_calibrated_on_black_patches_is_refused_and_nothing_is_written(classifier_run, tmp_path: Path):
    run, labelled = classifier_run
    black = black_copy(labelled, tmp_path / "black")
    (tmp_path / "out").mkdir()
    with pytest.raises(ExportError, match=r"int8 model refused: f1 .* drops by .* > 0.01.*Nothing was written"):
        export_bundle(run, tmp_path / "out" / "bundle", patches=labelled, int8=Int8Request(calibration=black))
    assert list((tmp_path / "out").iterdir()) == [], "neither the bundle nor a temporary folder may remain"


def test_int8_needs_a_patch_set_with_a_test_split_before_anything_is_written(classifier_run, tmp_path: Path):
    run, labelled = classifier_run
    with pytest.raises(ExportError, match="--quantize int8 needs --patches"):
        export_bundle(run, tmp_path / "bundle", int8=Int8Request(calibration=labelled))
    with pytest.raises(ExportError, match="max_drop"):
        export_bundle(run, tmp_path / "bundle", patches=labelled, int8=Int8Request(calibration=labelled, max_drop=-1))
    assert not (tmp_path / "bundle").exists()


@pytest.mark.slow
def test_segmenter_int8_is_gated_on_defect_iou(patches, tmp_path: Path):
    labelled = tmp_path / "labelled"
    run = trained_like_run(tmp_path / "run", "segmenter", patches, labelled)
    report = export_bundle(run, tmp_path / "bundle", patches=labelled, int8=Int8Request(calibration=labelled))
    parity = report.int8.parity
    assert parity.metric == "defect_iou" and parity.fp32 == 1.0 and parity.fp32 - parity.int8 <= 0.01
    assert load_bundle(tmp_path / "bundle").int8_model_path is not None


def test_the_export_command_writes_the_int8_model_and_refuses_half_an_int8_request(classifier_run, tmp_path: Path):
    from typer.testing import CliRunner

    from training.cli import app

    run, labelled = classifier_run
    runner = CliRunner()
    args = ["export", str(run), str(tmp_path / "bundle"), "--patches", str(labelled), "--quantize", "int8"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "go together" in result.output and not (tmp_path / "bundle").exists()
    result = runner.invoke(app, [*args, "--calibration", str(labelled)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["int8"]["parity"]["metric"] == "f1"
    assert load_bundle(tmp_path / "bundle").int8_model_path is not None
