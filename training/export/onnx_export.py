"""Checkpoint -> ONNX model bundle for the edge, verified before it is written.

Exporter: ``torch.onnx.export(..., dynamo=False)`` (TorchScript tracing). The default
dynamo exporter of torch >= 2.9 needs ``onnxscript``, which is not a dependency; the
traced graph is self-contained in one file, folds batch norm into the convolutions, and
exports in a fraction of the time. Either way the export proves itself: ONNX Runtime
must reproduce eager PyTorch on real patches (batch 32 and batch 1) within ``atol``,
otherwise nothing is written.
"""

from __future__ import annotations

import math
import re
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
import onnxruntime
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from shared.bundle import (
    CHANNELS_OF_COLOR,
    INPUT_NAME,
    MIN_OPSET,
    MODEL_NAME,
    OUTPUT_NAME,
    REPORT_NAME,
    SEMVER_PATTERN,
    BundleError,
    BundleInput,
    BundleManifest,
    BundleOutput,
    BundleParent,
    Int8Model,
    Normalization,
    load_bundle,
    next_version,
    version_key,
    write_manifest,
)
from shared.config import GeometryConfig
from shared.pixels import to_channels, to_model_input
from training.data.patchset import load_patchset
from training.models.checkpoint import Checkpoint, load_checkpoint
from training.outputs import atomic_output_dir, package_versions, sha256_file, write_json_atomic

if TYPE_CHECKING:
    from training.export.quantize import Int8Request

PARITY_SAMPLES = 32
RANDOM_SEED = 0
EXPORTER = "torch.onnx.export(dynamo=False): TorchScript tracing"
OUTPUT_MEANING = {
    "classifier": "defect logit per patch; sigmoid = defect probability",
    "segmenter": "defect logit per pixel; sigmoid = defect probability of the pixel",
}
THRESHOLD_KEY = {"classifier": "decision", "segmenter": "pixel"}


class ExportError(ValueError):
    """The checkpoint cannot become a bundle, or the ONNX model disagrees with PyTorch."""


class ParityCheck(BaseModel):
    """ONNX Runtime vs eager PyTorch on one batch."""

    model_config = ConfigDict(extra="forbid")

    batch_size: int = Field(description="Patches in the batch.")
    max_abs_diff: float = Field(description="Largest absolute difference between the two outputs (logits).")


class ExportReport(BaseModel):
    """``export_report.json``: what was exported, how, and how well it matches PyTorch."""

    model_config = ConfigDict(extra="forbid")

    bundle_dir: str = Field(description="Where the bundle was written.")
    checkpoint: str = Field(description="Checkpoint (run folder or file) that was exported.")
    task: str = Field(description="classifier or segmenter.")
    name: str = Field(description="Model name in the manifest.")
    version: str = Field(description="Model version in the manifest.")
    exporter: str = Field(description="Which torch.onnx exporter made the graph.")
    opset: int = Field(description="ONNX opset of the default domain.")
    model_sha256: str = Field(description="sha256 of model.onnx.")
    model_bytes: int = Field(description="Size of model.onnx.")
    samples: str = Field(description="Where the parity inputs came from.")
    sample_count: int = Field(description="Patches in the large parity batch (the other batch has 1).")
    atol: float = Field(description="Largest allowed absolute difference.")
    max_abs_diff: float = Field(description="Largest absolute difference over all parity batches.")
    parity: list[ParityCheck] = Field(description="Each parity batch and its difference.")
    dropped_metrics: list[str] = Field(description="Checkpoint metrics left out of the manifest (not finite numbers).")
    export_seconds: float = Field(description="Wall time of export and verification.")
    int8: Int8Model | None = Field(None, description="The int8 model and its parity report (--quantize int8).")
    parent: BundleParent | None = Field(None, description="The bundle this one follows (--parent).")


