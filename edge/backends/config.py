"""``[backend]`` settings: which inference engine runs the bundles and how it is sized."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.config import ConfigBool, NonEmptyPath


class BackendKind(str, Enum):
    """Which backend runs the models; ``auto`` prefers TensorRT, then ONNX Runtime (CUDA, then CPU)."""

    AUTO = "auto"
    TENSORRT = "tensorrt"
    ONNXRUNTIME = "onnxruntime"


class Precision(str, Enum):
    """Model precision.

    TensorRT builds an engine of this precision (int8 calibrated on ``calibration_dir``).
    ONNX Runtime runs the bundle's float32 graph for fp32 and fp16, and for int8 the
    bundle's pre-quantised int8 model (``pump-train export --quantize int8``): a bundle
    without one is refused, never silently run in float32.
    """

    FP16 = "fp16"
    INT8 = "int8"
    FP32 = "fp32"


class BackendConfig(BaseModel):
    """Backend choice and sizing; the same config serves the classifier and the segmenter."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    kind: BackendKind = Field(BackendKind.AUTO, description="auto | tensorrt | onnxruntime.")
    precision: Precision = Field(
        Precision.FP16,
        description="fp16 (default), int8 or fp32. TensorRT int8 calibrates on calibration_dir; ONNX Runtime int8 "
        "runs the bundle's int8 model (fp16 and fp32 run its float32 model).",
    )
    engine_cache_dir: NonEmptyPath = Field(
        Path("engines"),
        description="TensorRT engines built on this device (keyed by bundle, GPU, TensorRT, precision).",
    )
    workspace_mb: int = Field(
        1024, gt=0, le=65536, description="TensorRT builder workspace cap in MiB (Jetson memory is shared)."
    )
    max_batch: int = Field(
        128, ge=1, le=4096, description="Largest batch per call; bigger batches are split (TensorRT profile max)."
    )
    opt_batch: int = Field(64, ge=1, le=4096, description="The batch TensorRT tunes kernels for: tiles per frame (64).")
    device_id: int = Field(0, ge=0, le=63, description="CUDA device ordinal.")
    ort_threads: int = Field(0, ge=0, le=256, description="ONNX Runtime intra-op threads (0: one per physical core).")
    ort_provider: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="ONNX Runtime provider: auto = CUDA when available and a GPU is present, else CPU."
    )
    calibration_dir: NonEmptyPath | None = Field(
        None,
        description="TensorRT int8: folder of patch PNGs (a patch set's images/) to calibrate with "
        "(ONNX Runtime's int8 model was calibrated at export).",
    )
    calibration_max_patches: int = Field(
        1024, ge=1, le=1_000_000, description="int8: most patches read for calibration."
    )
    fallback_to_ort: ConfigBool = Field(
        True, description="kind=auto: run ONNX Runtime when TensorRT cannot load or build (the failure is logged)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> BackendConfig:
        if self.opt_batch > self.max_batch:
            raise ValueError(f"opt_batch ({self.opt_batch}) must be <= max_batch ({self.max_batch})")
        if self.precision is Precision.INT8 and self.kind is BackendKind.TENSORRT and self.calibration_dir is None:
            raise ValueError("kind tensorrt with precision int8 needs calibration_dir (a folder of patch PNGs)")
        return self
