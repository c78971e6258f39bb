"""``[mqtt]`` settings of a station: broker, security, delivery and size policies.

Data only: no file or network I/O here (the password file is read when the publisher
connects). Secrets are ``SecretStr`` so they never show in logs, reprs or ``pump-edge config``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from shared.config import ConfigBool, NonEmptyPath, refuse_renamed
from shared.messages import DEFAULT_PREFIX, PREFIX_PATTERN, Verdict

OUTBOX_SUBPATH = "mqtt/outbox.sqlite3"
DefectMapPolicy = Literal["never", "ng", "all"]


class MqttTlsConfig(BaseModel):
    """TLS towards the broker; present = TLS on. Without ``ca_file`` the system CAs are used."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    ca_file: NonEmptyPath | None = Field(None, description="CA certificate (PEM) that signed the broker's certificate.")
    cert_file: NonEmptyPath | None = Field(None, description="Client certificate (PEM) for mutual TLS.")
    key_file: NonEmptyPath | None = Field(None, description="Client private key (PEM) for mutual TLS.")
    insecure: ConfigBool = Field(
        False, description="Skip the broker host name check (testing only; the certificate chain is still checked)."
    )

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> MqttTlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together (mutual TLS needs both)")
        return self


class MqttConfig(BaseModel):
    """How a station talks to its broker (``[mqtt]`` in the TOML, ``PUMP_MQTT__*`` in the environment)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    host: str | None = Field(
        None,
        description="Broker host name or address. None = start an embedded Mosquitto on 127.0.0.1:port "
        "(development; needs the mosquitto binary).",
    )
    port: int = Field(1883, ge=0, le=65535, description="Broker port (8883 is usual with TLS); 0 = a free port.")
    protocol: Literal["5", "3.1.1"] = Field("5", description="MQTT protocol version: 5 (default) or 3.1.1.")
    topic_prefix: str = Field(
        DEFAULT_PREFIX, pattern=PREFIX_PATTERN, description="First topic level(s): {prefix}/{line}/{station}/{kind}."
    )
    keepalive_s: int = Field(30, ge=5, le=3600, description="Keep-alive interval; a dead link shows after ~1.5x.")
    qos: Literal[0, 1] = Field(1, description="QoS of results, alerts and defect maps (status: 1, stats: 0).")
    username: str | None = Field(None, min_length=1, description="Broker user name.")
    password: SecretStr | None = Field(None, description="Broker password (prefer password_file).")
    password_file: NonEmptyPath | None = Field(None, description="File whose first line is the broker password.")
    tls: MqttTlsConfig | None = Field(None, description="TLS settings; absent = plain TCP.")
    will_delay_s: int = Field(
        10,
        ge=0,
        le=86400,
        description="MQTT 5 Will Delay Interval: the broker publishes 'offline' only if the station stays "
        "away this long, so a short reconnect does not flash offline (3.1.1: immediate).",
    )
    reconnect_min_s: float = Field(1.0, gt=0, le=3600, description="First reconnect delay; doubles per failure.")
    reconnect_max_s: float = Field(30.0, gt=0, le=3600, description="Longest reconnect delay.")
    max_inflight: int = Field(
        20, ge=1, le=1000, description="Outbox messages sent but not yet acknowledged; the next go out as acks arrive."
    )
    defect_map_policy: DefectMapPolicy = Field(
        "ng",
        description="Which frames publish a PNG defect map: never, NG frames only, or all (the picture's style is "
        "postprocess.defect_map_style). (Was mqtt.defect_map.)",
    )
    defect_map_max_bytes: int = Field(
        256_000,
        ge=1024,
        le=268_435_455,
        description="Largest defect-map payload; bigger maps are downscaled until they fit (never dropped). "
        "Keep it under the broker's packet size limit (Mosquitto max_packet_size).",
    )
    stats_interval_s: float = Field(10.0, gt=0, le=3600, description="How often the runtime publishes stats.")
    outbox_path: NonEmptyPath | None = Field(
        None,
        description=f"SQLite file of the durable outbox and the seq/session counters; "
        f"default <data_dir>/{OUTBOX_SUBPATH}. Keep it across updates: seq continues from it.",
    )
    outbox_max_rows: int = Field(
        100_000,
        ge=10,
        le=100_000_000,
        description="Outbox bound. When full, the OLDEST undelivered messages are dropped to make room "
        "(counted in stats.outbox_dropped; the MES sees a seq gap): inspection never blocks on the broker.",
    )
    message_expiry_s: int | None = Field(
        None,
        gt=0,
        le=4_294_967_295,
        description="MQTT 5 Message Expiry: results older than this are not delivered (the broker drops "
        "them for absent subscribers; the outbox drops them on replay, counted). None = never expire.",
    )
    dead_letter_max_rows: int | None = Field(
        None,
        ge=1,
        description="Share of outbox_max_rows kept for dead letters (messages the broker refused, e.g. not "
        "authorised; see `pump-edge outbox`). Beyond it the oldest dead letters are deleted, counted in "
        "stats.dead_letters_evicted. None = a tenth of outbox_max_rows. Must be below outbox_max_rows.",
    )
    refusal_summary_s: float = Field(
        60.0,
        gt=0,
        le=86400,
        description="While the broker keeps refusing a topic, one 'publish-refused' event per this many seconds "
        "sums up the refusals (the first refusal of a burst raises one at once).",
    )
    status_expiry_s: int | None = Field(
        60,
        ge=3,
        le=86400,
        description="Lease of a live status (starting, building-engine, online, degraded): its valid_until and, "
        "under MQTT 5, its Message Expiry; the station re-publishes it every third of this (heartbeat). A station "
        "that dies unseen (killed while the broker was down) then drops out of the retained status instead of "
        "showing online forever. None = no lease, no heartbeat.",
    )

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, values: Any) -> Any:
        return refuse_renamed(values, {"defect_map": "defect_map_policy"})

    @field_validator("protocol", mode="before")
    @classmethod
    def _protocol_as_text(cls, value: object) -> object:
        return str(value) if isinstance(value, int | float) else value

    @model_validator(mode="after")
    def _one_password_source(self) -> MqttConfig:
        if self.password is not None and self.password_file is not None:
            raise ValueError("give password or password_file, not both")
        return self

    @model_validator(mode="after")
    def _reconnect_range(self) -> MqttConfig:
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError(f"reconnect_max_s ({self.reconnect_max_s}) < reconnect_min_s ({self.reconnect_min_s})")
        return self

    @model_validator(mode="after")
    def _dead_letters_within_the_outbox(self) -> MqttConfig:
        if self.dead_letter_max_rows is not None and self.dead_letter_max_rows >= self.outbox_max_rows:
            raise ValueError(
                f"dead_letter_max_rows ({self.dead_letter_max_rows}) must be below outbox_max_rows "
                f"({self.outbox_max_rows}): dead letters share the outbox's bound"
            )
        return self

    @property
    def dead_letter_limit(self) -> int:
        """Dead letters kept at most: ``dead_letter_max_rows`` or a tenth of ``outbox_max_rows``."""
        if self.dead_letter_max_rows is not None:
            return self.dead_letter_max_rows
        return max(1, self.outbox_max_rows // 10)

    def publishes_defect_map(self, verdict: Verdict) -> bool:
        """Whether a frame of ``verdict`` gets a defect map: the policy is decided here and nowhere else.

        The station renders a map only when this says yes; the publisher applies it again to any map
        handed to it, so a caller cannot publish one the policy does not want.
        """
        return self.defect_map_policy == "all" or (self.defect_map_policy == "ng" and verdict == Verdict.NG)

    def resolved_outbox_path(self, data_dir: Path | None) -> Path:
        """``outbox_path``, or its default under the station's data folder."""
        if self.outbox_path is not None:
            return Path(self.outbox_path)
        if data_dir is None:
            raise ValueError("mqtt.outbox_path is not set and no data folder was given")
        return Path(data_dir) / OUTBOX_SUBPATH

    @property
    def mqtt5(self) -> bool:
        """True for MQTT 5 (properties, Will Delay, expiry), False for 3.1.1."""
        return self.protocol == "5"
