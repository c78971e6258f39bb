"""`pump-edge`: the edge side's commands (no torch anywhere below this package).

For now it validates and prints the station's settings and shows the tiling a frame
size gets; the runtime commands (`run`, `bench`, `build-engine`, ...) join as they land.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from edge.config import EdgeSettings
from shared.config import ConfigError, load_settings
from shared.tiling import center_roi, grid_tiles

app = typer.Typer(
    help="Edge side of pump inspection: frames -> tiles -> inference -> MQTT (runtime commands arrive later).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
out_console = Console()
ConfigOpt = typer.Option(None, "--config", "-c", help="TOML config file (default: $PUMP_CONFIG).")


@app.command()
def config(config_file: Path | None = ConfigOpt) -> None:
    """Validate the station's settings (file + PUMP_* env) and print them resolved."""
    settings = load_settings(EdgeSettings, config_file)
    out_console.print_json(json.dumps(settings.model_dump(mode="json")))


@app.command()
def tiles(
    width: int = typer.Argument(..., min=1, help="Frame width in px."),
    height: int = typer.Argument(..., min=1, help="Frame height in px."),
    config_file: Path | None = ConfigOpt,
) -> None:
    """Show the ROI and tile grid a frame of WIDTH x HEIGHT gets (same functions as training)."""
    geometry = load_settings(EdgeSettings, config_file).geometry
    crop = geometry.crop_px or max(width, height)
    roi = center_roi(width, height, crop, crop)
    boxes = grid_tiles(roi, geometry.tile_px, geometry.min_overlap_px)
    xs = sorted({box.x for box in boxes})
    ys = sorted({box.y for box in boxes})
    table = Table(title=f"{width}x{height} frame")
    table.add_column("what")
    table.add_column("value")
    table.add_row("ROI", f"x={roi.x} y={roi.y} {roi.width}x{roi.height}")
    table.add_row("tiles", f"{len(xs)} x {len(ys)} = {len(boxes)} of {geometry.tile_px} px -> {geometry.patch_px} px")
    table.add_row("x starts", " ".join(map(str, xs)))
    table.add_row("y starts", " ".join(map(str, ys)))
    table.add_row("padded tiles", str(sum(box.valid_fraction(roi) < 1 for box in boxes)))
    out_console.print(table)


def main() -> None:
    """Console entry point: config errors become one clear message and exit code 2."""
    try:
        app()
    except (ConfigError, ValueError) as error:
        console.print(f"error: {error}", style="red", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
