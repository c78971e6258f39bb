"""deploy/compose.yaml, the development stack, read as data: no Docker is started here.

Checks what breaks silently when the files around it change: the services, a station whose
settings load (every ``PUMP_*`` name is a setting), its store URL naming the postgres service
with that service's credentials, the broker and the MES on the same certificates, and that
every file the stack mounts from the repository exists.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml", reason="reading deploy/compose.yaml needs PyYAML (not installed in this venv)")

from sqlalchemy import make_url  # noqa: E402 - after the skip

from edge.config import EdgeSettings  # noqa: E402
from shared.config import load_settings  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "deploy" / "compose.yaml"
SERVICES = {"pki", "broker", "station", "mes", "postgres"}
INTERPOLATED = re.compile(r"\$\{[^}]*\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def _mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of a service's volumes, short (``src:dst[:mode]``) and long syntax."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            mounts.append((str(volume["source"]), str(volume["target"])))
        else:
            source, target = str(volume).split(":")[:2]
            mounts.append((source, target))
    return mounts


def _volume_of(service: dict[str, Any], path: str) -> str | None:
    """The named volume (or bind source) mounted over ``path`` in ``service``."""
    for source, target in _mounts(service):
        if path == target or path.startswith(target.rstrip("/") + "/"):
            return source
    return None


def test_the_stack_has_broker_station_mes_and_postgres(compose):
    services = compose["services"]
    assert set(services) >= SERVICES
    assert services["broker"]["image"].startswith("eclipse-mosquitto:2")
    assert services["postgres"]["image"] == "postgres:16"
    assert services["station"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["station"]["depends_on"]["pki"]["condition"] == "service_completed_successfully"
    assert set(compose["volumes"]) >= {
        source for service in services.values() for source, _ in _mounts(service) if not source.startswith((".", "$"))
    }


def test_the_station_settings_load_and_inspect_synthetic_frames_on_the_cpu(compose, monkeypatch):
    environment = compose["services"]["station"]["environment"]
    for name in [name for name in os.environ if name.startswith("PUMP_")]:
        monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, str(value))
    settings = load_settings(EdgeSettings)  # raises on a PUMP_* name that is no setting, or a bad value
    assert settings.source.spec.startswith("synthetic:")
    assert settings.backend.kind.value == "onnxruntime" and settings.bundles.follow_bundle_geometry
    assert settings.mqtt.host == "broker" and settings.mqtt.tls is not None


def test_the_store_url_names_the_postgres_service_and_its_credentials(compose):
    services = compose["services"]
    url = make_url(services["station"]["environment"]["PUMP_STORE__DATABASE_URL"])
    database = services["postgres"]["environment"]
    assert url.drivername == "postgresql+psycopg"  # the driver of the postgres extra, installed in the image
    assert url.host == "postgres" and (url.port or 5432) == 5432
    assert (url.username, url.password, url.database) == (
        database["POSTGRES_USER"],
        database["POSTGRES_PASSWORD"],
        database["POSTGRES_DB"],
    )
    assert ".[edge,postgres]" in services["station"]["build"]["dockerfile_inline"]


def test_station_broker_and_mes_share_the_development_certificates_and_passwords(compose):
    services = compose["services"]
    station, broker, mes, pki = services["station"], services["broker"], services["mes"], services["pki"]
    environment = station["environment"]
    assert _volume_of(station, environment["PUMP_MQTT__TLS__CA_FILE"]) == "pki"
    assert _volume_of(station, environment["PUMP_MQTT__PASSWORD_FILE"]) == "pki"
    assert _volume_of(broker, "/etc/mosquitto/certs/broker.key") == "pki"  # the path mosquitto.conf names
    assert "make-dev-ca.sh /ca broker" in pki["command"][0]  # the certificate names the broker service
    assert environment["PUMP_MQTT__USERNAME"] in pki["command"][0]  # an account in the broker's password file
    arguments = mes["command"]
    assert arguments[arguments.index("-h") + 1] == "broker" and arguments[-1].endswith("/alert")
    assert _volume_of(mes, arguments[arguments.index("--cafile") + 1]) == "pki"
    assert arguments[arguments.index("-P") + 1] == pki["environment"]["MES_PASSWORD"]


def test_every_file_the_stack_mounts_or_builds_from_the_repo_exists(compose):
    base = COMPOSE.parent
    checked = 0
    for name, service in compose["services"].items():
        for source, _ in _mounts(service):
            if not source.startswith((".", "/")):
                continue  # a named volume
            assert (base / source).exists(), f"{name}: mounts {source}, which is not in the repository"
            checked += 1
        build = service.get("build")
        if build is not None:
            context = base / build["context"]
            assert context.is_dir(), f"{name}: build context {build['context']} not found"
            dockerfile = build.get("dockerfile_inline", "")
            for line in dockerfile.splitlines():
                if line.startswith("COPY"):
                    for source in shlex.split(line)[1:-1]:
                        assert (context / source).exists(), f"{name}: COPY {source}: not in the build context"
    assert checked >= 3  # mosquitto.conf, acl, make-dev-ca.sh
    # Bundles are made, not committed (make demo); their mount is interpolated and must not be created empty.
    bundles = [mount for mount in compose["services"]["station"]["volumes"] if isinstance(mount, dict)]
    assert [INTERPOLATED.search(mount["source"]) is not None for mount in bundles] == [True]
    assert bundles[0]["bind"]["create_host_path"] is False
