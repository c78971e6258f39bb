"""deploy/edge/pump-edge.service: its systemd sandbox, measured and matched with deploy/edge/edge.toml.

The exposure score comes from ``systemd-analyze security --offline=yes`` (systemd 250 or newer),
which reads the unit file alone: nothing is installed or started here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from edge.config import EdgeSettings
from edge.runtime.startup import resolve_data_path
from shared.config import load_settings

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "deploy" / "edge" / "pump-edge.service"
EDGE_TOML = REPO / "deploy" / "edge" / "edge.toml"
MAX_EXPOSURE = 2.5  # issue 13, section 4 (8.7 "EXPOSED" before the hardening)
OVERALL = re.compile(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)")

pytestmark = pytest.mark.integration


def unit_settings(text: str, section: str = "Service") -> dict[str, list[str]]:
    """Values of each key in one section, in order; an empty assignment resets the list (as systemd does).

    >>> unit_settings("[Service]\\nReadWritePaths=/a\\nReadWritePaths=/b /c\\nUMask=0077\\n")["ReadWritePaths"]
    ['/a', '/b /c']
    """
    values: dict[str, list[str]] = {}
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
            continue
        if current != section:
            continue
        key, _, value = line.partition("=")
        key, value = key.strip(), value.strip()
        values[key] = [*values.get(key, []), value] if value else []
    return values


def read_write_paths(settings: dict[str, list[str]]) -> set[Path]:
    """ReadWritePaths= entries as paths (a leading "-" only makes a missing one non-fatal)."""
    return {Path(word.removeprefix("-")) for value in settings.get("ReadWritePaths", []) for word in value.split()}


def state_directories(settings: dict[str, list[str]]) -> set[Path]:
    return {Path("/var/lib") / word for value in settings.get("StateDirectory", []) for word in value.split()}


def environment(settings: dict[str, list[str]]) -> dict[str, str]:
    """Environment= assignments (one NAME=value per line in this unit)."""
    return dict(value.partition("=")[::2] for value in settings.get("Environment", []))


@pytest.fixture
def station(monkeypatch: pytest.MonkeyPatch) -> EdgeSettings:
    """deploy/edge/edge.toml as the station loads it, without this machine's PUMP_* variables."""
    for name in [name for name in os.environ if name.startswith("PUMP_")]:
        monkeypatch.delenv(name)
    return load_settings(EdgeSettings, EDGE_TOML)


def security_report() -> str:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("needs systemd-analyze (systemd 250 or newer) to score the unit; not installed here")
    run = subprocess.run(
        [analyze, "security", "--offline=yes", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SYSTEMD_COLORS": "0"},
    )
    if "--offline" in run.stderr and ("unrecognized" in run.stderr or "Unknown option" in run.stderr):
        pytest.skip(f"this systemd-analyze has no --offline (systemd < 250): {run.stderr.strip()}")
    return run.stdout + run.stderr


def test_systemd_analyze_scores_the_unit_at_most_2_5():
    report = security_report()
    match = OVERALL.search(report)
    assert match is not None, f"no overall exposure in systemd-analyze's output:\n{report}"
    exposed = [line for line in report.splitlines() if line.startswith("✗")]
    assert float(match.group(1)) <= MAX_EXPOSURE, "exposure above the bound; open items:\n" + "\n".join(exposed)


def test_read_write_paths_are_exactly_the_data_dir_and_the_engine_cache_of_edge_toml(station):
    unit = unit_settings(UNIT.read_text(encoding="utf-8"))
    data_dir = Path(station.data_dir)
    engine_cache = resolve_data_path(Path(station.backend.engine_cache_dir), data_dir)
    assert unit["ProtectSystem"] == ["strict"]
    assert read_write_paths(unit) == {data_dir, engine_cache}


def test_everything_the_station_writes_lies_in_a_read_write_path(station):
    unit = unit_settings(UNIT.read_text(encoding="utf-8"))
    data_dir = Path(station.data_dir)
    writes = {
        "outbox": station.mqtt.resolved_outbox_path(data_dir),
        "store images": station.store.resolved_image_dir(data_dir),
        "source memory": data_dir / "sources",
        "working directory": Path(unit["WorkingDirectory"][-1]),
        "HOME": Path(environment(unit)["HOME"]),
        "CUDA JIT cache": Path(environment(unit)["CUDA_CACHE_PATH"]),
    }
    if station.store.database_url is None:
        writes["store database"] = Path(station.store.resolved_database_url(data_dir).removeprefix("sqlite:///"))
    allowed = read_write_paths(unit)
    outside = {name: path for name, path in writes.items() if not any(path.is_relative_to(a) for a in allowed)}
    assert not outside, f"written outside ReadWritePaths {sorted(map(str, allowed))}: {outside}"


def test_systemd_creates_every_read_write_path_before_the_sandbox(station):
    """A ReadWritePaths= entry that does not exist at start fails the unit (status 226/NAMESPACE)."""
    unit = unit_settings(UNIT.read_text(encoding="utf-8"))
    assert read_write_paths(unit) <= state_directories(unit)


def test_the_unit_runs_as_a_static_user_without_capabilities():
    unit = unit_settings(UNIT.read_text(encoding="utf-8"))
    assert unit["User"] == ["pump"] and "DynamicUser" not in unit
    assert unit["CapabilityBoundingSet"] == [] and unit["AmbientCapabilities"] == []
    assert unit["UMask"] == ["0077"] and unit["NoNewPrivileges"] == ["yes"]


# --- the container images (read as text: no Docker here) --------------------------------------------

DOCKERFILES = [REPO / "deploy" / "server" / "Dockerfile", REPO / "deploy" / "edge" / "Dockerfile.jetson"]


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text(encoding="utf-8"))
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(word.upper(), rest.strip()) for word, _, rest in (line.partition(" ") for line in lines)]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_each_image_runs_its_entrypoint_as_a_non_root_user(dockerfile):
    steps = instructions(dockerfile)
    users = [args for name, args in steps if name == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}, users
    last_user = max(i for i, (name, _) in enumerate(steps) if name == "USER")
    assert all(name != "RUN" for name, _ in steps[last_user:]), "RUN after USER: root steps belong before it"


def test_the_server_image_starts_from_a_cuda_pytorch_base():
    steps = instructions(DOCKERFILES[0])
    base = next(args for name, args in steps if name == "ARG" and args.startswith("BASE="))
    assert re.fullmatch(r"BASE=pytorch/pytorch:2\.\d+\.\d+-cuda12\.\d+-cudnn9-runtime", base), base
    assert ("FROM", "${BASE}") in steps
