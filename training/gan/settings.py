"""The ``[gan]`` section of :class:`training.config.TrainSettings` (no torch here: settings are data).

What the run does (family, preset, how long, how often to log and snapshot, where) lives here;
the family's own hyper-parameters live in the family's config (``training/gan/<family>/config.py``)
and are overridden through the family's sub-table, checked by that config when the run starts::

    [gan]
    family = "stylegan2"
    preset = "tiny"
    kimg = 300
    [gan.stylegan2]          # any StyleGAN2Config field
    r1_gamma = 0.05
    augment = "blit"
    [gan.semantic]           # any SemanticGANConfig field (family = "semantic")
    sem_grad_to_image = true
    ld_weight = 1.0
    [gan.masked]             # any MaskedGANConfig field (family = "masked")
    rec_weight = 10.0

Presets are data (``GAN_PRESETS``), applied beneath file, environment and flags like the
classifier's; the same preset name also picks the family's preset.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.config import ConfigBool

# tiny: ~20 CPU minutes at the tiny preset's ~35 img/s is ~40 kimg; a grid every 2 kimg shows progress.
# paper: StyleGAN2-ADA's 25,000 kimg 'auto' run (GPU work), snapshots every 200 kimg as its default 50 ticks x 4.
GAN_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"kimg": 40.0, "snapshot_kimg": 2.0, "tick_kimg": 0.5},
    "paper": {"kimg": 25_000.0, "snapshot_kimg": 200.0, "tick_kimg": 4.0},
}
# A family whose runs are another length: SemanticGAN's paper run is the thesis's 140K iterations of batch 8.
FAMILY_GAN_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "semantic": {
        "tiny": {"kimg": 30.0, "snapshot_kimg": 2.0, "tick_kimg": 0.5},
        "paper": {"kimg": 1_120.0, "snapshot_kimg": 16.0, "tick_kimg": 0.8},
    },
    # masked tiny: 128 px U-Net at batch 8 on two cores (~20 minutes, see training/gan/masked/config.py)
    "masked": {
        "tiny": {"kimg": 12.0, "snapshot_kimg": 2.0, "tick_kimg": 0.4},
        "paper": {"kimg": 2_000.0, "snapshot_kimg": 50.0, "tick_kimg": 4.0},
    },
}
DEFAULT_GAN_PRESET = "tiny"
Override = bool | int | float | str | list[int] | list[float] | None


class GanSettings(BaseModel):
    """``[gan]``: `gan train` (the family's own values go in ``[gan.<family>]``)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    family: Literal["stylegan2", "semantic", "masked"] = Field(
        "stylegan2", description="Registered GAN family to train."
    )
    preset: Literal["tiny", "paper"] = Field(
        DEFAULT_GAN_PRESET, description="tiny (CPU, 64 px) or paper ('auto' at 128 px): loop and family values."
    )
    kimg: float = Field(40.0, gt=0, le=1_000_000, description="Train until this many thousand real images were shown.")
    snapshot_kimg: float = Field(
        2.0, gt=0, le=100_000, description="Checkpoint + fixed-latent grid every this many kimg (and at the end)."
    )
    tick_kimg: float = Field(
        0.5, gt=0, le=10_000, description="A stats.jsonl line and progress update every this many kimg."
    )
    grid_size: int = Field(8, ge=1, le=32, description="Sample grids show grid_size x grid_size fixed latents.")
    device: str = Field("cpu", min_length=1, description="cpu, cuda, cuda:N or auto (under torchrun: cuda:LOCAL_RANK).")
    threads: int = Field(0, ge=0, le=1024, description="Torch intra-op threads per process (0 = every core).")
    stylegan2: dict[str, Override] = Field(
        default_factory=dict, description="Overrides of StyleGAN2Config fields, checked when the run starts."
    )
    semantic: dict[str, Override] = Field(
        default_factory=dict, description="Overrides of SemanticGANConfig fields, checked when the run starts."
    )
    masked: dict[str, Override] = Field(
        default_factory=dict, description="Overrides of MaskedGANConfig fields, checked when the run starts."
    )
    # --- SemanticGAN data (training/gan/semantic/data.py) ---
    labelled_fraction: float = Field(
        1.0, gt=0, le=1, description="semantic: share of training groups whose masks are used (half-and-half: 0.5)."
    )
    unlabelled_good: int = Field(
        0, ge=0, le=10_000_000, description="semantic: add up to N good training patches as unlabelled images."
    )
    unlabelled_line: ConfigBool = Field(
        False, description="semantic: add the ingested origin=line patches as unlabelled images."
    )

    @model_validator(mode="before")
    @classmethod
    def _preset_beneath(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        name = data.get("preset", DEFAULT_GAN_PRESET)
        family = FAMILY_GAN_PRESETS.get(str(data.get("family", "stylegan2")), {})
        return {**GAN_PRESETS.get(name, {}), **family.get(name, {}), **data}

    @model_validator(mode="after")
    def _data_options_need_labels(self) -> GanSettings:
        if self.family != "semantic" and self.data_options() != {}:
            raise ValueError(
                "labelled_fraction / unlabelled_good / unlabelled_line are SemanticGAN data options (family semantic)"
            )
        return self

    def family_overrides(self) -> dict[str, Override]:
        """The overrides of the selected family's config (its ``[gan.<family>]`` table)."""
        return dict(getattr(self, self.family))

    def data_options(self) -> dict[str, Any]:
        """The data options that differ from their defaults (what ``load_data`` of a labelled family takes)."""
        options = {"labelled_fraction": 1.0, "unlabelled_good": 0, "unlabelled_line": False}
        return {name: getattr(self, name) for name, default in options.items() if getattr(self, name) != default}
