"""The model bundle: what training hands the edge, and the one way the edge opens it.

A bundle folder::

    BUNDLE/
      bundle.json          BundleManifest: input/output contract, thresholds, geometry, checksum, provenance
      model.onnx           self-contained ONNX model (no external data files)
      model.int8.onnx      optional: the same model statically quantised (QDQ, int8), see Int8Model
      export_report.json   how the export verified itself (PyTorch vs ONNX Runtime parity)

The edge has no torch, so everything it must do to feed the model (layout, dtype, value
range, colour, patch size, tiling geometry) is written down here and checked on load;
normalisation happens inside the model. :func:`load_bundle` refuses a bundle that does
not match its manifest, rather than letting the line run on wrong inputs.

The int8 model is an optional manifest entry (``int8``) within schema version 1: bundles
without it are written without the key, byte for byte as before, so every runtime reads
them; a bundle that carries it needs a runtime that knows the entry (an older one refuses
the unknown field by name rather than ignoring a checksum it cannot verify).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared.config import GeometryConfig

BUNDLE_SCHEMA_VERSION = 1
MANIFEST_NAME = "bundle.json"
MODEL_NAME = "model.onnx"
INT8_MODEL_NAME = "model.int8.onnx"
REPORT_NAME = "export_report.json"
INPUT_NAME = "patches"
OUTPUT_NAME = "logits"
MIN_OPSET = 17
VALUE_RANGE = "[0,1] = uint8/255"
# Semantic version 2.0.0 (major.minor.patch, optional -prerelease and +build).
SEMVER_PATTERN = (
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
REQUIRED_THRESHOLD = {"classifier": "decision", "segmenter": "pixel"}
CHANNELS_OF_COLOR = {"gray": 1, "bgr": 3}


class BundleError(ValueError):
    """A bundle cannot be used; the message names the file and what was expected."""


class Normalization(BaseModel):
    """The normalisation the model applies to its [0, 1] input (the edge must not apply it again)."""

    model_config = ConfigDict(extra="forbid")

    mean: float = Field(description="Subtracted from the [0, 1] input inside the model.")
    std: float = Field(gt=0, description="The input minus mean is divided by this inside the model.")
    applied: Literal["inside the model"] = Field(
        "inside the model", description="Where normalisation happens; the edge feeds plain uint8/255."
    )


class BundleInput(BaseModel):
    """What the model's single input takes; the edge builds exactly this from its patches."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(INPUT_NAME, min_length=1, description="ONNX input name.")
    layout: Literal["NCHW"] = Field("NCHW", description="Axis order: batch, channels, height, width.")
    dtype: Literal["float32"] = Field("float32", description="Element type of the input tensor.")
    channels: int = Field(gt=0, description="C: 1 for gray, 3 for BGR.")
    height_px: int = Field(gt=0, description="H: patch height in pixels (equals geometry.patch_px).")
    width_px: int = Field(gt=0, description="W: patch width in pixels (equals geometry.patch_px).")
    value_range: Literal["[0,1] = uint8/255"] = Field(
        VALUE_RANGE, description="Input values: 8-bit pixels divided by 255, no other scaling."
    )
    normalization: Normalization = Field(description="Normalisation the model applies itself.")
    color: Literal["gray", "bgr"] = Field(description="Channel meaning: gray (luma) or BGR as OpenCV reads it.")

    @model_validator(mode="after")
    def _channels_match_color(self) -> BundleInput:
        if CHANNELS_OF_COLOR[self.color] != self.channels:
            raise ValueError(
                f"color {self.color!r} needs {CHANNELS_OF_COLOR[self.color]} channel(s), got channels={self.channels}"
            )
        return self


class BundleOutput(BaseModel):
    """What the model's single output means."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(OUTPUT_NAME, min_length=1, description="ONNX output name.")
    meaning: str = Field(min_length=1, description="What the values are, e.g. 'defect logit; sigmoid = ...'.")
    shape: list[int | str] = Field(
        description="Output shape; 'N' is the batch axis. Classifier ['N', 1], segmenter ['N', 1, H, W]."
    )


class Int8Calibration(BaseModel):
    """The patches that set the int8 model's activation ranges."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(min_length=1, description="Patch set the calibration patches came from.")
    patch_count: int = Field(gt=0, description="Patches fed to the calibrator.")
    pixels_sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$", description="sha256 of the calibration patches' uint8 pixels, in feeding order."
    )
    dataset_fingerprint: str = Field(description="Fingerprint of the patch set's dataset ('' if unknown).")
    method: str = Field(min_length=1, description="Calibration method, e.g. 'minmax'.")


