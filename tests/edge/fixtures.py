"""Hand-built threshold models as real bundles, for backend, postprocessing and pipeline tests.

Both models answer "is this pixel brighter than ``threshold``", so every stage downstream
has an exact expectation without training anything:

- classifier: logit = (max pixel of the patch - threshold) * gain, shape (N, 1);
- segmenter: logit = (pixel - threshold) * gain, shape (N, 1, P, P).

Built with ``onnx.helper`` (the ``train`` extra; the edge runtime itself never needs onnx)
and written with :mod:`shared.bundle`'s models, so :func:`shared.bundle.load_bundle` accepts them.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from shared.bundle import (
    INPUT_NAME,
    MODEL_NAME,
    OUTPUT_NAME,
    BundleInput,
    BundleManifest,
    BundleOutput,
    Normalization,
    sha256_of,
    write_manifest,
)
from shared.config import GeometryConfig

THRESHOLD = 0.8  # pixel 204 of 255
GAIN = 40.0
OPSET = 17


def reference_logits(task: str, batch: np.ndarray, threshold: float = THRESHOLD, gain: float = GAIN) -> np.ndarray:
    """What the threshold models compute, in numpy (the conformance tests' ground truth)."""
    if task == "classifier":
        return ((batch.max(axis=(1, 2, 3)) - np.float32(threshold)) * np.float32(gain))[:, None]
    return (batch - np.float32(threshold)) * np.float32(gain)


def write_threshold_onnx(
    path: Path,
    task: str,
    patch_px: int,
    threshold: float = THRESHOLD,
    gain: float = GAIN,
    nan_band: tuple[float, float] | None = None,
) -> None:
    """The threshold model as ONNX; ``nan_band=(center, half_width)`` makes the classifier output NaN
    for patches whose brightest pixel lies within ``half_width`` of ``center`` (a broken model:
    ``+ 0 * sqrt(|max - center| - half_width)``). A half-width above 1 makes every output NaN.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    batch = "N"
    x = helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [batch, 1, patch_px, patch_px])
    rank = 2 if task == "classifier" else 4
    t = numpy_helper.from_array(np.full([1] * rank, threshold, np.float32), "threshold")
    k = numpy_helper.from_array(np.full([1] * rank, gain, np.float32), "gain")
    if task == "classifier":
        y = helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [batch, 1])
        nodes = [
            helper.make_node("GlobalMaxPool", [INPUT_NAME], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
            helper.make_node("Sub", ["flat", "threshold"], ["shifted"]),
            helper.make_node("Mul", ["shifted", "gain"], ["scaled" if nan_band else OUTPUT_NAME]),
        ]
        if nan_band is not None:
            center, half_width = nan_band
            extra = {"center": center, "half_width": half_width, "zero": 0.0}
            initializers = [numpy_helper.from_array(np.full([1, 1], v, np.float32), k) for k, v in extra.items()]
            nodes += [
                helper.make_node("Sub", ["flat", "center"], ["off"]),
                helper.make_node("Abs", ["off"], ["distance"]),
                helper.make_node("Sub", ["distance", "half_width"], ["margin"]),
                helper.make_node("Sqrt", ["margin"], ["root"]),  # NaN inside the band
                helper.make_node("Mul", ["root", "zero"], ["poison"]),
                helper.make_node("Add", ["scaled", "poison"], [OUTPUT_NAME]),
            ]
    else:
        y = helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [batch, 1, patch_px, patch_px])
        nodes = [
            helper.make_node("Sub", [INPUT_NAME, "threshold"], ["shifted"]),
            helper.make_node("Mul", ["shifted", "gain"], [OUTPUT_NAME]),
        ]
    extra_initializers = initializers if task == "classifier" and nan_band is not None else []
    graph = helper.make_graph(nodes, f"threshold_{task}", [x], [y], initializer=[t, k, *extra_initializers])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="pumpinspect-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def make_threshold_bundle(
    bundle_dir: Path,
    task: str,
    geometry: GeometryConfig,
    threshold: float = THRESHOLD,
    gain: float = GAIN,
    decision_threshold: float = 0.5,
    pixel_threshold: float = 0.5,
    nan_band: tuple[float, float] | None = None,
) -> Path:
    """One threshold bundle (``task`` classifier or segmenter) in ``bundle_dir`` (``nan_band``: see above)."""
    bundle_dir.mkdir(parents=True, exist_ok=True)
    side = geometry.patch_px
    model_path = bundle_dir / MODEL_NAME
    write_threshold_onnx(model_path, task, side, threshold, gain, nan_band)
    manifest = BundleManifest(
        task=task,
        name=f"threshold-{task}",
        version="0.1.0",
        input=BundleInput(
            channels=1, height_px=side, width_px=side, color="gray", normalization=Normalization(mean=0.0, std=1.0)
        ),
        output=BundleOutput(
            meaning=f"defect logit = (brightest pixel - {threshold}) * {gain}"
            if task == "classifier"
            else f"defect logit per pixel = (pixel - {threshold}) * {gain}",
            shape=["N", 1] if task == "classifier" else ["N", 1, side, side],
        ),
        thresholds={"decision": decision_threshold} if task == "classifier" else {"pixel": pixel_threshold},
        geometry=geometry,
        class_names=["good", "defect"],
        model_sha256=sha256_of(model_path),
        data_fingerprint="",
        metrics={},
        producer={"tests": "tests/edge/fixtures.py"},
        opset=OPSET,
        created_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
        spec={"kind": "threshold", "threshold": threshold, "gain": gain},
    )
    write_manifest(bundle_dir, manifest)
    return bundle_dir


def make_threshold_bundles(root: Path, geometry: GeometryConfig, **options: float) -> tuple[Path, Path]:
    """(classifier_dir, segmenter_dir) threshold bundles under ``root`` for ``geometry``."""
    return (
        make_threshold_bundle(Path(root) / "classifier", "classifier", geometry, **options),
        make_threshold_bundle(Path(root) / "segmenter", "segmenter", geometry, **options),
    )