def export_bundle(
    model_dir: Path,
    bundle_dir: Path,
    *,
    patches: Path | None = None,
    name: str | None = None,
    version: str | None = None,
    opset: int = 17,
    overwrite: bool = False,
    atol: float = 1e-3,
    int8: Int8Request | None = None,
    parent: Path | None = None,
    bump: str = "patch",
) -> ExportReport:
    """Export a training run's checkpoint as a verified bundle folder.

    ``patches`` (a patch set) supplies real parity inputs; without it 32 seeded random
    patches are used and the report says so. Raises :class:`ExportError` (nothing is
    written) when the checkpoint lacks what the edge needs or parity exceeds ``atol``.
    ``int8`` adds a statically quantised model, refused like a parity failure when its
    test metrics fall too far (:mod:`training.export.quantize`).

    ``parent`` (the bundle the line runs now, which this model was retrained from) is recorded
    in the manifest; without ``version`` the new version is the parent's with ``bump`` raised
    (``0.1.0`` -> ``0.1.1``), and a given ``version`` must be above the parent's. Without a
    parent the default version is ``0.1.0``.
    """
    started = time.perf_counter()
    checkpoint = load_checkpoint(model_dir)
    source = Path(model_dir)
    if opset < MIN_OPSET:
        raise ExportError(f"opset {opset} is too old; the edge needs >= {MIN_OPSET}")
    lineage = _parent(Path(parent), checkpoint.task) if parent is not None else None
    version = _version(version, lineage, bump)
    geometry = _geometry(checkpoint, source)
    model_input = _model_input(checkpoint, source, geometry)
    samples, sample_source = _parity_inputs(patches, model_input.channels, model_input.height_px)
    if int8 is not None:  # read and check its patches before anything is written
        from training.export.quantize import prepare_int8, quantize_bundle_model

        prepared = prepare_int8(int8, patches, model_input.channels, model_input.height_px)
    module = checkpoint.build()
    bundle_dir = Path(bundle_dir)
    with atomic_output_dir(bundle_dir, overwrite=overwrite) as tmp:
        model_path = tmp / MODEL_NAME
        _export_onnx(module, model_path, torch.from_numpy(samples[:2]), opset)
        _check_onnx(model_path, opset)
        parity = _parity(module, model_path, samples, atol)
        metrics, dropped = _finite_metrics(checkpoint.metrics)
        int8_model = None
        if int8 is not None:
            int8_model = quantize_bundle_model(
                model_path, prepared, task=checkpoint.task, threshold=float(checkpoint.threshold)
            )
        manifest = BundleManifest(
            task=checkpoint.task,
            name=name or (lineage.name if lineage else None) or checkpoint.name or checkpoint.task,
            version=version,
            input=model_input,
            output=BundleOutput(
                meaning=OUTPUT_MEANING[checkpoint.task], shape=_output_shape(checkpoint.task, model_input)
            ),
            thresholds={THRESHOLD_KEY[checkpoint.task]: float(checkpoint.threshold)},
            geometry=geometry,
            class_names=list(checkpoint.class_names),
            model_file=MODEL_NAME,
            model_sha256=sha256_file(model_path),
            data_fingerprint=checkpoint.data_fingerprint,
            metrics=metrics,
            producer=package_versions(),
            opset=opset,
            created_at=datetime.now(timezone.utc),
            spec=dict(checkpoint.spec),
            int8=int8_model,
            parent=lineage,
        )
        write_manifest(tmp, manifest)
        report = ExportReport(
            bundle_dir=str(bundle_dir),
            checkpoint=str(source),
            task=checkpoint.task,
            name=manifest.name,
            version=version,
            exporter=EXPORTER,
            opset=opset,
            model_sha256=manifest.model_sha256,
            model_bytes=model_path.stat().st_size,
            samples=sample_source,
            sample_count=len(samples),
            atol=atol,
            max_abs_diff=max(check.max_abs_diff for check in parity),
            parity=parity,
            dropped_metrics=dropped,
            export_seconds=round(time.perf_counter() - started, 2),
            int8=int8_model,
            parent=lineage,
        )
        write_json_atomic(tmp / REPORT_NAME, report.model_dump(mode="json"))
        # Self-check with the edge's loader before the rename: the renamed folder holds these same bytes,
        # and a failure here leaves no bundle (and keeps an existing one) behind.
        load_bundle(tmp, expected_geometry=geometry)
    return report


