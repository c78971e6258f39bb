"""Bundle manifest and loader: every way a bundle can be wrong is refused with the file and the reason.

The ONNX models here are built with ``onnx.helper`` (no torch), so these tests are fast;
the torch round trip lives in ``tests/training/test_export.py``.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from shared.bundle import (
    BUNDLE_SCHEMA_VERSION,
    MANIFEST_NAME,
    MODEL_NAME,
    BundleError,
    BundleInput,
    BundleManifest,
    BundleOutput,
    Normalization,
    load_bundle,
    sha256_of,
    write_manifest,
)
from shared.config import GeometryConfig

onnx = pytest.importorskip("onnx")
helper = onnx.helper

GEOMETRY = GeometryConfig(crop_px=1920, tile_px=256, patch_px=128, min_overlap_px=0)


def write_onnx(path: Path, task: str = "classifier", side: int = 128, batch: int | str = "batch") -> None:
    """A tiny valid model: classifier = global mean of the patch, segmenter = identity."""
    x = helper.make_tensor_value_info("patches", onnx.TensorProto.FLOAT, [batch, 1, side, side])
    if task == "classifier":
        y = helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, [batch, 1])
        nodes = [
            helper.make_node("GlobalAveragePool", ["patches"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["logits"], axis=1),
        ]
    else:
        y = helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, [batch, 1, side, side])
        nodes = [helper.make_node("Identity", ["patches"], ["logits"])]
    model = helper.make_model(helper.make_graph(nodes, "tiny", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def make_manifest(model_path: Path, task: str = "classifier", **overrides) -> BundleManifest:
    side = GEOMETRY.patch_px
    fields = dict(
        task=task,
        name="tiny",
        version="1.2.3",
        input=BundleInput(
            channels=1, height_px=side, width_px=side, color="gray", normalization=Normalization(mean=0.5, std=0.25)
        ),
        output=BundleOutput(meaning="defect logit", shape=["N", 1] if task == "classifier" else ["N", 1, side, side]),
        thresholds={"decision": 0.4} if task == "classifier" else {"pixel": 0.5},
        geometry=GEOMETRY,
        class_names=["good", "defect"],
        model_sha256=sha256_of(model_path),
        data_fingerprint="abc",
        metrics={"auc": 0.9},
        producer={"python": "3.11"},
        opset=17,
        created_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
        spec={"name": "resnet18"},
    )
    fields.update(overrides)
    return BundleManifest(**fields)


def make_bundle(root: Path, task: str = "classifier", onnx_side: int = 128, batch: int | str = "batch") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    write_onnx(root / MODEL_NAME, task, onnx_side, batch)
    write_manifest(root, make_manifest(root / MODEL_NAME, task))
    return root


def edit_manifest(bundle: Path, **changes) -> None:
    raw = json.loads((bundle / MANIFEST_NAME).read_text())
    raw.update(changes)
    (bundle / MANIFEST_NAME).write_text(json.dumps(raw))


@pytest.mark.parametrize("task", ["classifier", "segmenter"])
def test_a_valid_bundle_loads_and_its_manifest_round_trips(tmp_path: Path, task: str):
    bundle = make_bundle(tmp_path / "b", task)
    loaded = load_bundle(bundle, expected_geometry=GEOMETRY)
    assert loaded.model_path == (bundle / MODEL_NAME).resolve()
    assert loaded.manifest == make_manifest(bundle / MODEL_NAME, task)
    assert loaded.manifest.schema_version == BUNDLE_SCHEMA_VERSION
    assert sorted(p.name for p in bundle.iterdir()) == [MANIFEST_NAME, MODEL_NAME], "atomic write leaves no temp file"
    raw = json.loads((bundle / MANIFEST_NAME).read_text())
    assert raw["input"]["normalization"]["applied"] == "inside the model"
    assert raw["input"]["value_range"] == "[0,1] = uint8/255"


def test_the_loaded_model_runs_with_the_declared_input(tmp_path: Path):
    ort = pytest.importorskip("onnxruntime")
    loaded = load_bundle(make_bundle(tmp_path / "b"))
    spec = loaded.manifest.input
    batch = np.random.default_rng(0).random((3, spec.channels, spec.height_px, spec.width_px), dtype=np.float32)
    session = ort.InferenceSession(str(loaded.model_path), providers=["CPUExecutionProvider"])
    (logits,) = session.run([loaded.manifest.output.name], {spec.name: batch})
    np.testing.assert_allclose(logits[:, 0], batch.mean(axis=(1, 2, 3)), rtol=1e-5)


def test_missing_manifest_or_model_is_named(tmp_path: Path):
    bundle = make_bundle(tmp_path / "b")
    (bundle / MODEL_NAME).unlink()
    with pytest.raises(BundleError, match=r"model\.onnx.*missing"):
        load_bundle(bundle)
    (bundle / MANIFEST_NAME).unlink()
    with pytest.raises(BundleError, match=r"bundle\.json is missing"):
        load_bundle(bundle)
    with pytest.raises(BundleError, match="bundle folder not found"):
        load_bundle(tmp_path / "nowhere")


def test_invalid_json_and_unknown_schema_version_are_refused(tmp_path: Path):
    bundle = make_bundle(tmp_path / "b")
    edit_manifest(bundle, schema_version=99)
    with pytest.raises(BundleError, match=r"bundle\.json: schema_version 99 is not supported \(this runtime reads 1"):
        load_bundle(bundle)
    (bundle / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(BundleError, match=r"bundle\.json: invalid JSON"):
        load_bundle(bundle)


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"version": "1.2"}, "version", "should match pattern"),
        ({"task": "detector"}, "task", "classifier"),
        ({"model_sha256": "xyz"}, "model_sha256", "should match pattern"),
        ({"model_file": "../model.onnx"}, "model_file", "file name inside the bundle"),
        ({"thresholds": {"pixel": 0.5}}, "(root)", "must contain 'decision'"),
        ({"thresholds": {"decision": 2.0}}, "(root)", "probability"),
        ({"created_at": "2026-01-02T03:04:05"}, "created_at", "timezone"),
        ({"opset": 13}, "opset", "greater than or equal to 17"),
        ({"surprise": 1}, "surprise", "Extra inputs"),
    ],
)
def test_field_errors_name_the_field_and_the_reason(tmp_path: Path, changes: dict, field: str, reason: str):
    bundle = make_bundle(tmp_path / "b")
    edit_manifest(bundle, **changes)
    with pytest.raises(BundleError) as error:
        load_bundle(bundle)
    message = str(error.value)
    assert str(bundle / MANIFEST_NAME) in message and f"{field}:" in message and reason in message, message


@pytest.mark.parametrize(
    ("input_changes", "reason"),
    [
        ({"color": "bgr"}, "needs 3 channel"),
        ({"height_px": 64}, "geometry.patch_px is 128"),
        ({"layout": "NHWC"}, "'NCHW'"),
        ({"normalization": {"mean": 0.5, "std": 0.25, "applied": "by the edge"}}, "inside the model"),
    ],
)
def test_an_inconsistent_input_contract_is_refused(tmp_path: Path, input_changes: dict, reason: str):
    bundle = make_bundle(tmp_path / "b")
    raw = json.loads((bundle / MANIFEST_NAME).read_text())
    edit_manifest(bundle, input={**raw["input"], **input_changes})
    with pytest.raises(BundleError, match=reason):
        load_bundle(bundle)


def test_an_edited_model_fails_the_checksum(tmp_path: Path):
    bundle = make_bundle(tmp_path / "b")
    data = bytearray((bundle / MODEL_NAME).read_bytes())
    data[-1] ^= 0xFF
    (bundle / MODEL_NAME).write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"model\.onnx: sha256 [0-9a-f]{64} does not match model_sha256"):
        load_bundle(bundle, check_model=False)


def test_a_geometry_mismatch_lists_each_differing_field(tmp_path: Path):
    bundle = make_bundle(tmp_path / "b")
    station = GeometryConfig(crop_px=1920, tile_px=200, patch_px=100, min_overlap_px=0)
    with pytest.raises(BundleError) as error:
        load_bundle(bundle, expected_geometry=station)
    message = str(error.value)
    assert "tile_px: bundle 256, expected 200" in message and "patch_px: bundle 128, expected 100" in message
    assert "crop_px" not in message and MANIFEST_NAME in message


def test_an_onnx_input_of_another_size_is_refused_unless_model_checks_are_off(tmp_path: Path):
    bundle = tmp_path / "b"
    bundle.mkdir()
    write_onnx(bundle / MODEL_NAME, side=64)
    write_manifest(bundle, make_manifest(bundle / MODEL_NAME))  # declares 128 x 128
    with pytest.raises(
        BundleError,
        match=r"ONNX input does not match bundle\.json: height 64 \(declared 128\); "
        r"width 64 \(declared 128\)",
    ):
        load_bundle(bundle)
    assert load_bundle(bundle, check_model=False).manifest.input.height_px == 128


def test_a_fixed_batch_axis_is_refused(tmp_path: Path):
    bundle = make_bundle(tmp_path / "b", batch=8)
    with pytest.raises(BundleError, match="batch axis fixed to 8 \\(must be dynamic\\)"):
        load_bundle(bundle)


def test_a_wrong_output_shape_or_name_is_refused(tmp_path: Path):
    bundle = tmp_path / "b"
    bundle.mkdir()
    write_onnx(bundle / MODEL_NAME, task="segmenter")
    write_manifest(bundle, make_manifest(bundle / MODEL_NAME, task="classifier"))  # declares (N, 1)
    with pytest.raises(BundleError, match=r"output 'logits' has shape \['batch', 1, 128, 128\]"):
        load_bundle(bundle)
    raw = json.loads((bundle / MANIFEST_NAME).read_text())
    edit_manifest(bundle, output={**raw["output"], "name": "scores"})
    with pytest.raises(BundleError, match="output 'scores' declared in bundle.json is not in the model"):
        load_bundle(bundle)


def test_a_file_that_is_not_onnx_is_refused_by_the_model_check(tmp_path: Path):
    bundle = tmp_path / "b"
    bundle.mkdir()
    (bundle / MODEL_NAME).write_bytes(b"not a model")
    write_manifest(bundle, make_manifest(bundle / MODEL_NAME))
    with pytest.raises(BundleError, match="ONNX Runtime cannot load the model"):
        load_bundle(bundle)


@pytest.mark.parametrize(
    ("version", "part", "expected"),
    [
        ("0.1.0", "patch", "0.1.1"),
        ("0.1.9", "minor", "0.2.0"),
        ("1.4.2", "major", "2.0.0"),
        ("0.2.0-rc.1", "patch", "0.2.0"),
        ("1.0.0+build.7", "patch", "1.0.1"),
    ],
)
def test_next_version_raises_one_part_and_zeroes_the_rest(version, part, expected):
    from shared.bundle import next_version, version_key

    assert next_version(version, part) == expected
    assert version_key(expected) > version_key(version)


def test_next_version_refuses_what_is_not_a_version():
    from shared.bundle import next_version

    with pytest.raises(ValueError, match="not a semantic version"):
        next_version("v1", "patch")
    with pytest.raises(ValueError, match="choose one of"):
        next_version("1.0.0", "micro")
