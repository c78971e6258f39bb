"""Rich tables of a ``pump-edge bench`` report (the JSON is the record; this is for people)."""

from __future__ import annotations

from typing import Any


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _verdict(target: dict[str, Any]) -> str:
    if target["passed"] is None:
        return f"[yellow]skipped[/yellow] ({target['note']})"
    return "[green]pass[/green]" if target["passed"] else "[red]FAIL[/red]"


def report_tables(result: dict[str, Any]) -> list[Any]:
    """Rich tables of a :func:`run_bench` report: measurements, per-stage time, targets."""
    from rich.table import Table

    setup, machine, pipeline = result["setup"], result["machine"], result["pipeline"]
    width, height = setup["frame_size"]
    backends = ", ".join(f"{t}: {d['backend']}/{d.get('device', '?')}" for t, d in setup["backends"].items())
    load = machine["load_average_1m"]
    speed = Table(
        title=f"pump-edge bench: {setup['frames']} frames {width}x{height}, {setup['tiles_per_frame']} tiles/frame",
        caption=f"{machine['cpu_count']} CPUs, onnxruntime {machine['onnxruntime']}, {backends}; "
        f"broker: {setup['broker']}; load average {load['before']} -> {load['after']}",
    )
    for column, justify in (("measurement", "left"), ("frames/s", "right"), ("details", "left")):
        speed.add_column(column, justify=justify)
    latency, processing = pipeline["latency_ms"], pipeline["processing_ms"]
    speed.add_row(
        "pipeline (station --once)",
        _num(pipeline["fps"]),
        f"latency p50 {_num(latency['p50'], 0)} / p99 {_num(latency['p99'], 0)} ms (incl. queue wait); "
        f"processing p50 {_num(processing['p50'], 0)} / p99 {_num(processing['p99'], 0)} ms; "
        f"{pipeline['frames']}/{pipeline['frames_expected']} frames, {pipeline['errors']} errors, "
        f"start-up {pipeline['startup_s']:.1f} s, exit {pipeline['exit_code']}",
    )
    speed.add_row("bare backend (pre-tiled batches)", _num(result["bare"]["fps"]), f"{result['bare']['frames']} frames")
    naive = result["naive"]
    speed.add_row("naive: backend at batch 1", _num(naive["fps"], 3), f"{naive['patches']} patches one by one")
    eager = result["eager"]
    speed.add_row(
        "naive: eager PyTorch at batch 1",
        _num(eager["fps"], 3),
        f"random weights, {eager['torch_threads']} torch threads"
        if eager["status"] == "measured"
        else f"skipped: {eager['reason']}",
    )
    speed.add_section()
    stages = result["stage_ms"]
    total = sum(stages.values()) or 1.0
    speed.add_row(
        "per stage (ms/frame)",
        "",
        ", ".join(f"{stage} {ms:.1f} ({100 * ms / total:.0f}%)" for stage, ms in stages.items()),
    )
    memory = result["memory"]
    speed.add_row(
        "peak RSS (MiB)",
        "",
        f"pipeline {memory['pipeline_peak_rss_mb']:.0f}, whole bench process {memory['process_peak_rss_mb']:.0f}",
    )
    roi = result["roi_scaling"]
    speed.add_row(
        f"ROI scaling on {roi['frame_px']}² (s/frame)",
        "",
        "; ".join(f"{row['roi_px']}²: {row['tiles']} tiles {row['seconds']:.3f} s" for row in roi["rois"])
        + f"; tiles x{roi['tile_ratio']}, time x{roi['time_ratio']}",
    )
    targets = Table(title="targets (issue §8)")
    for column in ("target", "measured", "goal", "result"):
        targets.add_column(column)
    for target in result["targets"]:
        targets.add_row(
            target["name"], _num(target["value"], 3), f"{target['op']} {target['target']:g}", _verdict(target)
        )
    return [speed, targets]
