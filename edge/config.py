"""The edge side's settings: one pydantic-settings model, loaded once in ``pump-edge``.

Shares ``[geometry]`` (and its ``PUMP_GEOMETRY__*`` variables) with the training side so
both cut frames the same way. Each runtime part owns its section's model (sources,
backends, postprocess, store, mqtt, pipeline); this class only gathers them.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from edge.backends.config import BackendConfig
from edge.postprocess.config import PostprocessConfig
from edge.publish.config import MqttConfig
from edge.runtime.config import DEFAULT_DATA_DIR, BundlesConfig, PipelineConfig
from edge.sources.config import SourceConfig
from edge.store.config import StoreConfig
from edge.tiling import RoiConfig
from shared.config import GeometryConfig, PumpSettings


class EdgeSettings(PumpSettings):
    """Everything `pump-edge` can be configured with."""

    line_id: str = Field(
        "line1", min_length=1, pattern=r"^[A-Za-z0-9_-]+$", description="Production line id (an MQTT topic level)."
    )
    station_id: str = Field(
        "station1",
        min_length=1,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="Inspection station id (an MQTT topic level).",
    )
    data_dir: Path = Field(
        DEFAULT_DATA_DIR, description="Station data: outbox, uncertain-patch store, engine cache (default ./edge-data)."
    )
    geometry: GeometryConfig = Field(default_factory=GeometryConfig, description="Frame -> patch geometry.")
    bundles: BundlesConfig = Field(default_factory=BundlesConfig, description="Model bundles to run.")
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig, description="Queues, backpressure, watchdog.")
    roi: RoiConfig | None = Field(None, description="Fixed ROI box in frame px (default: geometry's center crop).")
    source: SourceConfig = Field(default_factory=SourceConfig, description="Where frames come from.")
    backend: BackendConfig = Field(default_factory=BackendConfig, description="Inference backend and its sizing.")
    postprocess: PostprocessConfig = Field(
        default_factory=PostprocessConfig, description="Defects, verdict rule and defect map."
    )
    store: StoreConfig = Field(default_factory=StoreConfig, description="Uncertain-patch logging (issue 4, §6).")
    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="Broker, delivery and payload policies.")
