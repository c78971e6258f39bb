"""The training side's settings: one pydantic-settings model, loaded once in the CLI.

Sections mirror the commands (``[synth]``, ``[import]``, ``[patches]``, ``[paste]``) plus the
``[geometry]`` both sides share. Example ``pump.toml``::

    seed = 7
    [geometry]
    crop_px = 1920
    tile_px = 256
    [patches]
    mode = "grid"
"""

from __future__ import annotations

from pydantic import Field

from shared.config import GeometryConfig, PumpSettings
from training.data.importers.base import ImportOptions
from training.data.paste import PasteOptions
from training.data.patches import PatchOptions
from training.synth.config import SynthConfig


class TrainSettings(PumpSettings):
    """Everything `pump-train` commands can be configured with."""

    seed: int = Field(0, description="Default seed of every command that draws random numbers.")
    geometry: GeometryConfig = Field(default_factory=GeometryConfig, description="Frame -> patch geometry.")
    synth: SynthConfig = Field(default_factory=SynthConfig, description="Synthetic pump frames.")
    import_: ImportOptions = Field(
        default_factory=ImportOptions, alias="import", description="Dataset import (pixel conversion, masks)."
    )
    patches: PatchOptions = Field(default_factory=PatchOptions, description="Patch sampling and splits.")
    paste: PasteOptions = Field(default_factory=PasteOptions, description="Defect-pasted augmentation.")
