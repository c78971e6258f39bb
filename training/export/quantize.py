"""The bundle's optional int8 model: static quantisation, and the test-metric gate it must pass.

``pump-train export --quantize int8 --calibration PATCHES`` adds ``model.int8.onnx`` beside
``model.onnx``. ONNX Runtime's ``quantize_static`` writes QDQ (QuantizeLinear/DequantizeLinear
around the int8 operators, the format its CPU kernels are tuned for): weights int8 symmetric
per output channel, activations uint8 asymmetric per tensor (x86 with VNNI and ARM both run
u8s8), ranges by min/max over the calibration patches. The patches are converted exactly like
the float32 model's input (:func:`shared.pixels.to_channels` then
:func:`shared.pixels.to_model_input`, the conversion of the export's parity check and of the
edge's tiler).

The gate: both models run in ONNX Runtime on the held-back (``test`` split) patches of the
export's ``--patches`` set and are scored at the bundle's own threshold; when the int8 model's
F1 (classifier) or defect IoU (segmenter) is more than ``max_drop`` (0.01) below the float32
model's, the whole export is refused and nothing is written (an existing bundle stays): the
user asked for a bundle with an int8 model, and a bundle silently without one would surface
only on the line. Re-run without ``--quantize`` for a float32-only bundle.
"""

from __future__ import annotations

import hashlib
import math
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime

from shared.bundle import INPUT_NAME, INT8_MODEL_NAME, OUTPUT_NAME, Int8Calibration, Int8Model, Int8Parity
from shared.pixels import to_channels, to_model_input
from training.data.patchset import PatchOrigin, PatchRecord, PatchSet, load_patchset
from training.data.splits import TEST
from training.export.onnx_export import ExportError
from training.metrics import classification_metrics, segmentation_metrics
from training.outputs import sha256_file

CALIBRATION_METHOD = "minmax"
WEIGHTS = "int8 symmetric per-channel"
ACTIVATIONS = "uint8 asymmetric per-tensor"
CALIBRATION_BATCH = 16
SCORING_BATCH = 64
GATED_METRIC = {"classifier": "f1", "segmenter": "defect_iou"}


@dataclass(frozen=True)
class Int8Request:
    """What ``--quantize int8`` asks for: the calibration patch set and the gate."""

    calibration: Path
    max_drop: float = 0.01
    max_patches: int = 256


@dataclass(frozen=True)
class PatchBatch:
    """Patches as the model takes them (float32 NCHW in [0, 1]), with their labels and masks."""

    inputs: np.ndarray
    labels: np.ndarray  # (N,) 1.0 = defective patch
    masks: np.ndarray  # (N, H, W) uint8, shared.masks values
    described: str
    pixels_sha256: str


@dataclass(frozen=True)
class PreparedInt8:
    """Everything the int8 step needs, read (and checked) before the export writes anything."""

    request: Int8Request
    calibration: PatchBatch
    calibration_info: Int8Calibration
    heldback: PatchBatch


def prepare_int8(request: Int8Request, patches: Path | None, channels: int, input_px: int) -> PreparedInt8:
    """Read the calibration patches and the held-back patches; raises :class:`ExportError` when unusable."""
    if not 0.0 <= request.max_drop < 1.0:
        raise ExportError(f"int8: max_drop must be in [0, 1), got {request.max_drop}")
    if request.max_patches < 1:
        raise ExportError(f"int8: the calibration needs at least 1 patch, got max_patches={request.max_patches}")
    if patches is None:
        raise ExportError(
            "--quantize int8 needs --patches: the int8 model is scored against float32 on that set's test split"
        )
    calibration_set = load_patchset(request.calibration)
    chosen = _calibration_records(calibration_set, request.max_patches)
    calibration = read_patches(calibration_set, chosen, channels, input_px)
    heldback_set = load_patchset(patches)
    heldback_records = [r for r in heldback_set.records if r.split == TEST and r.origin == PatchOrigin.REAL.value]
    if not heldback_records:
        raise ExportError(f"{patches}: no real patches in the test split to score the int8 model on")
    heldback = read_patches(heldback_set, heldback_records, channels, input_px)
    if not heldback.labels.any():
        raise ExportError(f"{patches}: the test split has no defective patch; F1 / defect IoU would say nothing")
    info = Int8Calibration(
        source=str(request.calibration),
        patch_count=len(chosen),
        pixels_sha256=calibration.pixels_sha256,
        dataset_fingerprint=str(calibration_set.meta.get("dataset", {}).get("fingerprint", "")),
        method=CALIBRATION_METHOD,
    )
    return PreparedInt8(request=request, calibration=calibration, calibration_info=info, heldback=heldback)


def _calibration_records(patchset: PatchSet, max_patches: int) -> list[PatchRecord]:
    """Up to ``max_patches`` rows spread evenly over the set, test split left out when others exist."""
    records = [record for record in patchset.records if record.split != TEST] or list(patchset.records)
    if not records:
        raise ExportError(f"{patchset.root}: calibration patch set has no patches")
    if len(records) <= max_patches:
        return records
    picks = np.unique(np.linspace(0, len(records) - 1, max_patches).round().astype(int))
    return [records[i] for i in picks]