class Int8Parity(BaseModel):
    """int8 vs float32 on the held-back patches: the gate the int8 model passed to be written."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    metric: str = Field(min_length=1, description="Gated metric: 'f1' (classifier) or 'defect_iou' (segmenter).")
    fp32: float = Field(description="The metric of the float32 model (ONNX Runtime).")
    int8: float = Field(description="The metric of the int8 model (ONNX Runtime).")
    max_drop: float = Field(ge=0, description="Largest allowed fp32 - int8; a larger drop refuses the int8 model.")
    threshold: float = Field(ge=0, le=1, description="Probability threshold both models were scored at.")
    samples: str = Field(min_length=1, description="Where the held-back patches came from.")
    sample_count: int = Field(gt=0, description="Held-back patches scored.")
    max_abs_logit_diff: float = Field(ge=0, description="Largest |int8 - fp32| logit over the held-back patches.")
    fp32_metrics: dict[str, float] = Field(description="All test metrics of the float32 model.")
    int8_metrics: dict[str, float] = Field(description="All test metrics of the int8 model.")


class Int8Model(BaseModel):
    """``manifest.int8``: a statically quantised copy of the model beside the float32 one."""

    model_config = ConfigDict(extra="forbid")

    model_file: str = Field(INT8_MODEL_NAME, description="ONNX file name inside the bundle folder.")
    model_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Hex sha256 of the int8 model file.")
    quant_format: Literal["QDQ"] = Field("QDQ", description="QuantizeLinear/DequantizeLinear pairs around int8 ops.")
    weights: str = Field(min_length=1, description="Weight quantisation, e.g. 'int8 symmetric per-channel'.")
    activations: str = Field(min_length=1, description="Activation quantisation, e.g. 'int8 asymmetric per-tensor'.")
    calibration: Int8Calibration = Field(description="What set the activation ranges.")
    parity: Int8Parity = Field(description="Test metrics of the int8 model vs float32.")

    @field_validator("model_file")
    @classmethod
    def _plain_file_name(cls, value: str) -> str:
        return _plain_file_name(value)


class BundleParent(BaseModel):
    """``manifest.parent``: the bundle this one was retrained from (its lineage on the line)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="The parent's model name.")
    version: str = Field(pattern=SEMVER_PATTERN, description="The parent's version.")
    model_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the parent's model file.")


VERSION_PARTS = ("major", "minor", "patch")


def _release(version: str) -> tuple[int, int, int]:
    match = re.fullmatch(SEMVER_PATTERN, version)
    if match is None:
        raise ValueError(f"version {version!r} is not a semantic version (expected e.g. '1.2.0')")
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def next_version(version: str, part: str = "patch") -> str:
    """``version`` with ``part`` raised and the parts after it zeroed (pre-release and build dropped).

    ``0.1.0`` -> ``0.1.1`` (patch), ``0.2.0`` (minor), ``1.0.0`` (major). A pre-release
    ``0.2.0-rc.1`` becomes its release ``0.2.0`` for a patch bump, as semver orders them.
    """
    if part not in VERSION_PARTS:
        raise ValueError(f"version part {part!r}: choose one of {VERSION_PARTS}")
    major, minor, patch = _release(version)
    prerelease = "-" in version.split("+", 1)[0]
    if part == "major":
        return f"{major + 1}.0.0"
    if part == "minor":
        return f"{major}.{minor + 1}.0"
    return f"{major}.{minor}.{patch if prerelease else patch + 1}"


def version_key(version: str) -> tuple[int, int, int, int]:
    """Sort key of a version by semver precedence of the release (a pre-release sorts before it)."""
    major, minor, patch = _release(version)
    return major, minor, patch, 0 if "-" in version.split("+", 1)[0] else 1


