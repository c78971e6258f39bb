"""What every `pump-train` command shares: the settings load, the dry run, the common options."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from shared.config import load_settings
from training.config import TrainSettings

console = Console(stderr=True)
out_console = Console()

ConfigOpt = typer.Option(None, "--config", "-c", help="TOML config file (default: $PUMP_CONFIG).")
SeedOpt = typer.Option(None, "--seed", help="Random seed (default: settings `seed`, 0).")
DryRunOpt = typer.Option(False, "--dry-run", help="Print the resolved config and exit without doing anything.")
OverwriteOpt = typer.Option(False, "--overwrite", help="Replace OUT if it exists (only after the new one is complete).")
QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress bars.")


def load_train_settings(config: Path | None, overrides: dict[str, Any]) -> TrainSettings:
    """Defaults < presets < ``config`` (or $PUMP_CONFIG) < ``PUMP_*`` env < ``overrides`` (flags; None = not given)."""
    return load_settings(TrainSettings, config, overrides)


def print_dry_run(settings: TrainSettings, *sections: str) -> None:
    """The resolved ``seed`` and ``sections`` as JSON on stdout."""
    dump = settings.model_dump(mode="json", by_alias=True)
    out_console.print_json(json.dumps({"seed": dump["seed"], **{key: dump[key] for key in sections}}))


def print_json(title: str, payload: dict) -> None:
    console.print(f"[bold]{title}[/bold]")
    out_console.print_json(json.dumps(payload, default=str))