def _parent(bundle_dir: Path, task: str) -> BundleParent:
    """The lineage entry of the bundle a retrained model follows; it must be a bundle of the same task."""
    try:
        manifest = load_bundle(bundle_dir, check_model=False).manifest
    except BundleError as error:
        raise ExportError(f"--parent {bundle_dir}: {error}") from None
    if manifest.task != task:
        raise ExportError(f"--parent {bundle_dir} is a {manifest.task} bundle; this checkpoint is a {task}")
    return BundleParent(name=manifest.name, version=manifest.version, model_sha256=manifest.model_sha256)


def _version(version: str | None, parent: BundleParent | None, bump: str) -> str:
    """The bundle's version: given (above the parent's), the parent's bumped, or 0.1.0."""
    if version is None:
        return next_version(parent.version, bump) if parent else "0.1.0"
    if not re.fullmatch(SEMVER_PATTERN, version):
        raise ExportError(f"version {version!r} is not a semantic version (expected e.g. '1.2.0')")
    if parent is not None and version_key(version) <= version_key(parent.version):
        raise ExportError(
            f"version {version} is not above the parent's {parent.version}; "
            f"leave --version out for {next_version(parent.version, bump)}"
        )
    return version


def _geometry(checkpoint: Checkpoint, source: Path) -> GeometryConfig:
    if not checkpoint.geometry:
        raise ExportError(
            f"{source}: checkpoint records no geometry (crop_px, tile_px, patch_px, min_overlap_px); "
            "the edge cannot tile frames for it"
        )
    try:
        return GeometryConfig(**checkpoint.geometry)
    except ValueError as error:
        raise ExportError(f"{source}: checkpoint geometry {checkpoint.geometry} is invalid ({error})") from None


def _model_input(checkpoint: Checkpoint, source: Path, geometry: GeometryConfig) -> BundleInput:
    spec = checkpoint.spec
    missing = [key for key in ("in_channels", "input_px", "mean", "std") if key not in spec]
    if missing:
        raise ExportError(f"{source}: checkpoint spec lacks {missing}")
    channels, input_px = int(spec["in_channels"]), int(spec["input_px"])
    colors = {count: color for color, count in CHANNELS_OF_COLOR.items()}
    if channels not in colors:
        raise ExportError(f"{source}: spec.in_channels is {channels}; the edge feeds 1 (gray) or 3 (BGR) channels")
    if input_px != geometry.patch_px:
        raise ExportError(
            f"{source}: spec.input_px {input_px} differs from geometry.patch_px {geometry.patch_px}; "
            "the edge would feed patches of the wrong size"
        )
    return BundleInput(
        channels=channels,
        height_px=input_px,
        width_px=input_px,
        normalization=Normalization(mean=float(spec["mean"]), std=float(spec["std"])),
        color=colors[channels],
    )


def _output_shape(task: str, model_input: BundleInput) -> list[int | str]:
    return ["N", 1] if task == "classifier" else ["N", 1, model_input.height_px, model_input.width_px]


def _parity_inputs(patches: Path | None, channels: int, input_px: int) -> tuple[np.ndarray, str]:
    """float32 NCHW in [0, 1] (uint8 / 255), the edge's input contract."""
    if patches is None:
        rng = np.random.default_rng(RANDOM_SEED)
        samples = rng.random((PARITY_SAMPLES, channels, input_px, input_px), dtype=np.float32)
        return samples, f"{PARITY_SAMPLES} random patches (seed {RANDOM_SEED}): no patch set given"
    patchset = load_patchset(patches)
    records = patchset.records[:PARITY_SAMPLES]
    if not records:
        raise ExportError(f"{patches}: patch set has no patches for the parity check")
    batch = np.stack(
        [_as_channels(patchset.root / record.image, patchset.read_image(record), channels) for record in records]
    )
    if batch.shape[1:3] != (input_px, input_px):
        raise ExportError(
            f"{patchset.root / records[0].image}: patches are {batch.shape[1]}x{batch.shape[2]} px, "
            f"the model takes {input_px}x{input_px}"
        )
    described = f"first {len(records)} patches of {patches}"
    if len(records) < PARITY_SAMPLES:  # keep a batch larger than 1: a batch-size bug shows only there
        batch = batch[np.arange(PARITY_SAMPLES) % len(records)]
        described += f", repeated to {PARITY_SAMPLES}"
    return to_model_input(batch), described


