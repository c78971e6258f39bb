"""``backend.precision = "int8"`` on ONNX Runtime: the bundle's int8 model runs, or the backend says why not.

The int8 models are the threshold models of :mod:`tests.edge.fixtures` quantised here with ONNX
Runtime's ``quantize_static`` (QDQ, per-channel), as ``pump-train export --quantize int8`` does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from edge.backends import BackendConfig, BackendError, create_backend
from shared.bundle import INPUT_NAME, INT8_MODEL_NAME, MODEL_NAME, LoadedBundle, load_bundle, write_manifest
from shared.config import GeometryConfig
from tests.edge.fixtures import THRESHOLD, make_threshold_bundle, reference_logits
from tests.shared.test_bundle_int8 import int8_entry

pytest.importorskip("onnx", reason="building the test models needs onnx (the train extra)")
quantization = pytest.importorskip("onnxruntime.quantization")

GEOMETRY = GeometryConfig()
INT8 = {"kind": "onnxruntime", "precision": "int8", "ort_provider": "cpu"}


def patches(count: int, seed: int = 0) -> np.ndarray:
    """Gray patches in [0, 1], every third with a spot well above the models' threshold."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(60, 180, (count, 1, 128, 128)).astype(np.uint8)
    pixels[::3, 0, 40:44, 70:75] = 240
    return pixels.astype(np.float32) / np.float32(255.0)


class _Reader(quantization.CalibrationDataReader):
    def __init__(self, batch: np.ndarray) -> None:
        self._batches = iter([batch[start : start + 8] for start in range(0, len(batch), 8)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: batch}


def make_int8_bundle(bundle_dir: Path, task: str) -> Path:
    make_threshold_bundle(bundle_dir, task, GEOMETRY)
    quantization.quantize_static(
        bundle_dir / MODEL_NAME,
        bundle_dir / INT8_MODEL_NAME,
        _Reader(patches(32, seed=1)),
        quant_format=quantization.QuantFormat.QDQ,
        per_channel=True,
        activation_type=quantization.QuantType.QUInt8,
        weight_type=quantization.QuantType.QInt8,
    )
    manifest = load_bundle(bundle_dir, check_model=False).manifest
    write_manifest(bundle_dir, manifest.model_copy(update={"int8": int8_entry(bundle_dir / INT8_MODEL_NAME)}))
    return bundle_dir


@pytest.fixture(scope="module")
def int8_bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, LoadedBundle]:
    root = tmp_path_factory.mktemp("int8")
    return {
        task: load_bundle(make_int8_bundle(root / task, task), expected_geometry=GEOMETRY)
        for task in ("classifier", "segmenter")
    }


@pytest.mark.parametrize("task", ["classifier", "segmenter"])
def test_onnxruntime_int8_runs_the_bundles_int8_model(int8_bundles, task: str):
    batch = patches(64)
    expected = reference_logits(task, batch)
    with create_backend(None, int8_bundles[task], BackendConfig(**INT8)) as backend:
        info = backend.describe()
        assert (info["precision"], info["model_file"], info["device"]) == ("int8", INT8_MODEL_NAME, "cpu")
        logits = backend.infer(batch)
    assert logits.shape == expected.shape and logits.dtype == np.float32
    # int8 steps: the input's 1/255 and the output's range/255 (logits span ~±30 here)
    np.testing.assert_allclose(logits, expected, atol=1.0)
    clear = np.abs(expected) > 2.0  # away from the threshold the decisions are the float32 model's
    np.testing.assert_array_equal((logits > 0)[clear], (expected > 0)[clear])
    if task == "classifier":
        assert (logits[::3] > 0).all() and (logits[1::3] < 0).all(), f"spots above {THRESHOLD} must be found"

    with create_backend(None, int8_bundles[task], BackendConfig(**{**INT8, "precision": "fp32"})) as fp32:
        assert (fp32.describe()["precision"], fp32.describe()["model_file"]) == ("fp32", MODEL_NAME)
        np.testing.assert_allclose(fp32.infer(batch), expected, atol=1e-4)


def test_int8_on_a_bundle_without_an_int8_model_is_refused_with_the_way_out(tmp_path: Path):
    bundle = load_bundle(make_threshold_bundle(tmp_path / "b", "classifier", GEOMETRY))
    with pytest.raises(BackendError, match=r"offers no int8 model; export one with `pump-train export --quantize"):
        create_backend(None, bundle, BackendConfig(**INT8))


def test_int8_needs_calibration_dir_only_when_tensorrt_builds_the_engine(tmp_path: Path):
    assert BackendConfig(precision="int8").calibration_dir is None  # auto: ONNX Runtime needs none
    assert BackendConfig(kind="onnxruntime", precision="int8").calibration_dir is None
    with pytest.raises(ValidationError, match="calibration_dir"):
        BackendConfig(kind="tensorrt", precision="int8")
    assert BackendConfig(kind="tensorrt", precision="int8", calibration_dir=tmp_path).calibration_dir == tmp_path
