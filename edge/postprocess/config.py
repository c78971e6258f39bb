"""``[postprocess]`` settings: how model outputs become defects and a frame verdict."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.config import refuse_renamed

VerdictRule = Literal["either", "segmenter", "classifier", "both"]
DefectMapStyle = Literal["mask", "overlay"]


class PostprocessConfig(BaseModel):
    """Verdict rule, defect filtering, the cascade, threshold overrides and the defect-map picture."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    verdict_rule: VerdictRule = Field(
        "either",
        description="NG when: either = a defect region or a classifier-flagged patch (recall first: an escaped "
        "defect costs more than a second look); segmenter = a defect region; classifier = a flagged patch; "
        "both = a flagged patch and a defect region. A rule naming a model that is not loaded uses the other.",
    )
    min_defect_area_px: int = Field(
        16,
        ge=1,
        le=100_000_000,
        description="Smallest defect region (frame px) that counts; smaller ones are counted as noise.",
    )
    max_defects: int = Field(
        50, ge=1, le=10_000, description="Most defect regions reported per frame (highest scores first)."
    )
    cascade_threshold: float | None = Field(
        None,
        ge=0,
        le=1,
        description="The segmenter runs on patches whose classifier probability is at least this "
        "(default: the classifier's decision threshold; lower it to trade segmenter time for recall).",
    )
    decision_threshold: float | None = Field(
        None, ge=0, le=1, description="Override of the classifier bundle's decision threshold (default: the bundle's)."
    )
    pixel_threshold: float | None = Field(
        None, ge=0, le=1, description="Override of the segmenter bundle's pixel threshold (default: the bundle's)."
    )
    defect_map_style: DefectMapStyle = Field(
        "mask",
        description="What the defect-map picture shows: mask = 8-bit gray over the whole frame, 0 good / 255 defect "
        "(the MQTT contract for machines; small); overlay = the frame with defects tinted and boxed (for people; "
        "larger). Which frames get one is mqtt.defect_map_policy. (Was postprocess.defect_map.)",
    )
    defect_map_max_px: int = Field(
        1024, ge=64, le=16384, description="Longest side of the defect-map picture (keeps MQTT payloads small)."
    )

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, values: Any) -> Any:
        return refuse_renamed(values, {"defect_map": "defect_map_style"})