def read_patches(patchset: PatchSet, records: list[PatchRecord], channels: int, input_px: int) -> PatchBatch:
    """The rows' pixels converted as the export's parity check converts them, plus labels and masks."""
    images, masks = [], []
    for record in records:
        path = patchset.root / record.image
        image = patchset.read_image(record)
        if image.dtype != np.uint8:
            raise ExportError(f"{path}: int8 patches must be 8-bit, got {image.dtype}")
        try:
            image = to_channels(image, channels)
        except ValueError as error:
            raise ExportError(f"{path}: {error}") from None
        if image.shape[:2] != (input_px, input_px):
            raise ExportError(f"{path}: patch is {image.shape[1]}x{image.shape[0]} px, the model takes {input_px}")
        images.append(image)
        masks.append(patchset.read_mask(record))
    pixels = np.ascontiguousarray(np.stack(images))
    return PatchBatch(
        inputs=to_model_input(pixels),
        labels=np.array([record.has_defect for record in records], dtype=np.float32),
        masks=np.stack(masks),
        described=f"{len(records)} patches of {patchset.root}",
        pixels_sha256=hashlib.sha256(pixels.tobytes()).hexdigest(),
    )


class _Reader:
    """``onnxruntime.quantization.CalibrationDataReader``: the calibration patches in batches."""

    def __init__(self, inputs: np.ndarray) -> None:
        self._batches: Iterator[np.ndarray] = (
            inputs[start : start + CALIBRATION_BATCH] for start in range(0, len(inputs), CALIBRATION_BATCH)
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: batch}

    def __iter__(self) -> _Reader:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        item = self.get_next()
        if item is None:
            raise StopIteration
        return item


def quantize_onnx(fp32_path: Path, int8_path: Path, calibration: np.ndarray) -> None:
    """Write the QDQ int8 model of ``fp32_path`` to ``int8_path``, calibrated on ``calibration`` (NCHW)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="int8-") as work:
        prepared = Path(work) / "prepared.onnx"  # shape inference + graph folding, as ORT's guide asks
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            prepared,
            int8_path,
            _Reader(calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            # MinMax reduces each activation to its min and max inside the calibration graph, so memory stays
            # small without ORT's CalibMaxIntermediateOutputs (which, in 1.32, drops what it collected).
            extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
        )
    model = onnx.load(str(int8_path), load_external_data=False)
    if any(init.data_location == onnx.TensorProto.EXTERNAL for init in model.graph.initializer):
        raise ExportError(f"{int8_path}: int8 model refers to external weight data; the bundle must be self-contained")
    onnx.checker.check_model(model)


def logits_of(model_path: Path, inputs: np.ndarray) -> np.ndarray:
    """The model's float32 logits for ``inputs``, in batches of 64 on ONNX Runtime's CPU provider."""
    session = onnxruntime.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    parts = [
        session.run([OUTPUT_NAME], {INPUT_NAME: inputs[start : start + SCORING_BATCH]})[0]
        for start in range(0, len(inputs), SCORING_BATCH)
    ]
    return np.concatenate(parts).astype(np.float32)


def scored_metrics(task: str, logits: np.ndarray, heldback: PatchBatch, threshold: float) -> dict[str, float]:
    """The training side's test metrics of ``logits`` at the bundle's threshold (finite values only)."""
    probabilities = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    if task == "classifier":
        metrics = classification_metrics(heldback.labels, probabilities[:, 0], threshold)
    else:
        metrics = segmentation_metrics(heldback.masks, probabilities[:, 0], threshold)
    return {key: float(value) for key, value in metrics.items() if math.isfinite(float(value))}


def quantize_bundle_model(fp32_path: Path, prepared: PreparedInt8, *, task: str, threshold: float) -> Int8Model:
    """Write ``model.int8.onnx`` beside ``fp32_path`` and return its manifest entry, or refuse it.

    Raises :class:`ExportError` (the export writes nothing) when the int8 model's gated metric
    falls more than ``max_drop`` below the float32 model's on the held-back patches.
    """
    int8_path = Path(fp32_path).with_name(INT8_MODEL_NAME)
    quantize_onnx(fp32_path, int8_path, prepared.calibration.inputs)
    heldback = prepared.heldback
    fp32_logits, int8_logits = logits_of(fp32_path, heldback.inputs), logits_of(int8_path, heldback.inputs)
    fp32, int8 = (scored_metrics(task, logits, heldback, threshold) for logits in (fp32_logits, int8_logits))
    metric, max_drop = GATED_METRIC[task], prepared.request.max_drop
    if metric not in fp32 or metric not in int8:
        raise ExportError(f"int8: {metric} is undefined on {heldback.described}; cannot compare int8 with float32")
    drop = fp32[metric] - int8[metric]
    if drop > max_drop:
        raise ExportError(
            f"int8 model refused: {metric} {int8[metric]:.4f} vs float32 {fp32[metric]:.4f} on the test split "
            f"({heldback.described}) drops by {drop:.4f} > {max_drop:g}; calibration: "
            f"{prepared.calibration.described}. Nothing was written; calibrate on patches like the line's, "
            "or export without --quantize for a float32-only bundle"
        )
    parity = Int8Parity(
        metric=metric,
        fp32=fp32[metric],
        int8=int8[metric],
        max_drop=max_drop,
        threshold=threshold,
        samples=f"test split: {heldback.described}",
        sample_count=len(heldback.inputs),
        max_abs_logit_diff=float(np.max(np.abs(int8_logits - fp32_logits))),
        fp32_metrics=fp32,
        int8_metrics=int8,
    )
    return Int8Model(
        model_file=INT8_MODEL_NAME,
        model_sha256=sha256_file(int8_path),
        weights=WEIGHTS,
        activations=ACTIVATIONS,
        calibration=prepared.calibration_info,
        parity=parity,
    )
