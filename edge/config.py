"""The edge side's settings: one pydantic-settings model, loaded once in ``pump-edge``.

Shares ``[geometry]`` (and its ``PUMP_GEOMETRY__*`` variables) with the training side so
both cut frames the same way. The runtime sections (sources, backends, MQTT, store)
join this model as the edge runtime grows.
"""

from __future__ import annotations

from pydantic import Field

from edge.publish.config import MqttConfig
from edge.store.config import StoreConfig
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
    geometry: GeometryConfig = Field(default_factory=GeometryConfig, description="Frame -> patch geometry.")
    store: StoreConfig = Field(default_factory=StoreConfig, description="Uncertain-patch logging (issue 4, §6).")
    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="Broker, delivery and payload policies.")
