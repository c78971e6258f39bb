"""The training side's settings: one pydantic-settings model, loaded once in the CLI.

Sections mirror the commands (``[synth]``, ``[import]``, ``[patches]``, ``[paste]``,
``[classifier]``, ``[segmenter]``, ``[export]``, ``[gan]``) plus the ``[geometry]`` both sides share.
Priority, lowest first: defaults < a section's preset (:mod:`training.train.config`) < TOML
file < ``PUMP_*`` environment < command-line flags. Example ``pump.toml``::

    seed = 7
    [geometry]
    crop_px = 1920
    tile_px = 256
    [patches]
    mode = "grid"
    [classifier]
    preset = "thesis"
    [classifier.schedule]
    iterations = 20000
"""

from __future__ import annotations

from pydantic import Field, model_validator

from shared.config import GeometryConfig, PumpSettings, SeedInt
from training.data.importers.base import ImportOptions
from training.data.paste import PasteOptions
from training.data.patches import PatchOptions
from training.gan.settings import GanSettings
from training.synth.config import SynthConfig
from training.train.config import ClassifierSettings, ExportOptions, SegmenterSettings


class TrainSettings(PumpSettings):
    """Everything `pump-train` commands can be configured with."""

    seed: SeedInt = Field(0, description="Default seed of every command that draws random numbers (0 ... 2**32-1).")
    geometry: GeometryConfig = Field(default_factory=GeometryConfig, description="Frame -> patch geometry.")
    synth: SynthConfig = Field(default_factory=SynthConfig, description="Synthetic pump frames.")
    import_: ImportOptions = Field(
        default_factory=ImportOptions, alias="import", description="Dataset import (pixel conversion, masks)."
    )
    patches: PatchOptions = Field(default_factory=PatchOptions, description="Patch sampling and splits.")
    paste: PasteOptions = Field(default_factory=PasteOptions, description="Defect-pasted augmentation.")
    classifier: ClassifierSettings = Field(
        default_factory=ClassifierSettings, description="Patch classifier: preset, model, schedule."
    )
    segmenter: SegmenterSettings = Field(
        default_factory=SegmenterSettings, description="Patch segmenter: preset, model, schedule, data, threshold."
    )
    export: ExportOptions = Field(default_factory=ExportOptions, description="ONNX bundle export.")
    gan: GanSettings = Field(default_factory=GanSettings, description="GAN training: family, preset, kimg, snapshots.")

    @model_validator(mode="after")
    def _schedule_seeds_default_to_seed(self) -> TrainSettings:
        """A schedule whose seed was not given takes the top-level ``seed``."""
        for section in (self.classifier, self.segmenter):
            if "seed" not in section.schedule.model_fields_set:
                section.schedule = section.schedule.model_copy(update={"seed": self.seed})
        return self