class BundleManifest(BaseModel):
    """``bundle.json``: the contract between the exported model and the edge runtime."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = Field(BUNDLE_SCHEMA_VERSION, description="Format version of this manifest.")
    task: Literal["classifier", "segmenter"] = Field(description="Patch classifier or pixel segmenter.")
    name: str = Field(min_length=1, description="Model name shown in logs and verdicts.")
    version: str = Field(pattern=SEMVER_PATTERN, description="Semantic version of this model, e.g. '1.2.0'.")
    input: BundleInput = Field(description="Input tensor contract.")
    output: BundleOutput = Field(description="Output tensor contract.")
    thresholds: dict[str, float] = Field(
        description="Thresholds on the sigmoid output: 'decision' (classifier) or 'pixel' (segmenter), plus extras."
    )
    geometry: GeometryConfig = Field(description="Tiling geometry the model was trained with; the edge must match.")
    class_names: list[str] = Field(min_length=2, description="Class names, index 0 = good.")
    model_file: str = Field(MODEL_NAME, description="ONNX file name inside the bundle folder.")
    model_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Hex sha256 of the model file.")
    data_fingerprint: str = Field(description="Fingerprint of the data the model was trained on ('' if unknown).")
    metrics: dict[str, float] = Field(description="Test metrics of the exported weights.")
    producer: dict[str, str] = Field(description="Versions of Python and the packages that made the bundle.")
    opset: int = Field(ge=MIN_OPSET, description="ONNX opset of the default domain.")
    created_at: AwareDatetime = Field(description="When the bundle was exported (timezone-aware).")
    spec: dict[str, Any] = Field(description="Model spec that rebuilds the module in training.")
    int8: Int8Model | None = Field(
        None, description="Optional int8 (QDQ) copy of the model; absent: the bundle offers float32 only."
    )
    parent: BundleParent | None = Field(
        None, description="The bundle this one was retrained from (`pump-train export --parent`); absent: none."
    )

    @field_validator("model_file")
    @classmethod
    def _plain_file_name(cls, value: str) -> str:
        return _plain_file_name(value)

    @model_validator(mode="after")
    def _consistent(self) -> BundleManifest:
        required = REQUIRED_THRESHOLD[self.task]
        if required not in self.thresholds:
            raise ValueError(f"thresholds must contain {required!r} for a {self.task}, got {sorted(self.thresholds)}")
        if not 0.0 <= self.thresholds[required] <= 1.0:
            raise ValueError(f"thresholds.{required} must be a probability in [0, 1], got {self.thresholds[required]}")
        side = self.geometry.patch_px
        if (self.input.height_px, self.input.width_px) != (side, side):
            raise ValueError(
                f"input is {self.input.height_px}x{self.input.width_px} px but geometry.patch_px is {side}"
            )
        expected = ["N", 1] if self.task == "classifier" else ["N", 1, self.input.height_px, self.input.width_px]
        if self.output.shape != expected:
            raise ValueError(f"output.shape of a {self.task} must be {expected}, got {self.output.shape}")
        if self.int8 is not None and self.int8.model_file == self.model_file:
            raise ValueError(f"int8.model_file must differ from model_file ({self.model_file!r})")
        return self


def _plain_file_name(value: str) -> str:
    if not value or Path(value).name != value or value in (".", ".."):
        raise ValueError(f"must be a file name inside the bundle folder, got {value!r}")
    return value


@dataclass(frozen=True)
class LoadedBundle:
    """A bundle that passed every check: its manifest and the absolute model path(s)."""

    manifest: BundleManifest
    model_path: Path
    int8_model_path: Path | None = None  # the verified int8 model, when the manifest offers one


def sha256_of(path: Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file (here rather than in training: the edge checks bundles too)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(bundle_dir: Path, manifest: BundleManifest) -> Path:
    """Write ``bundle.json`` atomically (temp file + rename); returns its path."""
    path = Path(bundle_dir) / MANIFEST_NAME
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    # Optional entries that are absent leave no key, so the file is what runtimes before them read.
    exclude = {key for key in ("int8", "parent") if getattr(manifest, key) is None} or None
    tmp.write_text(json.dumps(manifest.model_dump(mode="json", exclude=exclude), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def load_bundle(
    bundle_dir: Path, expected_geometry: GeometryConfig | None = None, check_model: bool = True
) -> LoadedBundle:
    """Open and verify a bundle; raises :class:`BundleError` naming the file and the problem.

    Checks the manifest (schema version, fields), the model checksum (and the int8
    model's, when the manifest offers one), the geometry against ``expected_geometry``
    (the station's), and with ``check_model`` that the ONNX input and output match the
    manifest (needs onnxruntime).
    """
    bundle_dir = Path(bundle_dir)
    manifest_path = bundle_dir / MANIFEST_NAME
    if not bundle_dir.is_dir():
        raise BundleError(f"{bundle_dir}: bundle folder not found")
    manifest = _read_manifest(manifest_path)
    model_path = _verified_file(bundle_dir, manifest_path, manifest.model_file, manifest.model_sha256, "")
    int8_path = None
    if manifest.int8 is not None:
        int8_path = _verified_file(
            bundle_dir, manifest_path, manifest.int8.model_file, manifest.int8.model_sha256, "int8."
        )
    if expected_geometry is not None:
        _check_geometry(manifest_path, manifest.geometry, expected_geometry)
    if check_model:
        _check_model_io(model_path, manifest)
        if int8_path is not None:
            _check_model_io(int8_path, manifest)
    return LoadedBundle(manifest=manifest, model_path=model_path, int8_model_path=int8_path)


def _verified_file(bundle_dir: Path, manifest_path: Path, name: str, sha256: str, prefix: str) -> Path:
    """The model file ``name`` of the bundle, refused unless its sha256 is the manifest's."""
    path = (bundle_dir / name).resolve()
    if not path.is_file():
        raise BundleError(f"{path}: model file named in {manifest_path} ({prefix}model_file) is missing")
    actual = sha256_of(path)
    if actual != sha256:
        raise BundleError(
            f"{path}: sha256 {actual} does not match {prefix}model_sha256 {sha256} in {manifest_path} "
            "(the model file was changed or corrupted; re-export the bundle)"
        )
    return path


def _read_manifest(path: Path) -> BundleManifest:
    if not path.is_file():
        raise BundleError(f"{path}: {MANIFEST_NAME} is missing (not a model bundle; export one with pump-train)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BundleError(f"{path}: invalid JSON ({error})") from None
    if not isinstance(raw, dict):
        raise BundleError(f"{path}: expected a JSON object, got {type(raw).__name__}")
    if raw.get("schema_version") != BUNDLE_SCHEMA_VERSION:
        raise BundleError(
            f"{path}: schema_version {raw.get('schema_version')!r} is not supported "
            f"(this runtime reads {BUNDLE_SCHEMA_VERSION}; re-export or update the runtime)"
        )
    try:
        return BundleManifest.model_validate(raw)
    except ValidationError as error:
        lines = [
            f"  {'.'.join(str(part) for part in item['loc']) or '(root)'}: {item['msg']} (got {item.get('input')!r})"
            for item in error.errors()
        ]
        raise BundleError(f"{path}: invalid manifest:\n" + "\n".join(lines)) from None


def _check_geometry(path: Path, actual: GeometryConfig, expected: GeometryConfig) -> None:
    ours, theirs = actual.model_dump(), expected.model_dump()
    differing = [f"{key}: bundle {ours[key]}, expected {theirs[key]}" for key in ours if ours[key] != theirs[key]]
    if differing:
        raise BundleError(
            f"{path}: geometry does not match the station's ({'; '.join(differing)}); "
            "the model was trained on differently cut patches"
        )


def _check_model_io(model_path: Path, manifest: BundleManifest) -> None:
    """The ONNX graph's input/output must be what the manifest promises (batch axis dynamic)."""
    import onnxruntime  # lazy: only needed for this check, and heavy to import

    try:
        session = onnxruntime.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types for unreadable models
        raise BundleError(f"{model_path}: ONNX Runtime cannot load the model ({error})") from None
    declared = manifest.input
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise BundleError(f"{model_path}: expected exactly one input, the model has {[i.name for i in inputs]}")
    onnx_input = inputs[0]
    problems = []
    if onnx_input.name != declared.name:
        problems.append(f"name {onnx_input.name!r} (declared {declared.name!r})")
    if onnx_input.type != "tensor(float)":
        problems.append(f"type {onnx_input.type} (declared float32)")
    shape = list(onnx_input.shape)
    want = [declared.channels, declared.height_px, declared.width_px]
    if len(shape) != 4:
        problems.append(f"shape {shape} (declared NCHW [batch, {', '.join(map(str, want))}])")
    else:
        if isinstance(shape[0], int):
            problems.append(f"batch axis fixed to {shape[0]} (must be dynamic)")
        for axis, got, expected in zip(("channels", "height", "width"), shape[1:], want, strict=True):
            if got != expected:
                problems.append(f"{axis} {got} (declared {expected})")
    if problems:
        raise BundleError(f"{model_path}: ONNX input does not match {MANIFEST_NAME}: " + "; ".join(problems))
    _check_output(model_path, session.get_outputs(), manifest.output)


def _check_output(model_path: Path, outputs: list[Any], declared: BundleOutput) -> None:
    by_name = {output.name: output for output in outputs}
    if declared.name not in by_name:
        raise BundleError(
            f"{model_path}: output {declared.name!r} declared in {MANIFEST_NAME} is not in the model {sorted(by_name)}"
        )
    shape = list(by_name[declared.name].shape)
    fixed_mismatch = len(shape) != len(declared.shape) or any(
        isinstance(want, int) and got != want for got, want in zip(shape, declared.shape, strict=False)
    )
    if fixed_mismatch:
        raise BundleError(
            f"{model_path}: output {declared.name!r} has shape {shape}, {MANIFEST_NAME} declares {declared.shape}"
        )
