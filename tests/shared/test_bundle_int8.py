"""The manifest's optional int8 entry: round trip, old bundles unchanged, and its file checked like model.onnx."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from shared.bundle import (
    BUNDLE_SCHEMA_VERSION,
    INT8_MODEL_NAME,
    MANIFEST_NAME,
    MODEL_NAME,
    BundleError,
    BundleManifest,
    Int8Calibration,
    Int8Model,
    Int8Parity,
    load_bundle,
    sha256_of,
    write_manifest,
)
from shared.config import GeometryConfig
from tests.edge.fixtures import make_threshold_bundle

pytest.importorskip("onnx", reason="building the test models needs onnx (the train extra)")

GEOMETRY = GeometryConfig()


def int8_entry(model_path: Path, **changes) -> Int8Model:
    """A manifest entry for the int8 model at ``model_path`` (figures are illustrative)."""
    fields = dict(
        model_file=model_path.name,
        model_sha256=sha256_of(model_path),
        weights="int8 symmetric per-channel",
        activations="uint8 asymmetric per-tensor",
        calibration=Int8Calibration(
            source="patches/", patch_count=32, pixels_sha256="cd" * 32, dataset_fingerprint="", method="minmax"
        ),
        parity=Int8Parity(
            metric="f1",
            fp32=0.9,
            int8=0.895,
            max_drop=0.01,
            threshold=0.5,
            samples="test split: 10 patches of patches/",
            sample_count=10,
            max_abs_logit_diff=0.02,
            fp32_metrics={"f1": 0.9},
            int8_metrics={"f1": 0.895},
        ),
    )
    fields.update(changes)
    return Int8Model(**fields)


def with_int8(bundle_dir: Path, int8_file: Path | None = None) -> BundleManifest:
    """Give a bundle an int8 entry; ``int8_file`` (default: a copy of model.onnx) becomes model.int8.onnx."""
    target = bundle_dir / INT8_MODEL_NAME
    shutil.copyfile(int8_file or bundle_dir / MODEL_NAME, target)
    manifest = load_bundle(bundle_dir, check_model=False).manifest
    manifest = manifest.model_copy(update={"int8": int8_entry(target)})
    write_manifest(bundle_dir, manifest)
    return manifest


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return make_threshold_bundle(tmp_path / "bundle", "classifier", GEOMETRY)


def test_manifest_with_an_int8_model_round_trips_and_the_loader_returns_its_path(bundle: Path):
    manifest = with_int8(bundle)
    loaded = load_bundle(bundle, expected_geometry=GEOMETRY)
    assert loaded.manifest == manifest and loaded.manifest.schema_version == BUNDLE_SCHEMA_VERSION == 1
    assert loaded.int8_model_path == (bundle / INT8_MODEL_NAME).resolve()
    raw = json.loads((bundle / MANIFEST_NAME).read_text())
    assert raw["int8"]["model_file"] == INT8_MODEL_NAME and raw["int8"]["parity"]["metric"] == "f1"


def test_a_bundle_without_int8_is_written_and_read_as_before(bundle: Path):
    raw = json.loads((bundle / MANIFEST_NAME).read_text())
    assert "int8" not in raw, "runtimes before the int8 entry refuse unknown keys: write none"
    loaded = load_bundle(bundle)
    assert loaded.manifest.int8 is None and loaded.int8_model_path is None


def test_a_missing_or_edited_int8_model_is_refused_by_name(bundle: Path):
    with_int8(bundle)
    model = bundle / INT8_MODEL_NAME
    model.write_bytes(model.read_bytes() + b"\0")
    with pytest.raises(BundleError, match=r"does not match int8\.model_sha256"):
        load_bundle(bundle)
    model.unlink()
    with pytest.raises(BundleError, match=r"\(int8\.model_file\) is missing"):
        load_bundle(bundle)


@pytest.mark.parametrize(
    "model_file, message", [(MODEL_NAME, "must differ from model_file"), ("../x.onnx", "file name inside")]
)
def test_an_int8_entry_that_points_elsewhere_is_refused(bundle: Path, model_file: str, message: str):
    with_int8(bundle)
    raw = json.loads((bundle / MANIFEST_NAME).read_text())
    raw["int8"]["model_file"] = model_file
    (bundle / MANIFEST_NAME).write_text(json.dumps(raw))
    with pytest.raises(BundleError, match=message):
        load_bundle(bundle)
