"""The classifier's and segmenter's schedule: iterations, batches, optimiser, augmentation, precision.

A config model (the ``schedule`` of the ``[classifier]`` and ``[segmenter]`` sections of
:class:`training.config.TrainSettings`) and the object the loops read. The GAN loop does not
use it; it shares :mod:`training.train.runtime` and :mod:`training.train.runlog` instead.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.config import SeedInt


class Schedule(BaseModel):
    """Iteration-based schedule: a randomly sampled batch per iteration (thesis §3.3.2)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    iterations: int = Field(2000, gt=0, le=10_000_000, description="Training iterations (one random batch each).")
    val_every: int = Field(
        200, gt=0, le=10_000_000, description="Validate (and keep the best weights) every N iterations."
    )
    batch_size: int = Field(64, gt=0, le=65_536, description="Patches per batch.")
    lr: float = Field(2e-3, gt=0, le=10.0, description="Peak learning rate of the one-cycle AdamW schedule.")
    weight_decay: float = Field(1e-4, ge=0, le=10.0, description="AdamW weight decay.")
    seed: SeedInt = Field(0, description="Seed of weights, batches and draws (unset: the top-level `seed`).")
    device: str = Field("cpu", min_length=1, description="cpu, cuda, cuda:N or auto (CUDA when present).")
    threads: int = Field(
        0, ge=0, le=1024, description="CPU threads of torch; 0 = every core unless OMP_NUM_THREADS is set."
    )
    # Defaults measured on Magnetic Tile (3 seeds, baseline): flips alone beat flips + 90° turns +
    # ±20 % brightness/contrast (val AUROC 0.78 vs 0.77, test F1 0.46 vs 0.27 in 2500 iterations).
    geometric_aug: Literal["none", "flips", "dihedral"] = Field(
        "flips", description="Training augmentation: none, flips, or dihedral (flips + 90° turns)."
    )
    photometric_aug: float = Field(
        0.0, ge=0.0, lt=1.0, description="Max relative brightness/contrast jitter per patch (0 = off)."
    )
    # "bf16" runs the training forward pass under autocast (bfloat16 convolutions, fp32 weights,
    # fp32 loss); on CPUs with AVX512-BF16/AMX it trains ~1.6x faster. Validation and test scoring
    # stay fp32, as does the exported model.
    precision: Literal["fp32", "bf16"] = Field(
        "fp32", description="Training forward pass: fp32, or bf16 autocast (scoring and export stay fp32)."
    )
    pos_weight: float = Field(
        1.0,
        gt=0,
        le=1000.0,
        description="Classifier only: BCE weight of defect patches (1 = plain BCE; no repeated patches).",
    )
    # Measured on synthetic pump patches (60 frames of 3200x2224, width 0.25 at 128 px, batch 32): test
    # AUROC 0.75 in 800 iterations and 0.83 in 2000 without; 0.83-0.86 in 800 and 0.89 in 1200 with
    # mask_loss 10 (0.85 with 3). The patch label alone lets a small network key on bright, ringed
    # surroundings; the mask says where the defect is. The demo trains with it (training/pipeline.py).
    mask_loss: float = Field(
        0.0,
        ge=0.0,
        le=1000.0,
        description="Classifier only: weight of a training-only loss that asks the last stage's feature map "
        "which cells hold defect pixels (the masks; 0 = off). The exported model is unchanged.",
    )

    def to_dict(self) -> dict:
        return self.model_dump()