def _as_channels(path: Path, image: np.ndarray, channels: int) -> np.ndarray:
    """(H, W[, C]) uint8 -> (H, W[, channels]) uint8, as the edge converts camera pixels."""
    if image.dtype != np.uint8:
        raise ExportError(f"parity patches must be 8-bit, got {image.dtype}")
    try:
        return to_channels(image, channels)
    except ValueError as error:
        raise ExportError(f"{path}: {error}") from None


def _export_onnx(module: nn.Module, path: Path, example: torch.Tensor, opset: int) -> None:
    """Trace ``module`` into ``path``: dynamic batch axis, fixed H and W, one self-contained file."""
    with warnings.catch_warnings():
        # The legacy exporter is chosen on purpose (see the module docstring); its notice is not news.
        warnings.filterwarnings("ignore", message="You are using the legacy TorchScript-based ONNX export")
        warnings.filterwarnings("ignore", message="The feature will be removed")
        # Shape checks inside the module (e.g. GroupNorm's) run on fixed H and W; tracing them is safe.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(
            module,
            (example,),
            str(path),
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=opset,
            do_constant_folding=True,
        )


def _check_onnx(path: Path, opset: int) -> None:
    """onnx's checker passes, the opset is the requested one, and no weights live outside the file."""
    stray = sorted(p.name for p in path.parent.iterdir() if p.name != path.name)
    if stray:
        raise ExportError(f"{path}: export wrote extra files {stray}; the bundle must hold one self-contained model")
    model = onnx.load(str(path), load_external_data=False)
    if any(init.data_location == onnx.TensorProto.EXTERNAL for init in model.graph.initializer):
        raise ExportError(f"{path}: model refers to external weight data; the bundle must be self-contained")
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        raise ExportError(f"{path}: onnx.checker rejects the exported model ({error})") from None
    versions = {entry.domain: entry.version for entry in model.opset_import}
    if versions.get("", versions.get("ai.onnx")) != opset:
        raise ExportError(f"{path}: exported opset {versions} differs from the requested {opset}")


def _parity(module: nn.Module, path: Path, samples: np.ndarray, atol: float) -> list[ParityCheck]:
    """Run ONNX Runtime and eager PyTorch on the same batches; raise if they differ by more than ``atol``."""
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    checks = []
    for batch in (samples, samples[:1]):
        with torch.inference_mode():
            expected = module(torch.from_numpy(batch)).numpy()
        actual = session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0]
        if actual.shape != expected.shape:
            raise ExportError(f"{path}: ONNX output shape {actual.shape} differs from PyTorch's {expected.shape}")
        diff = float(np.max(np.abs(actual.astype(np.float64) - expected.astype(np.float64))))
        if not math.isfinite(diff) or diff > atol:
            raise ExportError(
                f"{path}: ONNX Runtime differs from PyTorch by {diff:.3g} at batch {len(batch)} "
                f"(allowed {atol:g}); nothing was written"
            )
        checks.append(ParityCheck(batch_size=len(batch), max_abs_diff=diff))
    return checks


def _finite_metrics(metrics: dict) -> tuple[dict[str, float], list[str]]:
    """Metrics JSON can carry: finite numbers (NaN would not survive a strict JSON reader)."""
    kept, dropped = {}, []
    for key, value in metrics.items():
        if isinstance(value, int | float) and math.isfinite(float(value)):
            kept[key] = float(value)
        else:
            dropped.append(key)
    return kept, sorted(dropped)
